"""Helpers that write hand-made run folders (metrics.json per the runinfo schema + ranks.npz)."""

from pathlib import Path

import numpy as np
import pytest

from laser_repro.eval.evaluator import EvalResult, save_ranks
from laser_repro.experiment.layout import run_dir
from laser_repro.experiment.specs import Cell, Fig5Spec, Table2Spec, to_json
from laser_repro.eval.metrics import aggregate
from laser_repro.runinfo import write_metrics


def write_run(root, dataset, method, variant, seed, test_ranks, valid_ranks=None, targets=None,
              backbone=None, users=None, config=None, ties="pessimistic") -> Path:
    """A run folder whose metrics.json aggregates exactly the given per-user ranks."""
    test_ranks = np.asarray(test_ranks, dtype=np.int64)
    valid_ranks = test_ranks if valid_ranks is None else np.asarray(valid_ranks, dtype=np.int64)
    users = np.arange(test_ranks.size) if users is None else np.asarray(users)
    targets = np.zeros(test_ranks.size, dtype=np.int64) if targets is None else np.asarray(targets)
    results = {s: EvalResult(users, targets, r, aggregate(r)) for s, r in (("valid", valid_ranks), ("test", test_ranks))}
    out = Path(run_dir(str(root), dataset, method, variant, seed))
    config = {"seed": seed, **(config or {})}
    if backbone is not None:
        config["backbone"] = backbone
    write_metrics(out, {"method": method, "dataset": dataset, "seed": seed,
                        "valid": results["valid"].metrics, "test": results["test"].metrics,
                        "best_epoch": 1, "ties": ties, "config": config, "config_hash": "x",
                        "git_commit": "x", "versions": {}, "device": "cpu", "wall_time_s": 0.0})
    save_ranks(out / "ranks.npz", results)
    return out


REPO = Path(__file__).resolve().parents[1]


def paper_experiment(tmp_path: Path, **overrides):
    """The paper's config.yaml with its products under ``tmp_path`` (runs/, data/, ...) and ``overrides``."""
    from laser_repro.experiment.config import merge
    from laser_repro.experiment.plan import Experiment

    paths = {k: str(tmp_path / k) for k in ("raw", "data", "runs", "configs", "results", "figures", "logs")}
    return Experiment.from_files([REPO / "config.yaml"], merge({"paths": paths}, overrides))


def write_spec(path: Path, spec) -> Path:
    """A spec file as the workflow writes it (rule write_artifact_spec)."""
    import json

    path.write_text(json.dumps(to_json(spec)))
    return path


def test_write_run_roundtrip(tmp_path):
    from laser_repro.artifacts.runs import load_group
    write_run(tmp_path, "d", "sasrec", "main", 0, [0, 5, 20, 1])
    g = load_group(tmp_path, Cell("d", "sasrec"), [0, 1])
    assert len(g.runs) == 1 and [gap.path for gap in g.missing] == [tmp_path / "d/sasrec/main/seed~1/metrics.json"]
    assert g.missing[0].stale == "" and g.missing[0].markdown == f"`{g.missing[0].path}`"
    # a run folder copied to another seed's place is not read as that seed
    import shutil
    shutil.copytree(tmp_path / "d/sasrec/main/seed~0", tmp_path / "d/sasrec/main/seed~1")
    g2 = load_group(tmp_path, Cell("d", "sasrec"), [0, 1])
    assert len(g2.runs) == 1 and g2.missing[0].stale == "it records seed 0, but its folder is for 1 (copied or moved?)"
    assert g.summary("test", "recall@10").mean == 0.75
    users, vals = g.per_user("test", "mrr")
    np.testing.assert_allclose(vals, [1.0, 1 / 6, 1 / 21, 0.5])


def test_a_file_that_only_mentions_the_mark_is_not_the_suites(tmp_path):
    """The mark counts only where the suite writes it (a markdown artifact's last line, a figure's metadata entry):
    notes or a README that name `laser-repro artifact` were once replaced without --force."""
    from laser_repro.artifacts.output import MARK, TRAILER, guard_out, written_by_suite

    notes = tmp_path / "notes.md"
    notes.write_text(f"# My notes\nrun `{MARK} table2 --config config.yaml`\nimportant: 42\n")
    assert not written_by_suite(notes)
    with pytest.raises(ValueError, match="notes.md exists and was not written by"):
        guard_out(notes)
    notes.write_text(f"{TRAILER}\nmy own text below the suite's line\n")  # the trailer, but not last
    assert not written_by_suite(notes)
    ours = tmp_path / "t.md"
    ours.write_text(f"| a |\n\n{TRAILER}\n\n")
    assert written_by_suite(ours)
    png = tmp_path / "f.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n....tEXtComment\x00made with " + MARK.encode())  # phrase, not our entry
    assert not written_by_suite(png)
    png.write_bytes(b"\x89PNG\r\n\x1a\n....tEXtSoftware\x00" + MARK.encode())
    assert written_by_suite(png)
    pdf = tmp_path / "f.pdf"
    pdf.write_bytes(b"%PDF-1.4\n<< /Title (" + MARK.encode() + b") >>")
    assert not written_by_suite(pdf)


def test_artifact_outputs_never_replace_a_file_the_suite_did_not_write(tmp_path, caplog):
    from laser_repro.artifacts.output import MARK
    from laser_repro.cli import main as cli_main

    runs = tmp_path / "runs"
    write_run(runs, "pet", "sasrec", "main", 0, [0, 5, 20, 1])
    spec = write_spec(tmp_path / "t2.json", Table2Spec(runs_root=str(runs), seeds=[0], datasets=["pet"],
                                                      methods=["sasrec"]))
    out = tmp_path / "table2.md"
    out.write_text("my own notes\n")
    assert cli_main(["artifact", "table2", "--spec", str(spec), "--out", str(out)]) != 0
    assert "table2.md exists and was not written by `laser-repro artifact`" in caplog.text
    assert "pass --force" in caplog.text
    assert out.read_text() == "my own notes\n"  # untouched
    assert cli_main(["artifact", "table2", "--spec", str(spec), "--out", str(out), "--force"]) == 0
    text = out.read_text()
    assert "| SASRec |" in text and text.rstrip().endswith(f"<!-- written by {MARK}; rebuild it rather than editing -->")
    assert cli_main(["artifact", "table2", "--spec", str(spec), "--out", str(out)]) == 0  # ours: rebuilt freely
    # a figure's PDF is written next to its PNG: a PDF of the user's own there is protected too
    f5 = write_spec(tmp_path / "f5.json", Fig5Spec(runs_root=str(runs), seeds=[0], datasets=["pet"],
                                                   method="laser-c", idrecs=["sasrec"], collaborative="bert4rec"))
    png = tmp_path / "fig5.png"
    png.with_suffix(".pdf").write_bytes(b"%PDF-1.4 someone else's")
    assert cli_main(["artifact", "fig5", "--spec", str(f5), "--out", str(png)]) != 0
    assert "fig5.pdf exists and was not written by" in caplog.text and not png.exists()
    png.with_suffix(".pdf").unlink()
    assert cli_main(["artifact", "fig5", "--spec", str(f5), "--out", str(png)]) == 0
    assert MARK.encode() in png.read_bytes() and MARK.encode() in png.with_suffix(".pdf").read_bytes()
    assert cli_main(["artifact", "fig5", "--spec", str(f5), "--out", str(png)]) == 0  # and rebuilt freely
