"""Issue 11 diagnostic: how far one optimiser step moves Laser's prefix, and the user vectors it yields.

    python benchmarks/bench_prefix_steps.py --threads 2 [--steps 12] [--backbones minilm smollm2]

Laser's M-Former prefix collapsed SmolLM2's ranking in its first epoch at the real-data budget's lr 1e-3, while a
learnable prefix (the same 32 vectors for every input) learned; on MiniLM the M-Former run learned at the same lr
(``benchmarks/laser_scientific.md``). Adam moves every weight by about lr per step whatever the gradient's scale,
so the two parametrisations move the prefix at very different speeds: a learnable prefix vector by about lr per
coordinate, an M-Former output by up to lr x d_m coordinates of its projection's input at once (by parameter group,
``bench_prefix_anatomy.py``: the projection makes a fifth of the MiniLM M-Former's move, the router's flips and the
composition of all groups' steps the rest). This script measures the move, and what the backbone makes of it, on the
real runs' setting:

- each backbone's runs' configs (``bench_laser_scientific.run_config``: the same model initialisation, seed 0, the
  same training users and their epoch-0 batch order), for the learnable prefix and the M-Former, at lr 1e-3 (the
  budget's) and 1e-4 (App. B's);
- the first ``--steps`` Adam steps of phase 1 against the item table of epoch 0. MiniLM: each configuration's own
  untrained refresh, the table its run trained against (a refresh takes seconds), so its steps are the run's.
  SmolLM2: one fixed table (the final table of a finished SmolLM2 run in ``--runs``: a refresh per configuration
  would take 12 min), so its moves approximate the runs';
- after each step, for 32 seeded training histories (eval mode: no dropout): the prefix's move relative to the
  step-0 prefix and its drift from step 0, the mean prefix-vector norm (against the backbone's token norm), the
  same move and drift of the unit user vectors h_u / ||h_u|| the backbone makes of it (Eq. 2; items are ranked by
  cosine), and how many of each history's top 10 items against the table are still its top 10 after the steps.

Writes ``benchmarks/prefix_steps.md``. Nothing here trains a result; one diagnostic, one seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_laser_scientific import parser as runs_parser, run_config  # noqa: E402  the real-data runs' configs
from laser_repro.io import write_text  # noqa: E402
from laser_repro.runinfo import cpu_model  # noqa: E402

REPORT = HERE / "prefix_steps.md"
CASES = {"minilm": (("learnable", "no-mformer"), ("M-Former", "main")),  # backbone -> (prefix, run variant)
         "smollm2": (("learnable", "smollm2-no-mformer"), ("M-Former", "smollm2"))}
LRS = (1e-3, 1e-4)
# the fixed table: preferably the run that learned (its items spread: mean cosine 0.81, against 0.94-0.99 for the rest)
TABLE_RUNS = ("smollm2-no-mformer", "smollm2-no-prefix", "smollm2-token-scale", "smollm2-constant-input")


def fixed_table(runs: Path) -> tuple[torch.Tensor, str]:
    """The item table of the first finished SmolLM2 run found in ``runs`` (its final checkpoint), and its name."""
    for name in TABLE_RUNS:
        ckpt = runs / name / "checkpoint.pt"
        if ckpt.exists():
            return torch.load(ckpt, map_location="cpu", weights_only=False)["table"].float(), name
    sys.exit(f"no finished SmolLM2 run with a checkpoint in {runs} (one of {', '.join(TABLE_RUNS)}); run "
             "bench_laser_scientific.py --variants smollm2-no-mformer first")


def top_k(h: torch.Tensor, table: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Each user's ``k`` highest-scoring items by cosine (Eqs. 2-3), as index rows [U, k]."""
    from laser_repro.laser.losses import cosine_scores

    return cosine_scores(h, table).topk(k, dim=-1).indices


def kept(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean fraction of each row of ``a`` (top-k item indices) that is in the same row of ``b``."""
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / a.shape[1] for x, y in zip(a, b)]))


class RunStart(NamedTuple):
    """A Laser run at its start, as ``train_laser`` makes it."""
    ds: Any
    model: Any
    histories: list
    targets: np.ndarray
    probe: list  # 32 seeded training histories
    batches: list[np.ndarray]  # phase 1, epoch 0


def probe_rows(n: int) -> np.ndarray:
    """The 32 seeded training rows (of ``n``) whose histories every diagnostic probes."""
    return np.random.default_rng(0).choice(n, 32, replace=False)


def run_start(cfg, frozen: tuple[str, ...] = ()) -> RunStart:
    """``cfg``'s data, its model after the run's seeding (its initial weights; the M-Former's ``frozen`` submodules
    left untrained), its training rows, 32 seeded probe histories and the batches phase 1's epoch 0 draws
    (``trainer.run_epoch``), in that order."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.laser import trainer
    from laser_repro.train.scaffold import seed_everything

    ds = load_dataset(cfg.dataset)
    seed_everything(cfg.seed)  # as train_laser: the run's initial weights
    model = trainer.build_model(cfg, ds, torch.device("cpu"))
    for name in frozen:  # before any optimiser is made: these weights stay at their initial values
        getattr(model.mformer, name).requires_grad_(False)
    histories, targets = trainer.training_rows(ds, trainer.training_users(ds, cfg), cfg.min_train_history)
    probe = [histories[i] for i in probe_rows(len(histories))]
    rng = np.random.default_rng([cfg.seed, 1, 0])  # phase 1, epoch 0: the order run_epoch draws
    lengths = np.array([len(t) for t in model.tokens(histories)])
    batches = trainer.batch_order(len(histories), cfg.optim.batch_size, cfg.optim.length_buckets, rng, lengths)
    return RunStart(ds, model, histories, targets, probe, batches)


def train_step(model, opt, cfg, histories: list, targets: np.ndarray, idx: np.ndarray, table: torch.Tensor) -> float:
    """One optimiser step on rows ``idx`` as ``trainer.run_epoch`` takes it in the runs' setting (no gradient
    accumulation); the batch loss."""
    out = model([histories[i] for i in idx], torch.as_tensor(targets[idx]), table)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    if cfg.optim.max_grad_norm > 0:  # as run_epoch (the runs: no clipping)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.optim.max_grad_norm)
    opt.step()
    return out.loss.item()


def probe_prefix(model, probe: list) -> torch.Tensor:
    """The prefix the ``probe`` histories get (eval mode: no dropout), as an fp32 copy (a learnable prefix is a view
    of the weights Adam updates)."""
    model.eval()
    with torch.no_grad():
        p, _ = model._prefix(probe, False)
    model.train()
    return p.detach().float().clone()


def measure(variant: str, lr: float, args, table: torch.Tensor | None) -> dict:
    """Prefix and user-vector moves over the first ``args.steps`` phase-1 steps of ``variant``'s run config at
    ``lr``, against ``table`` (None: the configuration's own untrained refresh, as its run's epoch 0)."""
    from laser_repro.laser import trainer

    cfg = run_config(variant, argparse.Namespace(**{**vars(args), "lr": lr}))
    ds, model, histories, targets, probe, batches = run_start(cfg)
    opt, _ = trainer.make_optimizer(cfg, model, len(batches))
    own = table is None
    if own:  # as train_laser's first refresh (phase 1, epoch 0), after the same initialisation
        table = model.embed_items(ds.n_items, cfg.item_batch_size)

    def probe_state() -> tuple[torch.Tensor, torch.Tensor]:
        return probe_prefix(model, probe), F.normalize(model.embed_users(probe, 0).float(), dim=-1)  # ranked by cosine

    p0, h0 = last_p, last_h = probe_state()
    moves, user_moves, losses = [], [], []
    t0 = time.perf_counter()
    for idx in batches[: args.steps]:
        losses.append(train_step(model, opt, cfg, histories, targets, idx, table))
        p, h = probe_state()
        moves.append(float((p - last_p).norm() / p0.norm()))
        user_moves.append(float((h - last_h).norm() / h0.norm()))
        last_p, last_h = p, h
    return {"variant": variant, "backbone": cfg.backbone, "lr": lr, "steps": len(moves), "own_table": own,
            "move_median": statistics.median(moves), "move_first": moves[0],
            "drift": float((last_p - p0).norm() / p0.norm()),
            "p0_norm": float(p0.norm()), "norm0": float(p0.norm(dim=-1).mean()), "norm": float(last_p.norm(dim=-1).mean()),
            "token_norm": model.backbone.embedding_norm,
            "user_move_median": statistics.median(user_moves), "user_drift": float((last_h - h0).norm() / h0.norm()),
            "top10_kept": kept(top_k(h0, table), top_k(last_h, table)),
            "loss_first": losses[0], "loss_last": losses[-1], "s_per_step": (time.perf_counter() - t0) / len(moves)}


def report(rows: list[dict], table_from: str | None, args) -> str:
    names = {v: k for cases in CASES.values() for k, v in cases}
    fixed = (f"SmolLM2: one fixed item table (the final table of the `{table_from}` run): a refresh per configuration "
             "would take 12 min. Adam's first step moves every weight by lr, so the learnable prefix's step 1 does not "
             "depend on the table; every other SmolLM2 move depends on the gradients, which differ from the runs' "
             "(their table is each one's untrained refresh): they approximate the runs'. ") if table_from else ""
    lines = ["# How far one step moves Laser's prefix, and the user vectors (issue 11 diagnostic)", "",
             f"Written by `python benchmarks/bench_prefix_steps.py --threads {args.threads} --steps {args.steps} "
             f"--backbones {' '.join(args.backbones)}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{cpu_model()}. Each backbone's runs' configs of `bench_laser_scientific.py` (seed 0: the same initial "
             "weights and training users, epoch 0's batch order, batch 8, Adam; MiniLM 1,000 training users, "
             "SmolLM2 333). MiniLM: each configuration's own untrained item refresh, the table its run's epoch 0 "
             f"trained against, so its steps are the run's first steps. {fixed}"
             "After each step, for 32 seeded training histories (eval mode): prefix move = ||P_t - P_t-1|| / ||P_0||; "
             "drift = ||P_n - P_0|| / ||P_0||; norms are mean prefix-vector L2 norms; vocabulary norm = the backbone's "
             "mean input-embedding row norm; the user-vector move and drift are the same ratios of the unit vectors "
             "h_u / ||h_u|| (Eq. 2; ranking is by cosine, so a change of norm does not count); top-10 kept = the "
             "mean share of each history's top 10 items (cosine against the table) still in its top 10 after the "
             "steps.", "",
             "| backbone | prefix | lr | steps | prefix move per step (median) | move at step 1 | prefix drift "
             "| prefix norm step 0 -> end | vocabulary norm | h_u move per step (median) | h_u drift | top-10 kept "
             "| batch loss first -> last |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {names[r['variant']]} | {r['lr']:g} | {r['steps']} | {r['move_median']:.4f} "
                     f"| {r['move_first']:.4f} | {r['drift']:.3f} | {r['norm0']:.2f} -> {r['norm']:.2f} "
                     f"| {r['token_norm']:.2f} | {r['user_move_median']:.4f} | {r['user_drift']:.3f} "
                     f"| {r['top10_kept']:.2f} | {r['loss_first']:.3f} -> {r['loss_last']:.3f} |")
    return "\n".join(lines) + "\n"


def steps_parser(doc: str, report_path: Path, steps: int) -> argparse.ArgumentParser:
    """Options of a script that steps the real-data runs' configs: where their inputs are, steps, threads, report."""
    runs = runs_parser().parse_args([])  # the runs' budget: bench_laser_scientific.py's defaults
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=runs.data, help="prepared Scientific")
    ap.add_argument("--idrec-run", type=Path, default=runs.idrec_run, help="trained BERT4Rec run folder (seed 0)")
    ap.add_argument("--cache", type=Path, default=runs.cache, help="backbone cache (smollm2 weights)")
    ap.add_argument("--steps", type=int, default=steps, help="phase-1 steps measured per configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=report_path)
    return ap


def runs_budget(args) -> argparse.Namespace:
    """The runs' budget (bench_laser_scientific.py's defaults) with this script's input paths, threads and steps."""
    return argparse.Namespace(**{**vars(runs_parser().parse_args([])), "data": args.data, "idrec_run": args.idrec_run,
                                 "cache": args.cache, "threads": args.threads, "steps": args.steps})


def main(argv: list[str] | None = None) -> int:
    ap = steps_parser(__doc__, REPORT, 12)
    ap.add_argument("--runs", type=Path, default=runs_parser().parse_args([]).runs,
                    help="bench_laser_scientific.py's run folders (SmolLM2's fixed item table is read from one)")
    ap.add_argument("--backbones", nargs="+", default=list(CASES), choices=list(CASES), help="backbones measured")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    table, table_from = fixed_table(args.runs) if "smollm2" in args.backbones else (None, None)
    budget = runs_budget(args)
    rows = []
    for backbone in args.backbones:
        for name, variant in CASES[backbone]:
            for lr in LRS:
                print(f"== {backbone}, {name}, lr {lr:g}", flush=True)
                rows.append(measure(variant, lr, budget, table if backbone == "smollm2" else None))
                r = rows[-1]
                print(f"   prefix move/step {r['move_median']:.4f}, drift {r['drift']:.3f}; h_u move/step "
                      f"{r['user_move_median']:.4f}, drift {r['user_drift']:.3f}, top-10 kept {r['top10_kept']:.2f}",
                      flush=True)
    write_text(args.out, report(rows, table_from, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
