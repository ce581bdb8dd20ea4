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


def _blocks(header_pattern: str) -> list[list[list[str]]]:
    """Every tab-separated block of the paper text whose header line matches ``header_pattern``."""
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if re.fullmatch(header_pattern, line):
            block = []
            for row in lines[i + 1:]:
                if not row.strip():
                    break
                block.append(row.split("\t"))
            out.append(block)
    return out


def _check_cell(cell, raw: str, where) -> None:
    text, flags = _strip(raw)
    assert cell.text == text, where
    assert (cell.bold, cell.underline, cell.star) == ("b" in flags, "u" in flags, "*" in flags), where


def test_table1_matches_the_paper_text_cell_by_cell():
    if not PAPER.exists():
        pytest.skip(f"paper text not found at {PAPER}")
    r = load_reported()
    (block,) = _blocks(r"Datasets\t#Users\t#Items\t#Inters\.\tAvg\. n\tDensity")
    assert [row[0] for row in block] == ["Scientific", "Arts", "Pet", "Games"]
    checked = 0
    for name, *cells in block:
        ours = r.table1(name.lower())
        for col, raw in zip(r.raw["table1"]["columns"], cells, strict=True):
            _check_cell(ours[col], raw, (name, col))
            checked += 1
    assert checked == 4 * 5


# printed row label -> reported.yaml row (Tables 3-4 print the two "w/o suffix" rows under a header line)
ABLATION_LABELS = {"Laser-C": "main", "w/o prefix": "no-prefix", "w/ average pooling": "no-suffix-mean",
                   "w/ [EOS]": "no-suffix-eos", "w/o M-Former": "no-mformer", "w/ one expert": "one-expert",
                   "w/o load-balancing loss": "no-lb", "w/o training phase 1": "no-phase1",
                   "w/o training phase 2": "no-phase2"}
TEMPLATE_LABELS = {"Laser-C": "main", "w/o specified phrase": "tpl-no-phrase", "w/o instruction": "tpl-no-instruction",
                   "w/ two instructions": "tpl-two-instructions"}


def _data_rows(block):
    """(label, three cells) of the rows that carry numbers (section and header lines skipped)."""
    return [(re.sub(r"</?[bui]>", "", row[0]).strip(), row[1:4]) for row in block if any(c.strip() for c in row[1:4])]


def test_tables_3_4_5_match_the_paper_text_cell_by_cell():
    if not PAPER.exists():
        pytest.skip(f"paper text not found at {PAPER}")
    r = load_reported()
    t3, t4 = _blocks(r"\tRecall@10\tNDCG@10\tMRR")
    (t5,) = _blocks(r"Templates\tRecall@10\tNDCG@10\tMRR")
    # Table 3 as printed (shifted "w/o suffix" rows included) is kept verbatim in reported.yaml
    printed = [(re.sub(r"</?[bui]>", "", row[0]).strip(), row[1:4]) for row in t3 if not row[0].startswith("<i>")]
    assert len(printed) == len(r.raw["table3"]["as_printed"]) == 10
    for (label, cells), (ylabel, *ycells) in zip(printed, r.raw["table3"]["as_printed"]):
        assert label == ylabel
        for raw, ycell in zip(cells, ycells, strict=True):
            _check_cell(parse_cell(ycell), raw, ("table3", label))
    checked = 0
    for table, block, labels in (("table4", t4, ABLATION_LABELS), ("table5", t5, TEMPLATE_LABELS)):
        rows = _data_rows(block)
        assert [labels[label] for label, _ in rows] == list(r.ablation_rows(table)), table
        for label, cells in rows:
            for metric, raw in zip(METRICS, cells, strict=True):
                _check_cell(r.ablation(table, labels[label], metric), raw, (table, label, metric))
                checked += 1
    assert checked == 9 * 3 + 4 * 3
    # the corrected Table 3 reading moves exactly the two shifted triples
    assert [r.ablation("table3", "no-suffix-mean", m).text for m in METRICS] == ["0.0579", "0.0425", "0.0481"]
    assert [r.ablation("table3", "no-suffix-eos", m).text for m in METRICS] == ["0.1004", "0.0725", "0.0683"]
