"""The paper's reported numbers: parsing, provenance, and fidelity to the paper's text."""

import re
from pathlib import Path

import pytest

from laser_repro.paper.reported import METRICS, load_reported, parse_cell

PAPER = Path(__file__).resolve().parents[1].parent / "shared" / "paper" / "laser-paper.txt"


def test_parse_cell_flags_and_rounding():
    c = parse_cell("14.06 [b*]", "somewhere")
    assert (c.value, c.decimals, c.bold, c.underline, c.star) == (14.06, 2, True, False, True)
    assert c.half_ulp == pytest.approx(0.005)
    assert parse_cell("11,041").value == 11041
    d = parse_cell("1.3e-3")
    assert d.decimals is None and d.half_ulp == pytest.approx(0.5e-4)
    assert parse_cell("").value is None
    with pytest.raises(ValueError, match="cannot parse"):
        parse_cell("abc")


def test_every_cell_has_provenance_and_table2_shape():
    r = load_reported()
    for row, spec in r.table2_rows.items():
        assert len(spec["cells"]) == 12, row
        cell = r.table2(row, "pet", "mrr")
        assert "Table 2" in cell.provenance and spec["label"] in cell.provenance
    assert r.table2("laser-c", "scientific", "recall@10").star
    assert r.table2("sasrec", "scientific", "recall@10").provenance.count("RecFormer") >= 1
    assert r.ablation("table3", "no-suffix-eos", "recall@10").value == 0.1004
    assert "corrected reading" in r.ablation("table3", "no-suffix-eos", "mrr").provenance
    # Table 4's reference main row is Table 2's Pet Laser-C, not the copied Scientific row
    assert r.reference_main("table4", "recall@10").value == 0.1121
    assert r.ablation("table4", "main", "recall@10").value == 0.1406
    assert r.recformer_published("scientific", "ndcg@10").value == 10.27
    assert r.recformer_published("pet", "ndcg@10") is None  # unknown, never guessed


def _strip(s):
    flags = ("b" if "<b>" in s else "") + ("u" if "<u>" in s else "")
    s = re.sub(r"</?[bui]>", "", s).strip()
    if s.endswith("*"):
        flags += "*"
        s = s[:-1]
    return s, flags


def test_table2_matches_the_paper_text_cell_by_cell():
    if not PAPER.exists():
        pytest.skip(f"paper text not found at {PAPER}")
    r = load_reported()
    labels = {spec["label"]: key for key, spec in r.table2_rows.items()}
    labels["Improv. (%)"] = "improv"
    checked = 0
    for line in PAPER.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        name = re.sub(r"</?[bui]>", "", parts[0]).strip()
        if name not in labels or len(parts) < 13:
            continue
        for k, raw in enumerate(parts[1:13]):
            text, flags = _strip(raw)
            cell = r.table2(labels[name], ("scientific", "pet", "arts", "games")[k // 3], METRICS[k % 3])
            assert cell.text == text, (name, k)
            assert (cell.bold, cell.underline, cell.star) == ("b" in flags, "u" in flags, "*" in flags), (name, k)
            checked += 1
    assert checked == 13 * 12
