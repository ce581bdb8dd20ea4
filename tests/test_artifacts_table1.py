"""Table 1: the paper's statistics beside ours, exact matches marked."""

import subprocess
import sys
from pathlib import Path

import pytest

from test_artifacts_support import REPO
from laser_repro.artifacts.table1 import compute_table1, fmt_stat, make_table1
from laser_repro.io import write_json

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_fmt_stat_rounds_like_the_paper():
    assert fmt_stat("users", 11041) == "11,041"
    assert fmt_stat("avg_n", 76896 / 11041) == "6.96"
    assert fmt_stat("density", 76896 / (11041 * 5327)) == "1.3e-3"
    assert fmt_stat("density", 100255 / (11036 * 15402)) == "5.9e-4"


def _stats(folder, name, users, items, inters):
    write_json(folder / name / "stats.json", {
        "name": name, "source": "test", "users": users, "items": items, "interactions": inters,
        "avg_n": inters / users, "density": inters / (users * items)})


def test_match_mismatch_missing_and_unknown(tmp_path):
    _stats(tmp_path, "scientific", 11041, 5327, 76896)  # the paper's numbers
    _stats(tmp_path, "games", 11036, 15402, 100254)  # one interaction short
    _stats(tmp_path, "synthetic", 10, 5, 30)
    rows = {r.dataset: r for r in compute_table1(tmp_path, ["scientific", "games", "pet", "synthetic"])}
    assert rows["scientific"].exact is True
    assert rows["games"].exact is False
    assert rows["games"].match("interactions") is False and rows["games"].match("users") is True
    assert rows["pet"].ours is None and "pet/stats.json missing" in rows["pet"].reason
    assert rows["synthetic"].paper is None and rows["synthetic"].exact is None
    out = tmp_path / "table1.md"
    make_table1(tmp_path, ["scientific", "games", "pet", "synthetic"], out)
    text = out.read_text()
    assert "| Scientific | paper | 11,041 | 5,327 | 76,896 | 6.96 | 1.3e-3 |" in text
    assert "100,254 ✗" in text and "not prepared:" in text and "not in the paper" in text


def test_real_scientific_matches_table1_exactly(tmp_path):
    src = SHARED / "amazon-scientific-recformer"
    if not src.exists():
        pytest.skip(f"real Scientific data not found at {src}")
    subprocess.run([sys.executable, "-m", "laser_repro.cli", "data", "prepare", "--source", "recformer",
                    "--input", str(src), "--name", "scientific", "--out", str(tmp_path / "scientific")],
                   check=True, capture_output=True)
    out = tmp_path / "table1.md"
    overlay = tmp_path / "overlay.yaml"  # the paper's config with the data in tmp_path and one Table 1 row
    overlay.write_text(f"paths: {{data: {tmp_path}}}\ntable1: {{datasets: [scientific]}}\n")
    subprocess.run([sys.executable, "-m", "laser_repro.cli", "artifact", "table1", "--config", str(REPO / "config.yaml"),
                    "--config", str(overlay), "--out", str(out)], check=True, capture_output=True)
    assert "| ours | 11,041 ✓ | 5,327 ✓ | 76,896 ✓ | 6.96 ✓ | 1.3e-3 ✓ |" in out.read_text()
    # the same rows in compare.md's Table 1 section
    from laser_repro.artifacts.compare import section_table1
    from laser_repro.paper.reported import load_reported

    section = section_table1(tmp_path, ["scientific"], load_reported())
    assert section.count("exact match") == 5 and "| scientific | Density | 1.3e-3 | 1.3e-3 | exact match |" in section
