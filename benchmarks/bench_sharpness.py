"""Issue 11 diagnostic: does the MiniLM M-Former train at Adam's edge of stability at lr 1e-3?

    python benchmarks/bench_sharpness.py --threads 2 [--steps 100] [--at 1 10 30 100] [--iters 12] [--rows 16]

Two M-Former runs a rounding error apart part within a few dozen steps at the budget's lr 1e-3, and one Adam step
moves its prefix by 8.5-20% of its norm (``benchmarks/divergence*.md``, ``benchmarks/prefix_anatomy*.md``); a
learnable prefix, or the M-Former at lr 1e-4, moves ~1% per step and parts slowly. One reading of "large steps make
the trajectory chaotic" is testable: on a quadratic, Adam with momentum beta1 and a frozen preconditioner is stable
only while the preconditioned sharpness lambda_max(P^-1 H) stays below (2 + 2 beta1) / ((1 - beta1) lr), 38 / lr for
beta1 = 0.9, with P = (1 - beta1^t) diag(sqrt(v_hat) + eps) (Cohen et al. 2022, "Adaptive gradient methods at the
edge of stability", arXiv:2207.14484). Above it the step overshoots along the top eigendirection and oscillates;
full-batch Adam drives the preconditioned sharpness up to the threshold and hovers there (the edge of stability),
where the path depends on small differences. This script measures that sharpness along a run's first steps:

- the MiniLM run configs of ``bench_laser_scientific.py`` (seed 0 or ``--seed``: the same initial weights, training
  users and epoch-0 batch order; each configuration's own untrained item refresh, as its run): the M-Former at lr
  1e-3 and 1e-4 and the learnable prefix at lr 1e-3;
- the run's own Adam steps (bf16 autocast, dropout, batch 8), and after the steps listed in ``--at``:
  lambda_max(P^-1/2 H P^-1/2) (the eigenvalues of P^-1 H) by ``--iters`` Lanczos steps started from the previous
  point's top vector, with H the Hessian of the training loss (Eq. 10, as trained) over the first ``--rows`` of the
  32 seeded training rows the other diagnostics probe, taken exactly (double backward) in fp32 and eval mode (no
  dropout); P from Adam's state after that step. A Hessian-vector product takes ~10 s on 16 rows (2 threads).

The report gives the largest and the smallest Ritz value (negative curvature does not oscillate; it is not bounded
by the threshold) and the largest one's residual; and, expert by expert, whether a near-zero second moment inflates
them (P^-1 H is large where P is tiny, for little curvature): the share of the top and the bottom Ritz vector on
weights whose P is under 1% of the median, and the expert whose queries hold most of each, with its queries' P.
Writes ``benchmarks/sharpness.md`` (~2 min per point with 12 Lanczos steps); ``--at 10 20 30 40 50 60 70 80 90 100
--iters 8 --out benchmarks/sharpness_dense.md`` samples every tenth step. ``--cases`` takes ``bench_divergence.py``'s
configurations (e.g. ``main-frozen-router-lr0.001``, or ``main-lr0.001 main-lr0.0003 main-lr0.0001``: does crossing
the threshold decide how fast two runs part?). Nothing here trains a result; one seed per report.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# the divergence cases' MiniLM configs, and their command-line options
from bench_divergence import (  # noqa: E402
    RUN_CASES, add_seed_option, case_config, cases_flag, option_flag, weight_group)
from bench_prefix_steps import probe_rows, run_start, runs_budget, steps_parser, train_step  # noqa: E402
from laser_repro.io import write_text  # noqa: E402
from laser_repro.runinfo import cpu_model  # noqa: E402

REPORT = HERE / "sharpness.md"
LOW_P = 0.01  # a "near-zero second moment": a preconditioner entry below 1% of the median entry
DEFAULT_CASES = ["no-mformer-lr0.001", "main-lr0.001", "main-lr0.0001"]  # keys of RUN_CASES


def threshold(lr: float, beta1: float) -> float:
    """Adam's stability threshold on a quadratic with a frozen preconditioner: (2 + 2 beta1) / ((1 - beta1) lr)."""
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


def adam_preconditioner(opt: torch.optim.Optimizer) -> torch.Tensor:
    """P = (1 - beta1^t) (sqrt(v / (1 - beta2^t)) + eps) of each parameter of ``opt`` after its t-th step, flattened
    in parameter order: Adam's update is lr m / P (m the raw first moment)."""
    out = []
    for group in opt.param_groups:
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            state = opt.state[p]
            t = float(state["step"])
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** t)
            out.append(((1 - beta1 ** t) * (v_hat.sqrt() + group["eps"])).flatten())
    return torch.cat(out)


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor,
            k: int) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor], float]:
    """``k`` Lanczos steps (full reorthogonalisation) on the symmetric operator ``matvec`` from ``v``: the Ritz values
    (ascending; the extreme ones converge first), the unit Ritz vectors of the smallest and the largest, and the
    largest pair's residual ||A y - theta y|| relative to |theta| (small: converged)."""
    basis = [v / v.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for _ in range(k):
        a = matvec(basis[-1])
        alphas.append(float(basis[-1] @ a))
        for _ in range(2):  # twice is enough (Kahan)
            for q in basis:
                a = a - (q @ a) * q
        betas.append(float(a.norm()))
        if len(alphas) == k or betas[-1] <= 1e-9 * max(abs(x) for x in alphas):
            break
        basis.append(a / betas[-1])
    t = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
    theta, s = np.linalg.eigh(t)
    low, top = (sum(float(s[i, j]) * q for i, q in enumerate(basis)) for j in (0, -1))
    return theta, (low / low.norm(), top / top.norm()), abs(betas[-1] * s[-1, -1]) / abs(theta[-1])


def hessian_matvec(model, params: list[torch.nn.Parameter], rows: tuple[list, np.ndarray],
                   table: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """v -> H v for the Hessian of the training loss on ``rows`` (histories, targets) over ``params`` (flattened),
    exact by double backward, in fp32 and eval mode; and that loss. Leaves the model in train mode with its
    precision as it was."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    autocast = model.backbone.autocast
    model.eval()
    model.backbone.autocast = False
    try:
        with sdpa_kernel(SDPBackend.MATH):  # CPU's fused attention has no double backward
            loss = model(rows[0], torch.as_tensor(rows[1]), table).loss
            grads = torch.autograd.grad(loss, params, create_graph=True)
    finally:
        model.backbone.autocast = autocast
        model.train()
    flat = torch.cat([g.flatten() for g in grads])

    def matvec(v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            hv = torch.autograd.grad(flat, params, grad_outputs=v, retain_graph=True)
        return torch.cat([h.flatten() for h in hv]).detach()

    return matvec, loss.item()


def named_slices(model, params: list[torch.nn.Parameter]) -> dict[str, slice]:
    """Each of ``params``' name in ``model`` and its slice of a vector over ``params``, flattened in their order."""
    names = {id(p): name for name, p in model.named_parameters()}
    out, offset = {}, 0
    for p in params:
        out[names[id(p)]] = slice(offset, offset + p.numel())
        offset += p.numel()
    return out


def top_groups(model, params: list[torch.nn.Parameter], y: torch.Tensor, n: int = 2) -> list[tuple[str, float]]:
    """The ``n`` weight groups (:func:`weight_group`) holding most of the unit vector ``y``'s squared mass (``y`` over
    ``params``, flattened), with their shares."""
    mass: dict[str, float] = {}
    for name, rows in named_slices(model, params).items():
        g = weight_group(name)
        mass[g] = mass.get(g, 0.0) + float(y[rows].square().sum())
    return sorted(mass.items(), key=lambda kv: -kv[1])[:n]


def low_p_share(p: torch.Tensor, y: torch.Tensor, frac: float = LOW_P) -> float:
    """The share of the unit vector ``y``'s squared mass on the weights whose preconditioner entry ``p`` is below
    ``frac`` of the median entry: weights with a near-zero second moment, where P^-1 H is large for little curvature."""
    return float(y[p < frac * p.median()].square().sum())


def leading_expert(model, params: list[torch.nn.Parameter], p: torch.Tensor,
                   y: torch.Tensor) -> tuple[int, float, float] | None:
    """Expert by expert (the M-Former's queries Q_k, Eq. 4): the expert whose queries hold most of the unit vector
    ``y``'s squared mass, that share, and its queries' median preconditioner entry over the median of all of ``p``
    (``y``, ``p`` over ``params``, flattened); None without an M-Former."""
    rows = named_slices(model, params).get("mformer.queries")
    if rows is None:
        return None
    n_experts = model.mformer.queries.shape[0]
    mass = y[rows].view(n_experts, -1).square().sum(1)
    k = int(mass.argmax())
    return k, float(mass[k]), float(p[rows].view(n_experts, -1)[k].median() / p.median())


def query_std(model) -> float | None:
    """The mean over the M-Former's query rows of each row's standard deviation: what the queries' LayerNorm divides
    by. The loss does not change when a row is scaled, so its curvature along the row scales as 1 / std^2 and one Adam
    step (about lr per weight) turns it by about lr / std (None without an M-Former)."""
    mformer = getattr(model, "mformer", None)
    if mformer is None:
        return None
    q = mformer.queries.detach().float()
    return float(q.view(-1, q.shape[-1]).std(dim=1, unbiased=False).mean())


def measure(case: str, args) -> dict:
    """The preconditioned sharpness after each step in ``args.at`` of ``case``'s run config (``RUN_CASES``)."""
    from laser_repro.laser import trainer

    label, variant, lr, overrides, frozen = RUN_CASES[case]
    cfg = case_config(variant, lr, args, overrides)
    ds, model, histories, targets, _probe, batches = run_start(cfg, frozen)
    opt, _ = trainer.make_optimizer(cfg, model, len(batches))
    table = model.embed_items(ds.n_items, cfg.item_batch_size)  # as train_laser's first refresh
    pick = probe_rows(len(histories))[: args.rows]  # the first of run_start's probe rows
    rows = ([histories[i] for i in pick], targets[pick])
    params = [p for g in opt.param_groups for p in g["params"]]
    beta1 = opt.param_groups[0]["betas"][0]
    w = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(0))
    points, losses = [], []
    t0 = time.perf_counter()
    for step, idx in enumerate(batches[: args.steps], start=1):
        losses.append(train_step(model, opt, cfg, histories, targets, idx, table))
        if step not in args.at:
            continue
        t1 = time.perf_counter()
        hv, loss = hessian_matvec(model, params, rows, table)
        pre = adam_preconditioner(opt)
        inv_sqrt = pre.rsqrt()
        theta, (low, w), resid = lanczos(lambda v: inv_sqrt * hv(inv_sqrt * v), w, args.iters)
        points.append({"step": step, "sharpness": float(theta[-1]), "lowest": float(theta[0]), "resid": resid,
                       "loss": loss, "vs_threshold": float(theta[-1]) / threshold(lr, beta1),
                       "groups": top_groups(model, params, w), "s": time.perf_counter() - t1,
                       "low_p": float((pre < LOW_P * pre.median()).float().mean()),
                       "low_p_top": low_p_share(pre, w), "low_p_low": low_p_share(pre, low),
                       "expert_top": leading_expert(model, params, pre, w),
                       "expert_low": leading_expert(model, params, pre, low), "query_std": query_std(model)})
        print(f"   step {step}: lambda_max(P^-1 H) {theta[-1]:.4g} = {points[-1]['vs_threshold']:.3f} x 38/lr "
              f"(residual {resid:.1%}), lambda_min {theta[0]:.4g}, loss {loss:.3f}, top vector in "
              + ", ".join(f"{g} {m:.0%}" for g, m in points[-1]["groups"])
              + f"; low-P share top {points[-1]['low_p_top']:.0%}, bottom {points[-1]['low_p_low']:.0%}; leading "
              f"expert top {expert_cell(points[-1]['expert_top'])}, bottom {expert_cell(points[-1]['expert_low'])}; "
              f"query row std {std_cell(points[-1]['query_std'])}", flush=True)
    return {"case": case, "name": label, "lr": lr, "beta1": beta1, "n_params": len(w), "points": points,
            "batch_loss": (losses[0], losses[-1]), "s": time.perf_counter() - t0}


def expert_cell(lead: tuple[int, float, float] | None) -> str:
    """``leading_expert``'s answer as ``e3 62%, P 0.004x`` (— without an M-Former)."""
    return "—" if lead is None else f"e{lead[0]} {lead[1]:.0%}, P {lead[2]:.2g}x"


def std_cell(std: float | None) -> str:
    return "—" if std is None else f"{std:.3g}"


def report(rows: list[dict], args) -> str:
    cases = cases_flag(getattr(args, "cases", DEFAULT_CASES), DEFAULT_CASES) + option_flag(args, "seed")
    seed = getattr(args, "seed", 0)
    lines = ["# Is the M-Former at Adam's edge of stability? (issue 11 diagnostic)", "",
             f"Written by `python benchmarks/bench_sharpness.py --threads {args.threads} --steps {args.steps} --at "
             f"{' '.join(map(str, args.at))} --iters {args.iters} --rows {args.rows}{cases}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}. The MiniLM run configs of "
             f"`bench_laser_scientific.py` (seed {seed}: initial weights, 1,000 training users, epoch 0's batch order, "
             "batch 8, Adam, each configuration's own untrained item refresh), trained as the runs. After the listed "
             "steps: the preconditioned sharpness lambda_max(P^-1 H), P = (1 - beta1^t) diag(sqrt(v_hat) + eps) "
             "from Adam's state, H the exact Hessian (double backward, fp32, eval mode) of the training loss over "
             f"{args.rows} seeded training rows, by {args.iters} Lanczos steps from the previous point's top vector; "
             "against Adam's threshold (2 + 2 beta1) / ((1 - beta1) lr) = 38 / lr (Cohen et al. 2022): above 1, "
             "Adam with that preconditioner frozen would overshoot along the top eigendirection. Residual = "
             "||A y - lambda y|| / |lambda| of the top Ritz pair (small: converged); lambda_min: the smallest Ritz "
             "value (negative curvature, not bounded by the threshold); top vector: the weight groups holding most "
             "of the top Ritz vector's squared mass (in P^1/2-scaled coordinates). Near-zero second moments: low-P "
             f"weights are those whose P is below {LOW_P:.0%} of the median P (their share of all trainable weights), "
             "low-P share the squared mass of the top and the bottom Ritz vector on them; leading expert: the expert "
             "k whose queries Q_k (Eq. 4) hold most of that vector's mass, that share, and the median P of its "
             "queries over the median P of all weights (well below 1: an expert whose queries get few gradients). "
             "Query row std: the mean over the query rows of each row's standard deviation, what their LayerNorm "
             "divides by (the loss is unchanged when a row is scaled, so the curvature along it goes as 1 / std^2).",
             "",
             "Summary, steps after the first (after one step Adam's second moment holds one gradient, so a weight "
             "whose first gradient was zero has P = eps and dominates):", "",
             "| prefix | lr | points | above 38 / lr | median / (38 / lr) | max / (38 / lr) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        later = [p["vs_threshold"] for p in r["points"] if p["step"] > 1]
        if later:
            lines.append(f"| {r['name']} | {r['lr']:g} | {len(later)} | {sum(x > 1 for x in later)} "
                         f"| {statistics.median(later):.3f} | {max(later):.3f} |")
    lines += ["", f"| prefix | lr | trainable weights | step | lambda_max(P^-1 H) | / (38 / lr) | residual "
              f"| lambda_min | top vector | low-P weights | low-P share, top / bottom | leading expert, top "
              f"| leading expert, bottom | query row std | loss on the {args.rows} rows | s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|---:|---:|"]
    for r in rows:
        for p in r["points"]:
            top = ", ".join(f"{g} {m:.0%}" for g, m in p["groups"])
            lines.append(f"| {r['name']} | {r['lr']:g} | {r['n_params']:,} | {p['step']} | {p['sharpness']:.4g} "
                         f"| {p['vs_threshold']:.3f} | {p['resid']:.1%} | {p['lowest']:.4g} | {top} | {p['low_p']:.2%} "
                         f"| {p['low_p_top']:.0%} / {p['low_p_low']:.0%} | {expert_cell(p['expert_top'])} "
                         f"| {expert_cell(p['expert_low'])} | {std_cell(p.get('query_std'))} | {p['loss']:.3f} "
                         f"| {p['s']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = steps_parser(__doc__, REPORT, 100)
    ap.add_argument("--at", type=int, nargs="+", default=[1, 10, 30, 100], help="steps after which to measure")
    ap.add_argument("--iters", type=int, default=12, help="Lanczos steps per point (Hessian-vector products)")
    ap.add_argument("--rows", type=int, default=16, choices=range(1, 33), metavar="1..32",
                    help="training rows of the Hessian (the first of the 32 probe rows)")
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(RUN_CASES),
                    help="configurations (bench_divergence.py's; default: the learnable prefix at lr 1e-3, the "
                         "M-Former at 1e-3 and 1e-4)")
    add_seed_option(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = runs_budget(args)
    budget.at, budget.iters, budget.rows, budget.seed = set(args.at), args.iters, args.rows, args.seed
    rows = []
    for case in args.cases:
        label, _, lr, _, _ = RUN_CASES[case]
        print(f"== minilm, {label}, lr {lr:g}", flush=True)
        rows.append(measure(case, budget))
    write_text(args.out, report(rows, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
