"""Benchmark: SASRec and BERT4Rec on the real Scientific set vs the paper's Table 2.

Trains each model with 3 seeds under the RecBole/UniSRec protocol (the defaults of
``IDRecRunConfig`` and the model configs; nothing here is tuned), then writes
``benchmarks/idrec_scientific.md``: test Recall@10 / NDCG@10 / MRR (x100, mean ± std over seeds)
next to the paper's values, the relative difference, training time to early stopping and the
per-epoch time. Runs are resumable (re-running continues them) and can be split across
processes (``--models sasrec`` in one, ``--models bert4rec`` in another, then ``--report-only``).

    python benchmarks/bench_idrec_scientific.py --threads 1 --models sasrec
    python benchmarks/bench_idrec_scientific.py --report-only

Finished runs are also kept as committed records (``benchmarks/records/idrec_scientific/``: metrics.json,
ranks.npz, protocols.json; see records.py), read where the run folder is absent. The report is not
rewritten where it would drop or blank a model's numbers (``--allow-gaps`` overrides).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from records import finished, sync, unpoolable, write_report

from laser_repro.experiment.config import nest
from laser_repro.idrec.config import IDRecRunConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "amazon-scientific-recformer"
REPORT = Path(__file__).with_name("idrec_scientific.md")
RECORDS = REPO / "benchmarks" / "records" / "idrec_scientific"  # committed records of finished runs (records.py)
PAPER = {  # Table 2, Scientific, x100 (copied from RecFormer's paper; RecBole under UniSRec's settings)
    "sasrec": {"recall@10": 13.11, "ndcg@10": 8.03, "mrr": 7.12},
    "bert4rec": {"recall@10": 10.61, "ndcg@10": 7.90, "mrr": 7.59},
    "fdsa": {"recall@10": 9.67, "ndcg@10": 7.16, "mrr": 6.92},
    "recguru": {"recall@10": 7.81, "ndcg@10": 5.75, "mrr": 5.66},
    "zesrec": {"recall@10": 12.60, "ndcg@10": 8.43, "mrr": 7.45},
}
OFFLINE = {"text_encoder": "minilm"}  # no hub here: MiniLM-L6 features stand in for BERT-base [CLS] (FDSA, ZESRec)
OFFLINE_WIDTH = {"fdsa": {"model_config.text_dim": 384}}  # FDSA reads MiniLM's 384-d features (BERT's 768 by default)


def offline_config(model: str) -> dict:
    """Run-config overrides (flat, dotted) that put ``model`` on the offline MiniLM features."""
    return {**OFFLINE, **OFFLINE_WIDTH.get(model, {})}
METRICS = ("recall@10", "ndcg@10", "mrr")
TARGET_REL = 0.15
ANALYSIS = "<!-- analysis: hand-written, kept when the tables above are regenerated -->"


def prepare(data_dir: Path) -> Path:
    if not (data_dir / "stats.json").exists():
        if not SHARED.exists():
            sys.exit(f"{SHARED}: real Scientific data not found (expected ../shared/data next to the repo)")
        subprocess.run(
            ["laser-repro", "data", "prepare", "--source", "recformer", "--input", str(SHARED),
             "--name", "scientific", "--out", str(data_dir)],
            check=True,
        )
    return data_dir


def train_all(args) -> None:
    from laser_repro.config import from_dict
    from laser_repro.experiment.registry import METHODS
    from laser_repro.idrec.trainer import train_idrec

    data = prepare(args.data)
    for model in args.models:
        for seed in args.seeds:
            # the registry's identity of the method (its own settings), then this machine's execution keys
            over = {**METHODS[model].base_config(), **offline_config(model), "dataset": str(data), "seed": seed,
                    "num_threads": args.threads, "progress": False}
            train_idrec(from_dict(IDRecRunConfig, nest(over)), args.runs / model / f"seed~{seed}")


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.mean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def protocol_variants(run: Path, data: Path) -> dict[str, dict] | None:
    """Test metrics of a finished run's best model under other evaluation protocols (analysis only):
    RecFormer's optimistic ties, and RecBole's full-sort evaluation, which sets the scores of the
    items in the user's input history to -inf (so a repeated item can never be hit). A committed record (no
    model.pt) gives its cached variants, or None without them."""
    import numpy as np
    import torch

    cache = run / "protocols.json"
    if not (run / "model.pt").exists():  # a committed record: its cached variants, if it has them
        return json.loads(cache.read_text()) if cache.exists() else None
    if cache.exists() and cache.stat().st_mtime >= (run / "model.pt").stat().st_mtime:
        return json.loads(cache.read_text())
    from laser_repro.data.dataset import load_dataset
    from laser_repro.eval.evaluator import evaluate
    from laser_repro.idrec.encoder import load_collaborative_encoder
    from laser_repro.idrec.trainer import eval_inputs

    ds = load_dataset(data)
    model = load_collaborative_encoder(run).model
    users, targets, tokens = eval_inputs(ds, "test", model.history_len)
    histories = [ds.history_and_target(int(u), "test")[0] for u in users]

    def masked(pos):
        scores = model.full_scores(torch.as_tensor(tokens[pos]))
        for row, p in enumerate(pos):
            scores[row, torch.as_tensor(histories[p], dtype=torch.long)] = float("-inf")
        return scores

    plain = lambda pos: model.full_scores(torch.as_tensor(tokens[pos]))  # noqa: E731
    with torch.no_grad():
        out = {
            "optimistic": evaluate(plain, users, targets, ties="optimistic").metrics,
            "history_masked": evaluate(masked, users, targets).metrics,
        }
    repeat = np.array([t in set(h.tolist()) for h, t in zip(histories, targets)])
    out["repeat_share"] = float(repeat.mean())
    from laser_repro.io import write_json

    write_json(cache, out)
    return out


LABELS = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "fdsa": "FDSA", "recguru": "RecGURU", "zesrec": "ZESRec"}
PROTOCOLS = {  # each model's Table 2 training protocol (the registry's settings; listed per run at the end)
    "sasrec": "RecBole under UniSRec's settings (hidden 64, 2 layers, 2 heads, CE over all items, Adam lr 1e-3, "
              "batch 2048, prefix-augmented training instances)",
    "bert4rec": "RecBole under UniSRec's settings (hidden 64, 2 layers, 2 heads, cloze training with mask ratio 0.2, "
                "CE over all items, Adam lr 1e-3, batch 2048)",
    "fdsa": "RecBole under UniSRec's settings, as SASRec, plus a MiniLM text-feature stream",
    "recguru": "its official code's (hidden 32, 3 layers, 1 head; reconstruction with 30 sampled negatives under a "
               "Noam warm-up, then BPR with 5 negatives at lr 0.01; batch 1024, whole sequences)",
    "zesrec": "UniSRec's conventions (MiniLM features -> item MLP -> SASRec-style Transformer, width 300, 2 layers, "
              "CE over all items, Adam lr 1e-3, batch 2048, prefix-augmented training instances)",
}


def report(args) -> str:
    lines = [
        f"# {', '.join(LABELS[m] for m in args.models)} on Scientific vs the paper's Table 2",
        "",
        "Generated by `python benchmarks/bench_idrec_scientific.py` (train) and `--report-only` (this file).",
        "Protocol: each model as the paper's baseline cells (copied from RecFormer's Table 2) were produced, max "
        "length 50:",
        *[f"- {LABELS[m]}: {PROTOCOLS[m]};" for m in args.models],
        "",
        "all with early stopping (patience 10) on validation NDCG@10 and the test at the best epoch; full ranking over "
        "all 5,327 items, history not masked, ties pessimistic. Values x100, mean ± std over seeds.",
        "",
        "| Model | Metric | Paper | Ours | Δ% (rel.) | within 15% |",
        "|---|---|---|---|---|---|",
    ]
    timing = ["", "| Model | Seed | best epoch | epochs run | train time to early stop (s) | s/epoch | wall (s) | device |",
              "|---|---|---|---|---|---|---|---|"]
    variants = ["", "| Model | Evaluation protocol | Recall@10 | NDCG@10 | MRR | MRR@10 | n seeds |", "|---|---|---|---|---|---|---|"]
    for model in args.models:
        runs = finished(args.runs / model, RECORDS / model)
        recs = [json.loads((run / "metrics.json").read_text()) for run in runs]
        unfit = unpoolable(recs, args.data, IDRecRunConfig.EXECUTION_KEYS)
        if unfit:  # never a mean over seeds of other settings or of other data
            runs, recs = [], []
        pv = [protocol_variants(run, args.data) for run in runs] if args.protocols else []
        sync(args.runs / model, RECORDS / model, extra=("protocols.json",))
        if recs and pv and None not in pv:
            rows = [("ours: full ranking, ties pessimistic, history not masked (default)", [r["test"] for r in recs]),
                    ("ties optimistic (RecFormer)", [p["optimistic"] for p in pv]),
                    ("history items masked to -inf (RecBole full-sort)", [p["history_masked"] for p in pv])]
            for name, ms in rows:
                cells = " | ".join(fmt([100 * m[k] for m in ms]) for k in METRICS + ("mrr@10",))
                variants.append(f"| {model} | {name} | {cells} | {len(ms)} |")
            variants.append(f"| {model} | paper (Table 2) | " + " | ".join(f"{PAPER[model][k]:.2f}" for k in METRICS) + " | — | — |")
            repeat_share = pv[0]["repeat_share"]
        for m in METRICS:
            vals = [100 * r["test"][m] for r in recs]
            paper = PAPER[model][m]
            if vals:
                rel = (statistics.mean(vals) - paper) / paper
                ok = "yes" if abs(rel) <= TARGET_REL else "**no**"
                lines.append(f"| {model} | {m} | {paper:.2f} | {fmt(vals)} (n={len(vals)}) | {100 * rel:+.1f}% | {ok} |")
            else:
                lines.append(f"| {model} | {m} | {paper:.2f} | {unfit or 'not run'} | — | — |")
        for r in recs:
            per_epoch = r["train_time_s"] / max(r["epochs_run"], 1)
            timing.append(
                f"| {model} | {r['seed']} | {r['best_epoch']} | {r['epochs_run']} | {r['train_time_s']:.0f} | "
                f"{per_epoch:.1f} | {r['wall_time_s']:.0f} | {r['device']} |"
            )
        for run in sorted((args.runs / model).glob("seed~*")):  # unfinished runs: progress so far
            if not (run / "metrics.json").exists() and (run / "checkpoint.pt").exists():
                import torch

                st = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["state"]
                timing.append(
                    f"| {model} | {run.name.split('~')[-1]} (UNFINISHED, best valid ndcg@10 {st['best_score']:.4f}) | "
                    f"{st['best_epoch']} | {st['epoch']} | {st['elapsed_s']:.0f} | {st['elapsed_s'] / max(st['epoch'], 1):.1f} | "
                    f"{st['wall_s']:.0f} | — |"
                )
    if len(variants) > 3:
        variants.insert(0, "")
        variants.insert(1, f"The same best-epoch models under other evaluation protocols (test, x100; {100 * repeat_share:.1f}% of "
                        "test targets repeat an item of the user's input history):")
    settings = ["", "Settings of each model's runs (from their metrics.json; the registry's method settings over the "
                "IDRecRunConfig defaults):", ""]
    for model in args.models:
        f = next(iter(finished(args.runs / model, RECORDS / model)), None)
        if f is not None:
            c = json.loads((f / "metrics.json").read_text())["config"]
            extra = f", text encoder {c['text_encoder']}" if model in ("fdsa", "zesrec") else ""
            settings.append(f"- {model}: lr {c['lr']}, batch {c['batch_size']}, patience {c['patience']}{extra}, "
                            f"model {json.dumps(c['model_config'], sort_keys=True)}")
    text = "\n".join(lines + timing + variants + settings) + "\n"
    old = args.report.read_text() if args.report.exists() else ""
    if ANALYSIS in old:  # keep the hand-written analysis
        text += "\n" + old[old.index(ANALYSIS):]
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "benchmarks" / "out" / "data" / "scientific",
                   help="prepared data folder (made if missing; the one the other benchmarks use)")
    p.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "out" / "idrec_scientific", help="run folders")
    p.add_argument("--models", nargs="+", default=["sasrec", "bert4rec"], choices=list(PAPER),
                   help="models to train and report (the report lists exactly these)")
    p.add_argument("--report", type=Path, default=REPORT, help="markdown report to write")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    p.add_argument("--allow-gaps", action="store_true",
                   help="write the report even where it would drop or blank a model's numbers")
    p.add_argument("--no-protocols", dest="protocols", action="store_false",
                   help="skip re-evaluating finished runs under other protocols (optimistic ties, history masking)")
    args = p.parse_args()
    if not args.report_only:
        train_all(args)
    write_report(args.report, report(args), list(PAPER), args.allow_gaps,
                 f"not in --models, or neither a run folder under {args.runs} nor a record under {RECORDS}",
                 strict=args.report_only)
    print(args.report.read_text())


if __name__ == "__main__":
    main()
