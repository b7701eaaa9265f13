"""README.md stays short, its links resolve, and its demo table is what experiments/demo_table.py prints
from the committed results (no hand-copied number can drift from its source)."""

import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_the_readme_is_at_most_150_lines_and_every_relative_link_exists():
    assert len(README.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert links and all((REPO / link).is_file() for link in links), links
    for doc in (REPO / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+)\)", doc.read_text()):
            assert (doc.parent / link).exists(), f"{doc.name}: {link}"


def test_the_readme_demo_table_is_what_demo_table_prints_from_the_committed_results():
    printed = subprocess.run([sys.executable, str(REPO / "experiments/demo_table.py")], check=True,
                             capture_output=True, text=True, cwd=REPO).stdout
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert len(table) == 9 and "\n".join(table) in README
