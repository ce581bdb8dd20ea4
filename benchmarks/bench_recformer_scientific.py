"""RECFORMER on the real Scientific set with the offline MiniLM-initialised Longformer (issue 12).

    python benchmarks/bench_recformer_scientific.py --threads 1    # the committed report (~25 min, 1 thread)
    python benchmarks/bench_recformer_scientific.py --report-only

The encoder is a 6-layer, 384-wide Longformer initialised from MiniLM-L6 (``encoder: minilm``):
not the paper's Longformer-base, and not pre-trained on RecFormer's corpus (neither the released
checkpoint nor the corpus is reachable offline). Budget on 2 cores: a seeded subset of training
users, a seeded validation cap, 256 tokens per sequence (RecFormer's README: 512/256 lose
little), validation every epoch, a few epochs per stage, gradient accumulation 1 (the CPU
batch is the official 16; the official x 8 accumulation would leave a handful of steps).
Everything else is the official fine-tuning. Every test user is tested. Writes
benchmarks/recformer_scientific.md; the run resumes when re-run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from laser_repro.io import write_text
from laser_repro.recformer.config import RecformerRunConfig
from laser_repro.recformer.trainer import train_recformer
from records import in_progress, keep_record, source, stale_inputs

HERE = Path(__file__).resolve().parent
REPORT = HERE / "recformer_scientific.md"
RECORDS = HERE / "records" / "recformer_scientific"  # committed records of finished runs (records.py)
ANALYSIS = "<!-- analysis: hand-written, kept when the tables above are regenerated -->"
PAPER = {"laser_table2": {"recall@10": 11.14, "ndcg@10": 7.22, "mrr": 6.50},  # Laser's RECFORMER row
         "recformer_own": {"recall@10": 14.48, "ndcg@10": 10.27, "mrr": 9.51}}  # RecFormer's Table 2 (spec §3)


def config(args) -> RecformerRunConfig:
    return RecformerRunConfig(
        dataset=str(args.data), encoder="minilm", max_tokens=256, batch_size=16, grad_accumulation=1,
        lr=args.lr, warmup_steps=100, precision="auto", schedule_epochs=args.stage1_epochs + args.stage2_epochs, eval_every=1,
        stage1_max_epochs=args.stage1_epochs, stage1_patience=2, stage2_max_epochs=args.stage2_epochs,
        stage2_patience=2, max_train_users=args.train_users, max_valid_users=args.valid_users, seed=0,
        num_threads=args.threads, progress=False, eval_batch_size=32, item_batch_size=128,
    )


def report(args) -> str:
    """The report from the run folder (synced into its committed record), else from the record; with neither,
    the previous report unchanged (or 'Not run yet.' where there is none)."""
    old = REPORT.read_text() if REPORT.exists() else ""
    record = RECORDS / args.run.name
    keep_record(args.run, record)
    found = source(args.run, record)
    lines = ["# RECFORMER on the real Scientific set (offline MiniLM-initialised Longformer)", "",
             "Written by `python benchmarks/bench_recformer_scientific.py` (see its docstring) from its run folder "
             "or the run's committed record (`benchmarks/records/recformer_scientific/`). Values x100.", ""]
    if found is None:
        print(f"{args.run}: no finished run and no record; the report is left as it is")
        return old or "\n".join(lines + ["Not run yet.", ""])
    r = json.loads((found / "metrics.json").read_text())
    why = stale_inputs(r, getattr(args, "data", None))
    if why:  # a result of other data than this machine's: never shown as a result
        return "\n".join(lines + [f"STALE: {'; '.join(why)}. Rerun it.", ""])
    if in_progress(args.run):
        lines += [f"A rerun is in progress in `{args.run.name}`: the results below are the previous run's until it "
                  "finishes.", ""]
    c = r["config"]
    lines += [f"Encoder `{c['encoder']}` (stand-in: a Longformer initialised from MiniLM-L6, not pre-trained), "
              f"{r['train_users']} seeded training users, {r['valid']['n']} validation users, {r['test']['n']} test "
              f"users, max {c['max_tokens']} tokens, lr {c['lr']}, batch {c['batch_size']}, wall "
              f"{r['wall_time_s'] / 60:.0f} min on {r['device']}.", "",
              "| row | R@10 | N@10 | MRR |", "|---|---:|---:|---:|",
              f"| ours (stage {r['best_stage']}, epoch {r['best_epoch']}) | {100 * r['test']['recall@10']:.2f} | "
              f"{100 * r['test']['ndcg@10']:.2f} | {100 * r['test']['mrr']:.2f} |"]
    for key, label in (("laser_table2", "Laser's Table 2 RECFORMER row"),
                       ("recformer_own", "RecFormer's own Table 2 (pre-trained Longformer-base)")):
        p = PAPER[key]
        lines.append(f"| {label} | {p['recall@10']:.2f} | {p['ndcg@10']:.2f} | {p['mrr']:.2f} |")
    lines += ["", "Validation curve (NDCG@10 x100):", "", "| stage | epoch | loss | valid N@10 |", "|---|---:|---:|---:|"]
    for h in r["history"]:
        v = h.get("valid", {}).get("ndcg@10")
        lines.append(f"| {h['stage']} | {h['epoch']} | {h['loss']:.3f} | {'—' if v is None else f'{100 * v:.2f}'} |")
    return "\n".join(lines) + "\n\n" + (old[old.index(ANALYSIS):] if ANALYSIS in old else ANALYSIS + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "out" / "data" / "scientific", help="prepared Scientific")
    ap.add_argument("--run", type=Path, default=HERE / "out" / "recformer_scientific" / "seed~0", help="run folder")
    ap.add_argument("--train-users", type=int, default=800, help="seeded training users")
    ap.add_argument("--valid-users", type=int, default=400, help="seeded validation users")
    ap.add_argument("--stage1-epochs", type=int, default=2)
    ap.add_argument("--stage2-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report_only:
        train_recformer(config(args), args.run)
    write_text(REPORT, report(args))
    print(REPORT.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
