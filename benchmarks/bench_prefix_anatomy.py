"""Issue 11 diagnostic: which of the M-Former's weights move its prefix, and why one Adam step moves it so far.

    python benchmarks/bench_prefix_anatomy.py --threads 2 [--steps 12] [--top-k 8 | --frozen router] [--out ...]

At the real-data budget's lr 1e-3 one Adam step moves the MiniLM M-Former's prefix by ~20% of its norm, a learnable
prefix by ~1% (``benchmarks/prefix_steps.md``), and two M-Former runs a rounding error apart part within a few dozen
steps (``benchmarks/divergence.md``). Adam moves each weight by about lr whatever its gradient's scale: a learnable
prefix coordinate by lr, but an output of a linear layer P = W x + b by sum_j dW_ij x_j, up to lr ||x||_1, d_in
inputs at once (the fan-in argument behind muP's 1/fan_in Adam learning rates for hidden and output weights). This
script splits the M-Former's prefix move by parameter group, on the real runs' setting:

- the MiniLM M-Former run config of ``bench_laser_scientific.py`` (seed 0: its initial weights, training users and
  epoch-0 batch order; each lr's own untrained item refresh), at lr 1e-3 (the budget's) and 1e-4 (App. B's);
- its first ``--steps`` Adam steps of phase 1; after each, for 32 seeded training histories (eval mode): the prefix
  move of the whole step, ||P_t - P_t-1|| / ||P_0||, and the move when only one group takes its step (the rest kept
  at their values before it);
- for the output projection (P = W_o x + b, exactly linear in W_o): the coherence of its weight step,
  ||dW_o X|| / || |dW_o| |X| || over the probe's query positions X (1: every input adds in phase, so the prefix
  moves lr ||x||_1 per coordinate; about 1/sqrt(d_m) for random signs), and the step's size against a learnable
  prefix's: ||dW_o X|| / (lr sqrt(numel P)), where lr sqrt(numel P) is how far a learnable prefix moves when every
  coordinate steps by lr;
- the routing (Eq. 4): the share of the histories whose selected experts a step changes, how near the top-k choice
  is to a tie before the first step (the gap between the k-th and the next expert's weight), and the selected
  weights' sum, which scales the prefix (raw aggregation).

``--top-k`` changes the M-Former's top k (Eq. 4; the runs: 3 of K = 8): with ``--top-k 8`` every expert is selected,
so the router can only reweight them (``benchmarks/prefix_anatomy_all_experts.md``); ``--frozen router`` keeps the
router at its initial weights, so every history keeps its experts (``benchmarks/prefix_anatomy_frozen_router.md``;
``bench_divergence.py`` has the same case).

Writes ``benchmarks/prefix_anatomy.md``. Nothing here trains a result; one diagnostic, one seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_laser_scientific import run_config  # noqa: E402  the real-data runs' configs
from bench_prefix_steps import LRS, probe_prefix, run_start, runs_budget, steps_parser, train_step  # noqa: E402
from laser_repro.io import write_text  # noqa: E402
from laser_repro.runinfo import cpu_model  # noqa: E402

REPORT = HERE / "prefix_anatomy.md"
VARIANT = "main"  # the MiniLM M-Former run


def group_of(name: str) -> str:
    """A trainable M-Former parameter's group: its module (a block's sublayer), the output projection's weight and
    bias apart (``blocks.0.cross_attn.q.weight`` -> ``blocks.0.cross_attn``; ``out_proj.bias`` stays)."""
    if name.startswith("out_proj."):
        return name
    m = re.match(r"(blocks\.\d+\.[a-z_]+)\.", name)
    return m.group(1) if m else name.split(".")[0]


def groups(mformer: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The M-Former's trainable parameters by :func:`group_of`, in module order."""
    out: dict[str, list[torch.nn.Parameter]] = {}
    for name, p in mformer.named_parameters():
        if p.requires_grad:
            out.setdefault(group_of(name), []).append(p)
    return out


def coherence(dw: torch.Tensor, x: torch.Tensor) -> float:
    """||dW x|| / || |dW| |x| || over the rows of ``x`` [n, d_in] (``dw`` [d_out, d_in]): 1 when every input adds in
    phase in every output, about 1/sqrt(d_in) for independent random signs."""
    return float((x @ dw.T).norm() / (x.abs() @ dw.abs().T).norm())


@torch.no_grad()
def load(parts: dict[str, list[torch.nn.Parameter]], values: dict[str, list[torch.Tensor]]) -> None:
    """Set each group's parameters to ``values`` (in place: the optimiser keeps its state)."""
    for g, ps in parts.items():
        for p, v in zip(ps, values[g]):
            p.copy_(v)


def norm(ps: list[torch.Tensor], minus: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The L2 norm of a group's tensors taken together (of their difference from ``minus``)."""
    return torch.cat([(p - m if minus is not None else p).flatten() for p, m in zip(ps, minus or ps)]).norm()


def measure(lr: float, args, top_k: int | None = None, frozen: tuple[str, ...] = ()) -> dict:
    """Per-group prefix moves over the first ``args.steps`` phase-1 steps of the M-Former run config at ``lr`` (with
    ``top_k`` experts selected, if given; its ``frozen`` submodules left at their initial weights)."""
    from laser_repro.laser import trainer

    cfg = run_config(VARIANT, argparse.Namespace(**{**vars(args), "lr": lr}))
    if top_k is not None:
        cfg = dataclasses.replace(cfg, mformer=dataclasses.replace(cfg.mformer, top_k=top_k))
    ds, model, histories, targets, probe, batches = run_start(cfg, frozen)
    opt, _ = trainer.make_optimizer(cfg, model, len(batches))
    table = model.embed_items(ds.n_items, cfg.item_batch_size)  # as train_laser's first refresh
    parts = groups(model.mformer)
    proj_in: list[torch.Tensor] = []
    routed: list[tuple[torch.Tensor, torch.Tensor]] = []  # the probe's selected experts (sorted) and Eq. 4's w
    hooks = [model.mformer.out_proj.register_forward_hook(lambda _m, i, _o: proj_in.append(i[0].detach().float())),
             model.mformer.register_forward_hook(
                 lambda _m, _i, o: routed.append((o.experts.sort(dim=-1).values, o.weights.detach().float())))]

    def prefix() -> torch.Tensor:  # the probe's prefix, its projection inputs and routing caught afresh
        proj_in.clear()
        routed.clear()
        return probe_prefix(model, probe)

    p0 = prefix()
    w0 = routed[0][1].sort(dim=-1, descending=True).values  # [32, K]
    k = cfg.mformer.top_k
    # how near Eq. 4's top-k choice is to a tie: the gap between the k-th and the next expert's weight
    gap = float((w0[:, k - 1] - w0[:, k]).median()) if k < w0.shape[1] else None
    kept_w = [float(w0[:, :k].sum(-1).mean())]  # the selected weights' sum (raw aggregation scales the prefix)
    flips: list[float] = []
    moves: dict[str, list[float]] = {g: [] for g in ("step", *parts)}
    sizes: dict[str, list[float]] = {g: [] for g in parts}  # each group's own relative step ||dW|| / ||W||
    coh, ratio = [], []
    t0 = time.perf_counter()
    for idx in batches[: args.steps]:
        before = prefix()
        chosen = routed[0][0]
        x = proj_in[0].flatten(0, -2)  # the output projection's inputs over the probe's query positions
        old = {g: [p.detach().clone() for p in ps] for g, ps in parts.items()}
        train_step(model, opt, cfg, histories, targets, idx, table)
        moves["step"].append(float((prefix() - before).norm() / p0.norm()))
        flips.append(float((routed[0][0] != chosen).any(dim=-1).float().mean()))  # histories whose experts changed
        kept_w.append(float(routed[0][1].topk(k, dim=-1).values.sum(-1).mean()))
        new = {g: [p.detach().clone() for p in ps] for g, ps in parts.items()}
        dw = new["out_proj.weight"][0] - old["out_proj.weight"][0]
        coh.append(coherence(dw, x))
        ratio.append(float((x @ dw.T).norm() / (lr * before.numel() ** 0.5)))
        for g in parts:  # only g takes its step
            sizes[g].append(float(norm(new[g], old[g]) / norm(old[g])))
            load(parts, {**old, g: new[g]})
            moves[g].append(float((prefix() - before).norm() / p0.norm()))
        load(parts, new)  # back to the step's result
    for hook in hooks:
        hook.remove()
    return {"lr": lr, "top_k": k, "n_experts": cfg.mformer.n_experts, "steps": len(moves["step"]),
            "p0_norm": float(p0.norm()), "p_numel": p0.numel(),
            "median": {g: statistics.median(v) for g, v in moves.items()}, "first": {g: v[0] for g, v in moves.items()},
            "size": {g: statistics.median(v) for g, v in sizes.items()},
            "flips": statistics.median(flips), "flips_first": flips[0], "gap": gap, "w_k": float(w0[:, k - 1].median()),
            "kept_w": (kept_w[0], kept_w[-1]), "coherence": statistics.median(coh), "coherence_first": coh[0],
            "vs_learnable": statistics.median(ratio), "vs_learnable_first": ratio[0],
            "d_in": int(model.mformer.out_proj.in_features), "s_per_step": (time.perf_counter() - t0) / len(coh)}


def report(rows: list[dict], args) -> str:
    names = list(rows[0]["median"]) if rows else []
    head = " | ".join(f"lr {r['lr']:g}: prefix move median / step 1 | weight step" for r in rows)
    lines = ["# Which M-Former weights move its prefix (issue 11 diagnostic)", "",
             f"Written by `python benchmarks/bench_prefix_anatomy.py --threads {args.threads} --steps {args.steps}"
             + (f" --top-k {args.top_k}" if getattr(args, "top_k", None) else "")
             + "".join(f" --frozen {m}" for m in getattr(args, "frozen", []))
             + f"` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}. The MiniLM M-Former run "
             "config of `bench_laser_scientific.py` (seed 0: its initial weights, 1,000 training users, epoch 0's "
             "batch order, batch 8, Adam, its own untrained item refresh) at each lr, its first steps"
             + (f", top {rows[0]['top_k']} of {rows[0]['n_experts']} experts selected (Eq. 4)" if rows else "")
             + "".join(f", its {m} kept at its initial weights (not trained)" for m in getattr(args, "frozen", []))
             + ". Prefix move = "
             "||P_t - P_t-1|| / ||P_0|| over 32 seeded training histories (eval mode); a group's row: the move when "
             "only that group takes its step, the others kept where they were (the moves need not add up: the "
             "M-Former is not linear in most of its weights). `step` is the whole step. Weight step: the group's own "
             "median relative step ||W_t - W_t-1|| / ||W_t-1||.", "",
             f"| group | {head} |", "|---|" + "---:|" * 2 * len(rows)]
    for g in names:
        lines.append(f"| {g} | " + " | ".join(f"{r['median'][g]:.4f} / {r['first'][g]:.4f} | "
                                              + (f"{r['size'][g]:.4f}" if g in r["size"] else "—") for r in rows) + " |")
    lines += ["", "The output projection's weight step, dW_o, on its inputs X (the 32 histories' pooled query "
              f"vectors, d_in = {rows[0]['d_in'] if rows else '?'}): coherence = ||dW_o X|| / || |dW_o| |X| || (1: all "
              "inputs add in phase; about 1/sqrt(d_in) for random signs); against a learnable prefix = ||dW_o X|| / "
              "(lr sqrt(numel P)), its move over that of a prefix whose every coordinate steps by lr (Adam's step, "
              "as for the learnable prefix).", "",
              "| lr | steps | coherence median / step 1 | against a learnable prefix median / step 1 | s per step |",
              "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['lr']:g} | {r['steps']} | {r['coherence']:.2f} / {r['coherence_first']:.2f} | "
                     f"{r['vs_learnable']:.1f} / {r['vs_learnable_first']:.1f} | {r['s_per_step']:.2f} |")
    lines += ["", "The routing (Eq. 4) of the 32 histories: experts changed = the share of histories whose selected "
              "experts a step changes; the top-k gap = the median gap between the k-th and the next expert's weight w "
              "before the first step, next to the k-th weight itself (a gap small against it: a near tie, which a "
              "small step can flip); the selected weights' sum (mean), which scales the prefix (raw aggregation).", "",
              "| lr | experts changed per step median / step 1 | top-k gap at step 0 (k-th weight) "
              "| selected weights' sum step 0 -> end |", "|---:|---:|---:|---|"]
    for r in rows:
        gap = "— (every expert selected)" if r["gap"] is None else f"{r['gap']:.4f} ({r['w_k']:.4f})"
        lines.append(f"| {r['lr']:g} | {r['flips']:.2f} / {r['flips_first']:.2f} | {gap} "
                     f"| {r['kept_w'][0]:.3f} -> {r['kept_w'][1]:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = steps_parser(__doc__, REPORT, 12)
    ap.add_argument("--top-k", type=int, default=None, help="experts selected (Eq. 4; default the runs' M-Former's)")
    ap.add_argument("--frozen", nargs="+", default=[], choices=["router"], help="M-Former modules left untrained")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = runs_budget(args)
    rows = []
    for lr in LRS:
        print(f"== minilm, M-Former, lr {lr:g}", flush=True)
        rows.append(measure(lr, budget, args.top_k, tuple(args.frozen)))
        r = rows[-1]
        print(f"   step move {r['median']['step']:.4f}, out_proj.weight {r['median']['out_proj.weight']:.4f}, "
              f"coherence {r['coherence']:.2f}", flush=True)
    write_text(args.out, report(rows, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
