"""Benchmark: Table 2's LLM-based baselines (and LlamaRec's retriever) on the real Scientific set.

    python benchmarks/bench_llm_baselines_scientific.py --threads 1 --steps lrurec kar
    python benchmarks/bench_llm_baselines_scientific.py --threads 1 --steps llamarec llm4rec
    python benchmarks/bench_llm_baselines_scientific.py --report-only

Steps (each resumes when re-run; runs go to ``--runs``):

- ``lrurec``: LRURec (LlamaRec's retriever), the registry's settings, one run per seed, all test users.
- ``kar``: KAR with deterministic template knowledge (a labelled stand-in for ChatGLM2-6B's texts,
  written once by ``laser-repro kar-knowledge --generator template``) encoded by MiniLM-L6 (mean
  pooling; a stand-in for the paper's encoder LLM), fused into SASRec by the hybrid-expert adaptor.
- ``llamarec``: the LoRA-tuned ranker on SmolLM2-135M (a real pretrained Llama-family decoder, a
  stand-in for Llama2-7B) over the seed-0 LRURec run's top 20, trained on a seeded cap of rows and
  validated/tested on seeded user caps (all recorded in its metrics.json).
- ``llm4rec``: LLM4REC on SmolLM2-135M with user/item tokens and the graph bias: one content epoch over
  every item, then seeded caps (on 2 cores a SmolLM2 step of 32 rows takes ~10 s): 1,000 training
  users, 1 collaborative epoch, 1 fine-tuning epoch of 960 rows, 300 validation and 2,000 test users.

The report (``benchmarks/llm_baselines_scientific.md``) puts every finished run next to the paper's
Table 2 cells (x100; from ``reported.yaml``). Finished runs are also kept as committed records
(``benchmarks/records/llm_baselines/``, see records.py), read where the run folder is absent; the report is
not rewritten where it would lose a method's numbers (``--allow-gaps`` overrides). Nothing here is tuned
towards a paper number.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
from pathlib import Path

from records import finished, sync, unpoolable, write_report

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "amazon-scientific-recformer"
REPORT = HERE / "llm_baselines_scientific.md"
RECORDS = HERE / "records" / "llm_baselines"  # committed records of finished runs (records.py)
METRICS = ("recall@10", "ndcg@10", "mrr")
ID_STEPS = ("lrurec", "kar")
STEPS = ID_STEPS + ("llamarec", "llm4rec")
PAPER_ROW = {"kar": "kar", "llamarec": "llamarec", "llm4rec": "llm4rec"}  # lrurec is not in Table 2
ANALYSIS = "<!-- analysis: hand-written, kept when the tables above are regenerated -->"


def prepare(data: Path) -> Path:
    if not (data / "stats.json").exists():
        if not SHARED.exists():
            sys.exit(f"{SHARED}: real Scientific data not found (expected ../shared/data next to the repo)")
        subprocess.run(["laser-repro", "data", "prepare", "--source", "recformer", "--input", str(SHARED),
                        "--name", "scientific", "--out", str(data)], check=True)
    return data


def knowledge_file(args) -> Path:
    out = args.runs / "knowledge" / "template.json"
    if not out.exists():
        subprocess.run(["laser-repro", "kar-knowledge", "--data", str(args.data), "--generator", "template",
                        "--out", str(out)], check=True)
    return out


def train_id(step: str, args) -> None:
    from laser_repro.config import from_dict
    from laser_repro.experiment.registry import METHODS
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec

    extra = {}
    if step == "kar":
        extra = {"knowledge_file": str(knowledge_file(args)), "knowledge_generator": "template",
                 "text_encoder": "minilm", "feature_cache": str(args.runs / "features")}  # one encoding for all seeds
    for seed in args.seeds:
        over = {**METHODS[step].base_config(), **extra, "dataset": str(args.data), "seed": seed,
                "num_threads": args.threads, "progress": False}
        train_idrec(from_dict(IDRecRunConfig, over), args.runs / step / f"seed~{seed}")


def train_llamarec(args) -> None:
    from laser_repro.llamarec.config import LlamaRecRunConfig
    from laser_repro.llamarec.trainer import train_llamarec

    retriever = args.runs / "lrurec" / "seed~0"
    if not (retriever / "metrics.json").exists():
        sys.exit(f"{retriever}: the seed-0 LRURec run is not finished; run --steps lrurec first")
    cfg = LlamaRecRunConfig(
        dataset=str(args.data), retriever_run=str(retriever), backbone="smollm2", cache_dir=str(args.cache),
        max_train_rows=args.llamarec_train_rows, max_valid_users=args.llamarec_valid_users,
        max_eval_users=args.llamarec_test_users, warmup_steps=min(100, args.llamarec_train_rows // 24),
        seed=0, num_threads=args.threads, progress=False)
    train_llamarec(cfg, args.runs / "llamarec" / "seed~0")


def train_llm4rec(args) -> None:
    from laser_repro.llm4rec.config import LLM4RecRunConfig
    from laser_repro.llm4rec.trainer import train_llm4rec

    cfg = LLM4RecRunConfig(
        dataset=str(args.data), backbone="smollm2", cache_dir=str(args.cache),
        max_train_users=args.llm4rec_train_users, max_train_rows=args.llm4rec_train_rows,
        max_valid_users=args.llm4rec_valid_users, max_eval_users=args.llm4rec_test_users,
        content_epochs=1, content_batch_size=32,  # one content epoch (official: 3 at batch 4; CPU budget)
        collab_epochs=args.llm4rec_collab_epochs, finetune_max_epochs=args.llm4rec_epochs,
        seed=0, num_threads=args.threads, progress=False)
    train_llm4rec(cfg, args.runs / "llm4rec" / "seed~0")


def fmt(values: list[float]) -> str:
    if not values:
        return "not run"
    mean = statistics.mean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def paper_cells() -> dict[str, dict[str, str]]:
    from laser_repro.paper.reported import load_reported

    rep = load_reported()
    return {step: {k: rep.table2(row, "scientific", k).text for k in METRICS} for step, row in PAPER_ROW.items()}


def caps(rec: dict) -> str:
    c = rec["config"]
    keys = ("max_train_users", "max_train_rows", "max_valid_users", "max_eval_users")
    parts = [f"{k} {c[k]}" for k in keys if c.get(k) is not None]
    return ", ".join(parts) or "none"


def popularity(ds, seed: int, cap: int | None) -> dict[str, float]:
    """Test metrics of ranking every item by its training count (ties pessimistic) on the test users a run of this
    seed and test cap evaluates: the floor a learned row has to clear to have learned more than popularity."""
    import torch

    from laser_repro.data.splits import eval_user_subset
    from laser_repro.eval.evaluator import evaluate

    counts = torch.as_tensor(ds.train_item_counts(), dtype=torch.float32)
    users = eval_user_subset(ds, "test", seed, cap)
    return evaluate(lambda pos: counts.expand(len(pos), -1), users, ds.targets("test", users)).metrics


def popularity_floor(args, runs: dict[str, list[dict]]) -> list[str]:
    """A table of :func:`popularity` on each distinct test-user set of the finished runs."""
    sets: dict[tuple[int, int | None], list[str]] = {}
    for step, recs in runs.items():
        for r in recs:
            cap = r["config"].get("max_eval_users")
            key = (r["seed"] if cap is not None else 0, cap)  # uncapped: every test user, whatever the seed
            sets.setdefault(key, []).append(f"{step} seed {r['seed']}")
    if not sets or not (args.data / "stats.json").exists():
        return []
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(args.data)
    out = ["", "Popularity on the same test users (every item ranked by its training count, ties pessimistic; x100):"
           " a row at this level has learned no more than popularity.", "",
           "| test users | runs | Recall@10 | NDCG@10 | MRR |", "|---|---|---|---|---|"]
    for (seed, cap), names in sorted(sets.items(), key=lambda kv: (kv[0][1] is not None, kv[0])):
        m = popularity(ds, seed, cap)
        who = "all" if cap is None else f"{cap} seeded (seed {seed})"
        out.append(f"| {who} | {', '.join(names)} | " + " | ".join(f"{100 * m[k]:.2f}" for k in METRICS) + " |")
    return out


def report(args) -> str:
    paper = paper_cells()
    head = ["# LLM-based baselines (and LlamaRec's retriever) on Scientific vs the paper's Table 2", "",
            "Generated by `python benchmarks/bench_llm_baselines_scientific.py` (train) and `--report-only` (this file).",
            "Full ranking over all 5,327 items, history not masked, ties pessimistic; values x100, mean ± std over",
            "seeds. Stand-ins (never the paper's backbones, which cannot run here): KAR's knowledge is the",
            "deterministic template text, encoded by MiniLM-L6; LlamaRec's ranker and LLM4REC run on SmolLM2-135M.",
            "The paper's cells use ChatGLM2-6B (KAR), Llama2-7B (LlamaRec) and GPT2-Large (LLM4REC); a gap to them",
            "says nothing about those systems at paper scale.", "",
            "| Method | backbone / encoder (stand-in) | seeds | test users | Recall@10 | NDCG@10 | MRR | paper R@10 / N@10 / MRR |",
            "|---|---|---|---|---|---|---|---|"]
    timing = ["", "| Method | seed | epochs run | best epoch | train time (s) | wall (s) | caps (seeded) | threads |",
              "|---|---|---|---|---|---|---|---|"]
    history: list[str] = []
    found: dict[str, list[dict]] = {}
    for step in STEPS:
        sync(args.runs / step, RECORDS / step)
        recs = [json.loads((f / "metrics.json").read_text()) for f in finished(args.runs / step, RECORDS / step)]
        found[step] = recs
        unfit = unpoolable(recs, args.data)
        if unfit:  # never a mean over seeds of other settings or of other data
            head.append(f"| {step} | {unfit} | | | | | | |")
            continue
        vals = {k: [100 * r["test"][k] for r in recs] for k in METRICS}
        who = {"lrurec": "— (ID model)", "kar": "template knowledge, MiniLM-L6 encoder",
               "llamarec": "SmolLM2-135M + LoRA", "llm4rec": "SmolLM2-135M"}[step]
        n = ", ".join(str(r["test"].get("n", "?")) for r in recs) or "—"
        ref = " / ".join(paper[step][k] for k in METRICS) if step in paper else "not in Table 2"
        head.append(f"| {step} | {who} | {len(recs)} | {n} | " + " | ".join(fmt(vals[k]) for k in METRICS)
                    + f" | {ref} |")
        for r in recs:
            train_s = f"{r['train_time_s']:.0f}" if "train_time_s" in r else "—"
            timing.append(f"| {step} | {r['seed']} | {r.get('epochs_run', '—')} | {r.get('best_epoch', '—')} | "
                          f"{train_s} | {r.get('wall_time_s', 0):.0f} | {caps(r)} | "
                          f"{r['config'].get('num_threads', '—')} |")
            if step in ("llamarec", "llm4rec"):
                stages = []
                for h in r.get("history", []):
                    v = h.get("valid", {}).get("ndcg@10")
                    stages.append(f"{h.get('stage', 'train')} {h['epoch']}: loss {h['loss']:.3f}"
                                  + (f", valid NDCG@10 {100 * v:.2f}" if v is not None else ""))
                history.append(f"- {step}, seed {r['seed']}: " + "; ".join(stages))
    extra = popularity_floor(args, found)
    extra += ["", "Training history of the LLM runs (x100):", "", *history] if history else []
    for f in finished(args.runs / "llamarec", RECORDS / "llamarec"):
        r = json.loads((f / "metrics.json").read_text())
        t, x = r["test"], r.get("test_extra", {})
        retr = x.get("retriever", {})
        extra += ["", f"LlamaRec, seed {r['seed']}, on its {t['n']} seeded test users (x100):", "",
                  "| scoring | Recall@10 | NDCG@10 | MRR |", "|---|---|---|---|",
                  "| composite (LLM over the retriever's top 20, the suite's evaluator) | "
                  + " | ".join(f"{100 * t[k]:.2f}" for k in METRICS) + " |",
                  "| the LRURec retriever alone, same users | " + " | ".join(
                      f"{100 * retr[k]:.2f}" if k in retr else "—" for k in METRICS) + " |", "",
                  f"Target among the retriever's top 20 for {100 * x.get('retrieved_share', float('nan')):.1f}% of "
                  f"these users ({x.get('llm_users', '—')} LLM prompts); LlamaRec's own formula (its metric "
                  f"over the retrieved users and the rest): `{json.dumps(x.get('llamarec_overall'))}`."]
    text = "\n".join(head + timing + extra) + "\n"
    old = args.report.read_text() if args.report.exists() else ""
    if ANALYSIS in old:
        text += "\n" + old[old.index(ANALYSIS):]
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE / "out" / "data" / "scientific", help="prepared Scientific (made if missing)")
    p.add_argument("--runs", type=Path, default=HERE / "out" / "llm_baselines", help="run folders")
    p.add_argument("--cache", type=Path, default=HERE / "out" / "cache", help="backbone cache (smollm2 weights)")
    p.add_argument("--report", type=Path, default=REPORT, help="markdown report to write")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(ID_STEPS), help="what to train, in order")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of the lrurec and kar steps")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--llamarec-train-rows", type=int, default=240, help="seeded cap on LlamaRec's training rows")
    p.add_argument("--llamarec-valid-users", type=int, default=300, help="seeded validation users (LlamaRec)")
    p.add_argument("--llamarec-test-users", type=int, default=2000, help="seeded test users (LlamaRec)")
    p.add_argument("--llm4rec-train-users", type=int, default=1000, help="seeded training users (LLM4REC)")
    p.add_argument("--llm4rec-train-rows", type=int, default=960, help="seeded fine-tuning rows (LLM4REC)")
    p.add_argument("--llm4rec-valid-users", type=int, default=300, help="seeded validation users (LLM4REC)")
    p.add_argument("--llm4rec-test-users", type=int, default=2000, help="seeded test users (LLM4REC)")
    p.add_argument("--llm4rec-collab-epochs", type=int, default=1, help="LLM4REC collaborative pre-training epochs")
    p.add_argument("--llm4rec-epochs", type=int, default=1, help="LLM4REC fine-tuning epochs (cap)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from finished runs")
    p.add_argument("--allow-gaps", action="store_true",
                   help="write the report even where it would replace a method's numbers with 'not run'")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.report_only:
        prepare(args.data)
        for step in args.steps:
            if step in ID_STEPS:
                train_id(step, args)
            elif step == "llamarec":
                train_llamarec(args)
            else:
                train_llm4rec(args)
    if write_report(args.report, report(args), list(STEPS), args.allow_gaps,
                    f"neither a run folder under {args.runs} nor a record under {RECORDS}", strict=args.report_only):
        print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
