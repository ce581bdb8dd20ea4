"""Table 1: the paper's statistics beside ours, exact matches marked."""

import json
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


@pytest.mark.parametrize("edit, message", [
    ({"users": "19,856"}, r"stats.json: users is '19,856'; expected int"),  # was int()'s "invalid literal"
    ({"users": None}, r"stats.json: users is None; expected int"),  # was a TypeError traceback
    ({"density": True}, r"stats.json: density is True; expected int or float"),
    ({"items": ...}, r"stats.json: missing key\(s\) \['items'\]; re-run `laser-repro data prepare`"),
])
def test_a_broken_stats_json_is_refused_by_file_and_key(tmp_path, caplog, edit, message):
    """Table 1, `data stats` and every loader read stats.json through one checked reader."""
    from laser_repro.cli import main as cli_main
    from laser_repro.data.dataset import load_dataset

    _stats(tmp_path, "pet", 10, 5, 30)
    path = tmp_path / "pet" / "stats.json"
    stats = {**json.loads(path.read_text()), **edit}
    path.write_text(json.dumps({k: v for k, v in stats.items() if v is not ...}))
    with pytest.raises(ValueError, match=message):
        compute_table1(tmp_path, ["pet"])
    assert cli_main(["data", "stats", str(tmp_path / "pet")]) == 1
    assert f"{path}: " in caplog.text and "Traceback" not in caplog.text
    for f in ("items.json", "users.json", "interactions.npz"):  # the rest of a prepared folder: stats.json decides
        (tmp_path / "pet" / f).write_text("")
    with pytest.raises(ValueError, match=message if "missing" not in message else "format_version None, expected"):
        load_dataset(tmp_path / "pet")  # (a loader needs only the name and format version)


def test_a_stats_json_that_is_not_an_object_is_refused(tmp_path):
    from laser_repro.data.dataset import data_fingerprint

    (tmp_path / "pet").mkdir()
    (tmp_path / "pet" / "stats.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"pet/stats.json: expected a JSON object of data set statistics, got list"):
        data_fingerprint(tmp_path / "pet")


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
