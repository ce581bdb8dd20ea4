"""Table 2 on hand-made runs: stars, bold/underline, Improv.%, stand-ins, missing runs."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from laser_repro.artifacts.table2 import RUN, compute_table2, make_table2
from laser_repro.experiment.layout import run_dir
from laser_repro.experiment.registry import table2_methods
from laser_repro.experiment.specs import Table2Spec
from test_artifacts_support import write_run, write_spec

HIT, MISS = 0, 50  # rank 0 is a hit at 10; rank 50 is a miss


def ranks(hits):
    r = np.full(40, MISS)
    r[list(hits)] = HIT
    return r


@pytest.fixture()
def runs(tmp_path):
    for seed in (0, 1):
        # pet: Laser-C hits 30 users, BERT4Rec 20, SASRec 10: a clear, significant win
        write_run(tmp_path, "pet", "laser-c", "main", seed, ranks(range(30)), backbone="chatglm2-6b")
        write_run(tmp_path, "pet", "bert4rec", "main", seed, ranks(range(20)))
        write_run(tmp_path, "pet", "sasrec", "main", seed, ranks(range(10)))
        write_run(tmp_path, "pet", "laser-g", "main", seed, ranks(range(12)), backbone="tiny-gpt2")
        # syn: Laser-C and BERT4Rec differ on three users only: not significant
        write_run(tmp_path, "syn", "laser-c", "main", seed, ranks([*range(20), 20, 21]), backbone="chatglm2-6b")
        write_run(tmp_path, "syn", "bert4rec", "main", seed, ranks([*range(20), 22]))
    return tmp_path


def spec(root, datasets=("pet", "syn"), seeds=(0, 1), methods=None) -> Table2Spec:
    methods = [m for m in table2_methods() if m != "gru4rec"] if methods is None else methods
    return Table2Spec(runs_root=str(root), seeds=list(seeds), datasets=list(datasets), methods=list(methods))


def test_markers_significance_and_improv(runs):
    res = compute_table2(spec(runs))
    col = res.columns[("pet", "recall@10")]
    assert (col.best_laser, col.best_baseline) == ("laser-c", "bert4rec")
    assert col.improv == pytest.approx((0.75 - 0.5) / 0.5 * 100)
    # hand-computed paired t: differences are 1 on 10 of 40 users, 0 elsewhere
    d = np.r_[np.ones(10), np.zeros(30)]
    t = d.mean() / (d.std(ddof=1) / math.sqrt(40))
    assert col.test.n == 40 and col.test.t == pytest.approx(t) and col.test.p < 0.05 and col.star
    syn = res.columns[("syn", "recall@10")]
    assert syn.test.p > 0.05 and not syn.star
    assert syn.improv == pytest.approx((22 / 40 - 21 / 40) / (21 / 40) * 100)


def test_rendered_table(runs, tmp_path):
    out = tmp_path / "t2.md"
    make_table2(spec(runs, seeds=(0, 1, 2)), out)
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Laser-C |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "**75.00 ± 0.00 (n=2)**\\*"  # pet R@10: bold + star, seed 2 missing
    assert cells[4] == "**55.00 ± 0.00 (n=2)**"  # syn R@10: bold, no star
    b4r = next(line for line in text.splitlines() if line.startswith("| BERT4Rec |"))
    assert "<u>50.00 ± 0.00 (n=2)</u>" in b4r
    laser_g = next(line for line in text.splitlines() if line.startswith("| Laser-G |"))
    assert "30.00 ± 0.00 (n=2)†" in laser_g and "tiny-gpt2 instead of gpt2-large" in text
    fdsa = next(line for line in text.splitlines() if line.startswith("| FDSA |"))
    assert fdsa.count("—") == 6
    assert "| RecGURU | — |" in text and "pet/recguru/main/seed~0/metrics.json" in text  # requested, not run: a gap
    improv = next(line for line in text.splitlines() if line.startswith("| **Improv. (%)** |"))
    assert improv.split("|")[2].strip() == "50.00"
    # every missing run is listed by path
    for path in ("pet/fdsa/main/seed~0/metrics.json", "syn/laser-c/main/seed~2/metrics.json"):
        assert path in text
    assert "ttest_rel" in text and "alpha = 0.05" in text and "pet: n = 40" in text


def test_cli_wiring(runs, tmp_path):
    from laser_repro.cli import main

    out = tmp_path / "cli" / "table2.md"
    path = write_spec(tmp_path / "table2.json", spec(runs, datasets=["pet"]))
    assert main(["artifact", "table2", "--spec", str(path), "--out", str(out)]) == 0
    assert "| Laser-C | **75.00 ± 0.00**\\* |" in out.read_text()
    # a figure must be asked for as .png (its PDF goes next to it): a clear error, exit code 1
    from laser_repro.experiment.specs import Fig3Spec

    fig3 = write_spec(tmp_path / "fig3.json", Fig3Spec(runs_root=str(runs), seeds=[0], dataset="pet", source="syn",
                                                        methods=["laser-c"], baselines=["bert4rec"], fractions=[0, 1]))
    assert main(["artifact", "fig3", "--spec", str(fig3), "--out", str(tmp_path / "fig3.svg")]) == 1
    assert not (tmp_path / "fig3.svg").exists()
    # a spec of another artifact is refused, naming the file and the key
    assert main(["artifact", "fig3", "--spec", str(path), "--out", str(tmp_path / "fig3.png")]) == 1


def test_rows_are_the_requested_methods(runs, tmp_path):
    """table2.methods decides the rows: a method the paper lacks shows only when requested."""
    write_run(runs, "pet", "gru4rec", "main", 0, ranks(range(25)))
    without = compute_table2(spec(runs))
    assert not any(m == "gru4rec" for m, *_ in without.rows)
    assert without.columns[("pet", "recall@10")].best_baseline == "bert4rec"
    res = compute_table2(spec(runs, methods=table2_methods()))
    assert ("gru4rec", "GRU4Rec (not in the paper)", "traditional", RUN) in res.rows
    # GRU4Rec hits 25 of 40 (0.625) only with seed 0: it competes for best baseline (BERT4Rec: 0.5)
    assert res.columns[("pet", "recall@10")].best_baseline == "gru4rec"
    assert res.columns[("pet", "recall@10")].improv == pytest.approx((0.75 - 0.625) / 0.625 * 100)
    assert any("syn/gru4rec/main/seed~0" in str(p) for p in res.missing())  # requested, so a missing run
    # a paper row left out of table2.methods is "not requested": no runs read, none missing
    only = compute_table2(spec(runs, methods=["laser-c", "bert4rec"]))
    assert ("sasrec", "SASRec", "traditional", "not requested") in only.rows
    assert not any("sasrec" in str(p) for p in only.missing())


def test_rows_on_a_subset_of_test_users_are_marked(runs, tmp_path):
    """A run capped to a seeded subset of test users (LLM runs on CPU) is averaged with its n shown."""
    for seed in (0, 1):
        write_run(runs, "pet", "sasrec", "main", seed, ranks(range(10))[:25], users=np.arange(25))
    out = tmp_path / "t2.md"
    make_table2(spec(runs, datasets=("pet",), methods=["laser-c", "bert4rec", "sasrec"]), out)
    text = out.read_text()
    sasrec = next(line for line in text.splitlines() if line.startswith("| SASRec |"))
    bert = next(line for line in text.splitlines() if line.startswith("| BERT4Rec |"))
    assert sasrec.count("§") == 3 and "§" not in bert
    assert ("§ evaluated on a seeded subset of the test users (a cap in its run config), not all of them: "
            "SASRec on pet: n = 25 of 40") in text


def test_bad_metric_values_and_damaged_ranks_name_the_file(tmp_path):
    import json

    from laser_repro.artifacts.runs import load_group
    from laser_repro.experiment.specs import Cell

    path = write_run(tmp_path, "pet", "sasrec", "main", 0, ranks(range(10)))
    record = json.loads((path / "metrics.json").read_text())
    for bad in ("0.25", True, "abc"):
        (path / "metrics.json").write_text(json.dumps({**record, "test": {**record["test"], "recall@10": bad}}))
        with pytest.raises(ValueError, match=rf"{path / 'metrics.json'}: test.recall@10 is .*; expected a number"):
            load_group(tmp_path, Cell("pet", "sasrec"), [0]).values("test", "recall@10")
    (path / "metrics.json").write_text(json.dumps(record))
    # ranks of another run beside this metrics.json (a partial copy): means and paired tests would disagree
    other = tmp_path / "other"
    write_run(other, "pet", "sasrec", "main", 0, ranks(range(11)))
    shutil.copy(Path(run_dir(str(other), "pet", "sasrec", "main", 0)) / "ranks.npz", path / "ranks.npz")
    with pytest.raises(ValueError, match=rf"{path / 'ranks.npz'}: its valid ranks \(40 users, recall@10 0.275\) do "
                                         r"not match metrics.json \(40 users, recall@10 0.25\): the two files come "
                                         "from different runs"):
        load_group(tmp_path, Cell("pet", "sasrec"), [0])
    (path / "ranks.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=rf"{path / 'ranks.npz'}: unreadable per-user ranks"):
        load_group(tmp_path, Cell("pet", "sasrec"), [0])


def test_kar_is_a_stand_in_when_either_model_is_not_chatglm2(runs, tmp_path):
    """KAR uses ChatGLM2 twice (it writes the knowledge and encodes it): either one replaced is a stand-in."""
    paper = {"text_encoder": "chatglm2-6b", "knowledge_generator": "chatglm2-6b"}
    for seed in (0, 1):
        write_run(runs, "pet", "kar", "main", seed, ranks(range(15)), config={**paper, "knowledge_generator": "template"})
        write_run(runs, "syn", "kar", "main", seed, ranks(range(15)), config=paper)
    res = compute_table2(spec(runs, methods=["laser-c", "bert4rec", "kar"]))
    assert res.groups[("kar", "pet")].stand_in() == "template"
    assert res.groups[("kar", "syn")].stand_in() is None
    out = tmp_path / "t2.md"
    make_table2(spec(runs, methods=["laser-c", "bert4rec", "kar"]), out)
    assert "KAR on pet: template instead of chatglm2-6b" in out.read_text()


def test_the_footnote_gives_each_metrics_paired_n_and_names_runs_with_other_tie_rules(tmp_path):
    """The best baseline, and so the paired users, can differ by metric (the footnote kept the first metric's n);
    a run that ranked ties optimistically (RecFormer's rule) is named, not averaged in silently."""
    for seed in (0, 1):
        write_run(tmp_path, "pet", "laser-c", "main", seed, ranks(range(30)), backbone="chatglm2-6b")
        b4r = np.full(40, MISS)
        b4r[:20] = 5  # 20 hits at rank 5: the best Recall@10 (0.5), a low NDCG@10
        write_run(tmp_path, "pet", "bert4rec", "main", seed, b4r, ties="optimistic" if seed else "pessimistic")
        sas = np.full(30, MISS)
        sas[:12] = HIT  # 12 of 30 users at rank 0: the best NDCG@10 and MRR, on 30 users only
        write_run(tmp_path, "pet", "sasrec", "main", seed, sas, users=np.arange(30))
    res = compute_table2(spec(tmp_path, datasets=("pet",), methods=["laser-c", "bert4rec", "sasrec"]))
    assert res.columns[("pet", "recall@10")].best_baseline == "bert4rec"
    assert res.columns[("pet", "ndcg@10")].best_baseline == "sasrec"
    assert (res.columns[("pet", "recall@10")].test.n, res.columns[("pet", "ndcg@10")].test.n) == (40, 30)
    out = tmp_path / "t2.md"
    make_table2(spec(tmp_path, datasets=("pet",), methods=["laser-c", "bert4rec", "sasrec"]), out)
    text = out.read_text()
    assert "(pet: n = 40 (R@10), 30 (N@10, MRR))" in text
    assert "Ties ranked other than pessimistically" in text and "optimistic: BERT4Rec on pet" in text
    assert "SASRec on pet" not in text.split("Ties ranked")[1].splitlines()[0]
