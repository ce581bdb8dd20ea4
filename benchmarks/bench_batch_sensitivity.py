"""Issue 11 diagnostic: is the M-Former's gradient sensitivity a property of particular batches, or of the state a
run reaches?

    python benchmarks/bench_batch_sensitivity.py --threads 2 [--states 0 4 8] [--batches 12] [--eps 1e-6]
    python benchmarks/bench_batch_sensitivity.py --threads 2 --transplant 8 --out benchmarks/batch_sensitivity_groups.md

``divergence_fp32_grads.md`` (seed 0's MiniLM M-Former run config at lr 1e-3, fp32) found that along two lockstep
copies the gradients of steps 5, 7 and 9 part 539-2,300 times as far as the weights do, the other early steps 1-3
times. There each step's batch met a new state, so the two could not be told apart. Here one copy trains those steps
alone (the run's own initial weights, batches and untrained item refresh); at the weights it has after ``s`` steps
(``--states``) the gradient of each of the epoch's first ``--batches`` batches is taken twice, at those weights and
at a copy whose every trainable weight is multiplied by ``1 + eps z`` (z standard normal, seeded), with the same
dropout masks: the ratio rel(gradient) / rel(weights) of every (state, batch) pair, the quantity
``divergence_fp32_grads.md`` traced. A column high at every state says the batch; a row high across its batches says
the state. For the pair of the largest ratio, each row of that batch alone (the same state and perturbation): which
histories carry it.

Prediction (written before the first run): the batch. At every state, including the initial weights, batches 5, 7
and 9 give ratios above 100 and every other batch below 10. Outcome (2026-12-07, ``batch_sensitivity.md``,
``batch_sensitivity_states.md``): failed, it is mostly the state: 3-19 for nearly every batch through step 4's
weights (batch 5 at step 4's: 97.5), then 34-2,290 for every batch after 8 steps.

Which weights' moves make the state sensitive (``--transplant S``): for each weight group G (``bench_divergence
.weight_group``: the M-Former's router, queries, each block's sublayers, output projection; the suffix), the same
ratios at the initial weights with G alone moved to where step S has it ("only G moved"), and at step S's weights with
G alone put back ("G put back"). A group whose move alone gives step S's ratios, and whose return alone removes them,
is the carrier. Prediction (written before the first run): the queries or the router; their moves alone give ratios
above 25 for most batches, every other group's alone below 10. Outcome (2026-12-07, ``batch_sensitivity_groups.md``):
failed, no group carries it alone (one group moved: medians 5-12; one group put back: 58-513 against step 8's 163);
the output projection's weight comes nearest (put back: median 14.4; moved alone: 12).

Writes ``benchmarks/batch_sensitivity.md``. A diagnostic of one seed; nothing here trains a result.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_divergence import (add_seed_option, case_config, gradients, perturb, rel, weight_group,  # noqa: E402
                              weights)
from bench_prefix_steps import run_start, runs_budget, steps_parser, train_step  # noqa: E402
from laser_repro.io import write_text  # noqa: E402
from laser_repro.runinfo import cpu_model  # noqa: E402

REPORT = HERE / "batch_sensitivity.md"


def ratio(model, eps: float, rows: list, targets: np.ndarray, table: torch.Tensor, masks: torch.Tensor) -> float:
    """rel(gradient) / rel(weights) of the loss on ``rows`` between ``model`` and a copy perturbed by ``eps``, both
    drawing the dropout masks of torch RNG state ``masks``."""
    other = copy.deepcopy(model)
    perturb(other, eps)
    grads = []
    for m in (model, other):
        torch.set_rng_state(masks)
        out = m(rows, torch.as_tensor(targets), table)
        m.zero_grad(set_to_none=True)
        out.loss.backward()
        grads.append(gradients(m))
    return rel(grads[1], grads[0]) / rel(weights(other), weights(model))


def mixed(base: torch.nn.Module, donor: torch.nn.Module, group: str) -> torch.nn.Module:
    """A copy of ``base`` whose trainable weights of ``group`` (:func:`weight_group`) are ``donor``'s."""
    out = copy.deepcopy(base)
    with torch.no_grad():
        for (name, p), q in zip(out.named_parameters(), donor.parameters()):
            if p.requires_grad and weight_group(name) == group:
                p.copy_(q)
    return out


def transplants(start: torch.nn.Module, moved: torch.nn.Module, row) -> dict[str, dict]:
    """For each weight group: its rms move per weight from ``start`` to ``moved``, and ``row`` (a model -> that model's
    ratios, one per batch) at ``start`` with that group alone moved and at ``moved`` with it alone put back."""
    sq: dict[str, list[float]] = {}
    for (name, p), q in zip(start.named_parameters(), moved.parameters()):
        if p.requires_grad:
            d = sq.setdefault(weight_group(name), [0.0, 0])
            d[0] += float((q.detach() - p.detach()).float().pow(2).sum())
            d[1] += p.numel()
    out = {}
    for g, (total, n) in sq.items():
        out[g] = {"move": (total / n) ** 0.5, "only": row(mixed(start, moved, g)), "back": row(mixed(moved, start, g))}
        print(f"{g}: only {np.median(out[g]['only']):.3g}, back {np.median(out[g]['back']):.3g}", flush=True)
    return out


def measure(args) -> dict:
    from laser_repro.laser import trainer

    cfg = case_config("main", args.lr, args)
    ds, model, histories, targets, _, batches = run_start(cfg)
    n_batches = min(args.batches, len(batches))
    table = model.embed_items(ds.n_items, cfg.item_batch_size)  # as train_laser's first refresh (untrained)
    opt = trainer.make_optimizer(cfg, model, len(batches))[0]
    if args.transplant is not None:
        args.states = sorted(set(args.states) | {0, args.transplant})
    masks, states = [], {}
    for step in range(max(max(args.states), n_batches) + 1):  # the run's steps, for its states and its masks
        if step in args.states:
            states[step] = copy.deepcopy(model)
        if step < n_batches:
            masks.append(torch.get_rng_state())  # the masks the run draws at step ``step + 1``
        if step < max(max(args.states), n_batches - 1):
            train_step(model, opt, cfg, histories, targets, batches[step], table)
    t0 = time.perf_counter()

    def row(model) -> list[float]:
        return [ratio(model, args.eps, [histories[i] for i in batches[j]], targets[batches[j]], table, masks[j])
                for j in range(n_batches)]

    grid = {}
    for s in sorted(states):
        for j, value in enumerate(row(states[s])):
            grid[(s, j + 1)] = value
        print(f"state {s}: " + " ".join(f"{grid[(s, j + 1)]:.3g}" for j in range(n_batches)), flush=True)
    groups = None if args.transplant is None else transplants(states[0], states[args.transplant], row)
    (s_top, j_top) = max(grid, key=grid.get)
    idx = batches[j_top - 1]
    per_row = []
    for i in idx:
        per_row.append({"row": int(i), "history": len(histories[i]), "target": int(targets[i]),
                        "ratio": ratio(states[s_top], args.eps, [histories[i]], targets[[i]], table,
                                       masks[j_top - 1])})
    return {"cfg": cfg, "grid": grid, "states": sorted(states), "batches": n_batches, "top": (s_top, j_top),
            "state_weights": {s: weights(m) for s, m in states.items()},
            "per_row": per_row, "batch_ratio": grid[(s_top, j_top)], "groups": groups,
            "seconds": time.perf_counter() - t0}


def report(r: dict, args) -> str:
    states, n = r["states"], r["batches"]
    lines = [
        "# Is the M-Former's gradient sensitivity the batch's or the state's? (issue 11 diagnostic)",
        "",
        f"Written by `python benchmarks/bench_batch_sensitivity.py --threads {args.threads} --states "
        f"{' '.join(map(str, args.states))} --batches {args.batches} --eps {args.eps:g} --seed {args.seed}"
        f"{'' if args.transplant is None else f' --transplant {args.transplant}'}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu_model()}, in fp32 on CPU. Seed {args.seed}'s MiniLM "
        f"M-Former run config at lr {args.lr:g} (`bench_laser_scientific.run_config`: its initial weights, training "
        "users, epoch-0 batch order and untrained item refresh). Each cell: rel(gradient) / rel(weights) of one batch's "
        f"loss between the weights after the state's steps and a copy perturbed by eps = {args.eps:g}, the same "
        "dropout masks (those the run draws at that batch's step). ~1-3 is a gradient that moves as the weights do.",
        "",
        "| state (steps trained) | " + " | ".join(f"batch {j}" for j in range(1, n + 1)) + " |",
        "|---" * (n + 1) + "|",
    ]
    for s in states:
        lines.append(f"| {s} | " + " | ".join(f"{r['grid'][(s, j)]:.3g}" for j in range(1, n + 1)) + " |")
    s_top, j_top = r["top"]
    lines += ["", f"Largest: batch {j_top} at state {s_top}, {r['batch_ratio']:.3g}. Its rows alone (the same state, "
              "perturbation and masks):", "",
              "| training row | history length | target item | ratio |", "|---:|---:|---:|---:|"]
    lines += [f"| {x['row']} | {x['history']} | {x['target']} | {x['ratio']:.3g} |" for x in r["per_row"]]
    if r["groups"] is not None:
        lines += group_table(r, args.transplant)
    lines += ["", f"{r['seconds']:.0f} s for the grid and the rows on {args.threads} threads.", ""]
    return "\n".join(lines)


def group_table(r: dict, s: int) -> list[str]:
    """The ``--transplant`` table: per weight group, its move and the median and max ratio over the batches."""
    n = r["batches"]
    at = {k: [r["grid"][(k, j)] for j in range(1, n + 1)] for k in (0, s)}
    lines = ["", f"Which weights' moves carry it: the initial weights with one group alone moved to step {s}'s "
             f"(\"only G moved\"), and step {s}'s weights with one group alone put back (\"G put back\"); each "
             f"cell the median (max) over the {n} batches. For reference: the initial weights "
             f"{np.median(at[0]):.3g} ({max(at[0]):.3g}), step {s}'s {np.median(at[s]):.3g} ({max(at[s]):.3g}). Move: "
             f"the rms of w_{s} - w_0 over the group's weights (Adam moves a weight by about lr a step).", "",
             "| group | move | only G moved | G put back | only G: batches > 25 | put back: batches > 25 |",
             "|---|---:|---:|---:|---:|---:|"]
    for g, v in r["groups"].items():
        lines.append(f"| {g} | {v['move']:.3g} | {np.median(v['only']):.3g} ({max(v['only']):.3g}) | "
                     f"{np.median(v['back']):.3g} ({max(v['back']):.3g}) | {sum(x > 25 for x in v['only'])} | "
                     f"{sum(x > 25 for x in v['back'])} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = steps_parser(__doc__, REPORT, 0)
    ap.add_argument("--states", type=int, nargs="+", default=[0, 4, 8], help="steps trained before each state")
    ap.add_argument("--batches", type=int, default=12, help="the epoch's first batches, each a column")
    ap.add_argument("--eps", type=float, default=1e-6, help="relative size of the weight perturbation")
    ap.add_argument("--lr", type=float, default=1e-3, help="the run config's learning rate (its optimiser's steps)")
    ap.add_argument("--transplant", type=int, default=None, metavar="S",
                    help="also move one weight group at a time between the initial weights and step S's")
    add_seed_option(ap)
    args = ap.parse_args(argv)
    if min(args.states) < 0 or args.batches < 1 or args.eps <= 0 or (args.transplant or 0) < 0:
        ap.error("--states, --transplant: steps >= 0; --batches: at least 1; --eps: positive")
    torch.set_num_threads(args.threads)
    budget = runs_budget(args)
    budget.seed, budget.states, budget.batches, budget.eps, budget.lr = (args.seed, args.states, args.batches,
                                                                        args.eps, args.lr)
    budget.transplant = args.transplant
    r = measure(budget)
    write_text(args.out, report(r, args))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
