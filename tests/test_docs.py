"""The committed documents: the README stays a user's document, nothing committed names a machine path."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(tmp|root|home|work|Users|private|var/folders)/")


def committed(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines()]


def test_committed_results_and_docs_hold_no_machine_paths():
    files = committed("results", "docs", "README.md", "benchmarks/*.md")
    assert files, "git ls-files found nothing"
    offenders = [f"{f.relative_to(REPO)}:{i}" for f in files if f.exists() and f.suffix in (".md", ".json")
                 for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not offenders, offenders


def test_readme_is_a_users_document():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024
    for section in ("## Two commands", "## The paper at full scale", "## What has been reproduced so far",
                    "## Command line", "## Layout", "docs/decisions.md"):
        assert section in readme, section
    decisions = (REPO / "docs" / "decisions.md").read_text(encoding="utf-8")
    for area in ("### Data", "### ID recommenders and evaluator", "### Laser", "### Workflow", "### Artifacts"):
        assert area in decisions, area
