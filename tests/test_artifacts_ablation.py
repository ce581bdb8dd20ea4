"""Tables 3-5 on hand-made runs: best bold, second underlined, stars vs the full model."""

import numpy as np
import pytest

from laser_repro.artifacts.ablation import compute_ablation, layout_of, make_ablation
from laser_repro.experiment.specs import VariantTableSpec
from test_artifacts_support import write_run

ABLATIONS = ["no-prefix", "no-suffix-mean", "no-suffix-eos", "no-mformer", "one-expert", "no-lb", "no-phase1", "no-phase2"]
TEMPLATES = ["tpl-no-phrase", "tpl-no-instruction", "tpl-two-instructions"]


def spec(root, table, seeds, variants, dataset="sci", method="laser-c"):
    return VariantTableSpec(runs_root=str(root), seeds=seeds, table=table, dataset=dataset, method=method,
                            variants=variants)


def ranks(n_hits, n=40):
    r = np.full(n, 50)
    r[:n_hits] = 0
    return r


def test_table3_markers_and_stars(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, "sci", "laser-c", "main", seed, ranks(30), backbone="minilm")
        write_run(tmp_path, "sci", "laser-c", "no-prefix", seed, ranks(20), backbone="minilm")
        write_run(tmp_path, "sci", "laser-c", "no-lb", seed, ranks(29), backbone="minilm")
    res = compute_ablation(spec(tmp_path, "table3", [0, 1], ABLATIONS))
    assert res.ranking["recall@10"] == ["main", "no-lb", "no-prefix"]
    assert res.tests[("no-prefix", "recall@10")].better() and not res.tests[("no-lb", "recall@10")].better()
    assert res.change("no-prefix", "recall@10") == pytest.approx((0.5 - 0.75) / 0.75 * 100)
    out = tmp_path / "t3.md"
    make_ablation(spec(tmp_path, "table3", [0, 1], ABLATIONS), out)
    text = out.read_text()
    assert "| Laser-C (full) | **0.7500 ± 0.0000**† |" in text
    assert "| w/o load-balancing loss | <u>0.7250 ± 0.0000</u>† |" in text
    assert "| w/o prefix | 0.5000 ± 0.0000\\*† |" in text
    assert "| w/o M-Former | — | — | — |" in text
    assert "sci/laser-c/no-mformer/seed~1/metrics.json" in text
    assert "minilm instead of chatglm2-6b" in text and "-33.33" in text
    assert "No test (per-user ranks missing" not in text
    # a variant whose ranks are gone keeps its row, and its missing * is explained, not read as "not significant"
    (tmp_path / "sci/laser-c/no-lb/seed~1/ranks.npz").unlink()
    make_ablation(spec(tmp_path, "table3", [0, 1], ABLATIONS), out)
    text = out.read_text()
    assert "| w/o load-balancing loss | <u>0.7250 ± 0.0000</u>† |" in text
    assert "No test (per-user ranks missing for it or the full model): w/o load-balancing loss." in text


def test_a_capped_variant_is_marked_and_starred_only_when_the_means_agree(tmp_path):
    """A run that tested a subset of the test users got no § in Tables 3-5 (Table 2 only), and the star took the
    paired test alone: under per-seed caps it can pair users the seeds' means do not weigh alike."""
    from laser_repro.artifacts.compare import section_ablation
    from laser_repro.paper.reported import load_reported

    hits = lambda k, n=40: np.r_[np.zeros(k, int), np.full(n - k, 50)]  # noqa: E731
    for seed in (0, 1):
        write_run(tmp_path, "sci", "laser-c", "main", seed, hits(30))  # 0.75 on all 40 users
    write_run(tmp_path, "sci", "laser-c", "one-expert", 0, hits(30, 30), users=np.arange(30))  # capped: 30 users
    write_run(tmp_path, "sci", "laser-c", "one-expert", 1, hits(22))  # all 40: 0.55
    res = compute_ablation(spec(tmp_path, "table3", [0, 1], ["one-expert"]))
    assert res.full_n == 40
    assert res.summaries[("one-expert", "recall@10")].mean == pytest.approx(0.775)  # above the full model's 0.75 ...
    assert res.tests[("one-expert", "recall@10")].better()  # ... yet users 22-29 pair 1 against 0.5: "full better"
    assert not res.starred("one-expert", "recall@10")
    out = tmp_path / "t3.md"
    make_ablation(spec(tmp_path, "table3", [0, 1], ["one-expert"]), out)
    text = out.read_text()
    assert "| w/ one expert | **0.7750 ± 0.3182**†§ |" in text  # † : the runs name no backbone
    assert "§ evaluated on a seeded subset of the test users (a cap in its run config), not all of them: " \
           "w/ one expert: n = 30 of 40" in text
    assert "| w/ one expert | Recall@10 | 40 |" in text and "| no |" in text
    from laser_repro.artifacts.claims import ablations_lower_everything

    claim = ablations_lower_everything(res, "sci", "§5.5")  # counts what the table stars (was: the test alone)
    assert "0 of 3 (variant, metric) cells below the full model (0 significant)" in claim.ours
    compare = section_ablation(res, load_reported(), 0.15)
    assert "a seeded subset of the test users (§; n = 30 of 40)" in compare
    assert "(§" not in compare.split("| w/ one expert |")[0]  # the full model's rows carry no caveat


def test_table5_rows(tmp_path):
    write_run(tmp_path, "sci", "laser-c", "main", 0, ranks(10))
    write_run(tmp_path, "sci", "laser-c", "tpl-no-instruction", 0, ranks(12))
    res = compute_ablation(spec(tmp_path, "table5", [0], TEMPLATES))
    assert res.variants == ["main", "tpl-no-phrase", "tpl-no-instruction", "tpl-two-instructions"]
    assert res.ranking["ndcg@10"] == ["tpl-no-instruction", "main"]  # a variant can beat the full model
    with pytest.raises(ValueError, match="unknown variant table"):
        compute_ablation(spec(tmp_path, "table9", [0], TEMPLATES))


def test_each_section_heading_appears_once_whatever_the_variants_order():
    """Variants listed out of the paper's grouping repeated a section heading (Bi-Tuning, M-Former, Bi-Tuning)."""
    assert layout_of("table3", ["no-prefix", "no-mformer", "no-suffix-mean", "mine", "no-lb"]) == [
        (None, ["main"]), ("Bi-Tuning", ["no-prefix", "no-suffix-mean"]), ("M-Former", ["no-mformer"]),
        ("Other", ["mine"]), ("Model Learning", ["no-lb"])]
    assert layout_of("table5", TEMPLATES) == [(None, ["main"]), (None, TEMPLATES)]
