"""Issue 11 diagnostic: how fast two runs of one Laser config part when one starts a rounding error away.

    python benchmarks/bench_divergence.py --threads 2 [--steps 100] [--eps 1e-7]

The MiniLM M-Former runs at the real-data budget's lr 1e-3 gave test N@10 6.97 / 2.45 / 3.77 over three seeds, and
seed 0, rerun after its CPU gradients were made bit-repeatable (``mformer.py``; the first run's differed from a rerun's
in the 8th digit from step 1), gave another value again (``benchmarks/laser_scientific.md``). This script measures
that sensitivity directly, for the M-Former and the learnable prefix at lr 1e-3 (the budget's) and 1e-4 (App. B's):

- two copies of the run's model (``bench_laser_scientific.run_config``, seed 0 or ``--seed``: the same initial
  weights, training users and epoch-0 batch order), the second with every trainable weight multiplied by
  ``1 + eps z`` (z standard normal, seeded; eps 1e-7 is about one fp32 rounding step, the size of the difference
  the old gradients made);
- the first ``--steps`` Adam steps of phase 1, in lockstep, against the configuration's own untrained item refresh
  (the table its run's epoch 0 trains against); both copies draw the same dropout masks;
- at log-spaced steps: the relative distance of the trainable weights, ||theta_b - theta_a|| / ||theta_a||; for 32
  seeded training histories (eval mode), the distance of the unit user vectors h_u / ||h_u|| (Eq. 2, ranked by
  cosine), the share of each history's top-10 items both copies rank in their top 10, and (M-Former) the share of
  histories whose selected experts differ (Eq. 4's top k);
- after every step, how far copy a's prefix has travelled (its path: the sum of its per-step moves over its step-0
  norm, for the same 32 histories) and, for MiniLM, the path of what the backbone's first layer reads at the prefix
  positions (after its embedding LayerNorm); ``--every N`` adds a checkpoint every N steps; ``--groups`` adds the
  weight distance within each weight group (the M-Former's queries by expert); ``--grads`` adds, for every step, how
  far apart the copies' gradients and Adam updates are.

Writes ``benchmarks/divergence.md``. Nothing here trains a result; one diagnostic, one seed.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_laser_cpu import CPU_MFORMER  # noqa: E402  the real-data runs' M-Former
from bench_laser_scientific import run_config  # noqa: E402  the real-data runs' configs
from bench_prefix_anatomy import group_of  # noqa: E402  the M-Former's weight groups
from bench_prefix_steps import (  # noqa: E402  its four configs, a run's start and step
    CASES, LRS, kept, probe_prefix, run_start, runs_budget, steps_parser, top_k, train_step)
from laser_repro.io import write_text  # noqa: E402
from laser_repro.runinfo import cpu_model  # noqa: E402
from laser_repro.train.scaffold import cpu_autocast  # noqa: E402

REPORT = HERE / "divergence.md"
# case -> (prefix label, run variant, lr, M-Former overrides, M-Former modules left untrained): bench_prefix_steps'
# four MiniLM configurations (the default), and, opt-in, the M-Former at lr 1e-3 with every expert selected (top k =
# K: Eq. 4's weights stay, its discrete choice is gone): do the routing flips drive the M-Former's divergence? And
# with its router W_r kept at its initial weights (Eq. 4 still selects, from the untrained router's choice): the
# router's step moves the prefix most (``prefix_anatomy.md``); does its training drive the divergence?
RUN_CASES = {f"{variant}-lr{lr:g}": (label, variant, lr, {}, ()) for label, variant in CASES["minilm"] for lr in LRS}
DEFAULT_CASES = list(RUN_CASES)
RUN_CASES["main-all-experts-lr0.001"] = (f"M-Former, all {CPU_MFORMER.n_experts} experts", "main", 1e-3,
                                         {"mformer.top_k": CPU_MFORMER.n_experts}, ())
RUN_CASES["main-frozen-router-lr0.001"] = ("M-Former, router untrained", "main", 1e-3, {}, ("router",))
# and the M-Former between the two: at lr 3e-4 the threshold 38 / lr of ``bench_sharpness.py`` is 127,000, above
# the preconditioned sharpness it measured at lr 1e-4 and 1e-3 (medians 8.2e3, 1.35e4): parts it as slowly as at
# 1e-4, or as fast as at 1e-3?
RUN_CASES["main-lr0.0003"] = ("M-Former", "main", 3e-4, {}, ())
# and above the budget's, to test a prediction written before its run: if the copies part by the distance travelled
# (lr x steps), as 1e-4, 3e-4 and 1e-3 suggest (``laser_scientific.md``), at lr 2e-3 their user vectors are 7-13%
# apart by step 5 and about 35% by step 10 (``divergence_lr2e-3.md``: 9.8% and 22%)
RUN_CASES["main-lr0.002"] = ("M-Former", "main", 2e-3, {}, ())
# and the M-Former at lr 1e-3 with its queries drawn at std 1 instead of BLIP-2's 0.02: the same draws scaled by 50,
# so the queries' LayerNorm gives the same output and the run starts from the same function. The loss is unchanged
# when a query row is scaled, so its curvature along the row goes as 1 / std^2 and one Adam step (about lr per weight)
# turns the row by about lr / std: 5% at std 0.02, 0.1% at std 1. Prediction, written before the run: if the queries'
# small scale is what makes the copies part (at std 0.02: 13% / 35% / 50% apart at steps 10 / 20 / 100), at std 1
# they part no faster than the M-Former at lr 1e-4 did (0.76% / 0.80% / 6.6%), and the top Ritz vector of
# ``bench_sharpness.py`` leaves the queries (45-77% on them at std 0.02, lr 1e-3); if they part as at std 0.02, the
# queries' scale is not the cause.
RUN_CASES["main-qstd1-lr0.001"] = ("M-Former, queries at std 1", "main", 1e-3, {"mformer.query_init_std": 1.0}, ())
# (``divergence_qstd1.md``: 13% / 23% / 61% apart at steps 10 / 20 / 100, as fast as at std 0.02: not the cause;
# ``sharpness_qstd1.md``: the top vector leaves the queries, which held 29-77% of it at std 0.02, not 45-77% as above.)
# and the M-Former fed one constant input (``bituning.prefix_input: constant``): the same prefix for every history,
# as the learnable prefix, through the M-Former's blocks. Prediction, written before the run: if the parting comes
# from the prefix depending on the history, the copies part as slowly as the learnable prefix's (1.0% / 5.0% apart at
# lr x steps 0.01 / 0.1); if as fast as the M-Former's (13% at step 10), the blocks themselves make it sensitive.
RUN_CASES["main-constant-input-lr0.001"] = ("M-Former fed one constant input", "main", 1e-3,
                                            {"bituning.prefix_input": "constant"}, ())
# (``divergence_constant_input.md``: 9.1% / 20% / 69% apart at steps 10 / 20 / 100: as fast; not the input.)
# And Eq. 6's temperature (tau 0.05, App. B): cos / tau makes the logits' scale 1 / tau, so the loss's curvature in the
# cosine grows as 1 / tau^2 and its gradient as 1 / tau: if the loss carries the batches' amplification, a gradient's
# distance relative to its size scales about as 1 / tau. Prediction, written before the runs (``--steps 15 --every 1
# --grads``, fp32, seed 0): the largest gradients / weights ratio over steps 1-15 is at most a third of tau 0.05's
# (2,290) at tau 0.2 and at least 3 times it at tau 0.0125. It fails if either moves less than 3-fold.
RUN_CASES["main-tau0.2-lr0.001"] = ("M-Former, tau 0.2", "main", 1e-3, {"loss.tau": 0.2}, ())
RUN_CASES["main-tau0.0125-lr0.001"] = ("M-Former, tau 0.0125", "main", 1e-3, {"loss.tau": 0.0125}, ())
# (``divergence_fp32_tau0.2.md``, ``divergence_fp32_tau0.0125.md``: failed both ways. At tau 0.2 the largest ratio is
# 1,080 (step 6), half of tau 0.05's, not a third, and the copies part by step 14 (10%; tau 0.05: step 9). At tau
# 0.0125 it is 58 (step 7), 40 times smaller, not 3 times larger: the copies stay 9e-5 apart after 15 steps, every
# top-10 list shared, while the batch loss swings 8.2-12.0 (above chance, ln 5,327 = 8.58). So the amplification is
# not the loss's 1 / tau scale: it is largest near the paper's tau of the three, and a sharper softmax damps it.)
# Delayed or prevented? At tau 0.0125 the weights still grow about 1.1-fold a step after step 1 (7.1e-6 at step 2,
# 2.6e-5 at 15). Prediction, written before the run (``--steps 100 --every 5 --cases main-tau0.0125-lr0.001``): at that
# rate the copies' user vectors first reach 5% apart after step 30 and by step 100: the sharper softmax delays the
# parting, it does not prevent it. It fails if they stay under 5% through step 100, or part by step 30.
# (``divergence_fp32_tau0.0125_100steps.md``: held. 5.9% apart at step 60 (1.4e-3 at 40, 1.0e-2 at 45), 29% at step
# 100, when their top-10 lists share 43% of items and the experts differ for 44% of the probe histories: about 50
# steps later than at tau 0.05, well inside the 389-step first epoch.)

# Every run also traces how far copy a's prefix travels (the path: the sum of its per-step moves ||P_t - P_t-1|| over
# ||P_0||, for the 32 probe histories, as ``bench_prefix_steps.py``). A reading drawn after the cases above, from
# ``prefix_steps.md``'s first 12 steps only: the copies part by how far the prefix has travelled, not by lr x steps.
# Prediction, written before the path was measured in any of them: every case's user vectors first reach 5% apart
# (``APART``) once the prefix has travelled between 0.4 and 3 prefix norms, i.e. path >= 0.4 at the first checkpoint
# at least 5% apart and path <= 3 at the checkpoint before it. It fails if a case that parts early (queries at std 1
# and all experts: 5.5% and 6.1% at step 5; lr 2e-3: 9.8% at step 5) has travelled less than 0.4 by then, or one
# that parts late (lr 3e-4: 3.0% at step 20, 14% at step 50) more than 3 before it parts. And if the prefix of the
# queries at std 1 travels as far as at std 0.02, the queries' scale is not what makes the M-Former's prefix travel
# 25 times as far for 10 times the lr (``prefix_steps.md``); if the router untrained travels as far, its flips are
# not either.
# (``divergence_path.md``: all ten cases fit; the nine that part cross 5% between paths 0.28 and 2.8, the learnable
# prefix at 0.28-0.44, the M-Former's four rates at 1.3-1.9: a wide window, a weak test; across the two prefixes the
# path at the crossing differs 3-7 fold (lr x steps 5-17 fold), so the reading holds within each. The queries at std 1
# travel as far (20.9 against 19.1 by step 100); untrained router, all experts, constant input half to 2/3 as far.
# Over 100 steps the M-Former's prefix travels 6.9 times as far at 1e-3 as at 1e-4, not 25: the 25 was the median of
# the first 12 moves, below 1e-4's mean because of its large early moves.)
# Then with a checkpoint every 5 steps (``--every 5``), the M-Former at 1e-3, 3e-4, 1e-4 and the learnable prefix at
# 1e-3. Prediction, written before the run: the M-Former's three rates first reach 5% apart at paths within a factor
# of 1.5 of one another (the coarse windows share 1.33-1.9), and the learnable prefix at a path at least 3 times
# shorter than each. It fails if one rate crosses 1.5 times as far as another, or the learnable prefix within 3 times.
# The same run traces the encoder-input path: the path of what MiniLM's first layer reads at the prefix positions,
# after its embedding LayerNorm (``encoder_input``). Prediction, written before the run: if the M-Former needs 3-7
# times the learnable prefix's path to part because that LayerNorm removes part of its travel (its prefix grows in
# norm, 1.23 -> 1.57 in 12 steps at 1e-3, where the learnable prefix's stays 1.09), the two prefixes' encoder-input
# paths at the crossing agree within a factor of 1.5; if they still differ 3-fold or more, it is not the reason.
# (``divergence_dense.md``: held for 1e-4 and 3e-4, undecided for 1e-3. 1e-4 parts at paths 1.39-1.53 (steps 70-75),
# 3e-4 at 1.64-1.85 (25-30): within 1.07-1.33 of each other, 3.1-4.3 times the learnable prefix's 0.43-0.44 (95-100).
# 1e-3's checkpoints (steps 5, 10) leave 1.1-2.22: 1.07-1.68 from the others, 2.5-5.2 times the learnable's. lr x
# steps lines the rates up as closely. The encoder-input path is 90-98% of the prefix path up to the partings, still
# 3.3-4.3-fold apart at 1e-4 and 3e-4 (2.5-4.9 with 1e-3): not the LayerNorm.)
# The same four cases at seed 1 (``--seed 1 --every 5``). Prediction, written before the run: the M-Former's three
# rates part at paths within a factor of 1.5 of one another, and the learnable prefix, if it parts within the 100
# steps, at a path at least 3 times shorter than each. It fails if one rate parts 1.5 times as far as another, or the
# learnable prefix within 3 times of one.
# (``divergence_dense_seed1.md``: not refuted, not decided. The rates part at paths 0.56-1.23 (1e-3, steps 2-5),
# 0.85-1.03 (3e-4, 10-15) and 0.58-0.81 (1e-4, 25-30): spread 1.06-2.14, the checkpoints cannot tell which. The
# learnable prefix does not part in 100 steps (2.0% apart after a path of 0.44), so its branch is open, and the
# M-Former parts at most 2.8 times as far as it would: seed 0's 3-4 times does not carry over as such.)
# A checkpoint at every step (``--every 1``; seed 0 up to step 75, seed 1 up to step 30) then decides the two
# predictions the 5-step checkpoints left open: 1e-3 at seed 0, and the three rates' spread at seed 1 (within 1.5?).
# (``divergence_fine.md``, ``divergence_fine_seed1.md``: seed 0's rates part at steps 6 / 29 / 75, paths 1.27 / 1.72 /
# 1.53, within 1.35: held; the learnable prefix's 0.43-0.44 is only 2.5-3.0 times shorter than 1e-3's: failed there,
# narrowly. Seed 1's part at steps 5 / 12 / 29, paths 1.23 / 0.89 / 0.80, a factor of 1.54: failed, narrowly.)
# Every run above was on a host with bf16 units, where the frozen backbone runs under bf16 autocast (``precision:
# auto``) and the copies' user vectors start 0.6-0.9% apart at step 0 with weights 1e-7 apart (read as bf16's
# rounding floor). On a host without them the backbone runs in fp32. Prediction, written before the run (seed 0,
# ``--every 5``, the M-Former and the learnable prefix at lr 1e-3, on such a host): (a) at step 0 the user vectors
# are under 0.01% apart; (b) if the parting is the training dynamics amplifying any difference (Adam's first step
# turns the 1e-7 into an lr-sized one where gradients are near zero, ``divergence.md``), the M-Former's copies
# still first reach 5% apart within the 100 steps, at a prefix path within a factor of 2 of the bf16 run's 1.27
# (``divergence_fine.md``: step 6); if the bf16 backbone's rounding is what feeds the parting, they stay under 5%
# and the learnable prefix's (5% at step 95-100 with bf16) do not part either.
# (``divergence_fp32.md``: (a) held, 8.2e-7 and 9.9e-7 at step 0; (b) held: the M-Former's copies reach 5% between
# steps 5 and 10, at paths 1.18-2.12. But Adam's first step no longer turns the 1e-7 into an lr-sized difference
# (weights 3.2e-6 and 1.3e-7 apart after it, M-Former and learnable prefix; 2.6e-3 and 2.1e-3 with bf16); the learnable
# prefix's copies do not part at all:
# 3.2e-5 apart after 100 steps, every top-10 list shared. So the learnable prefix's parting with bf16 was fed by the
# backbone's rounding; the M-Former's copies went from 5.2e-5 apart at step 5 to 9.4e-2 at step 10.)
# Then every step of the M-Former's first 15 at lr 1e-3 in fp32 (``--steps 15 --every 1``). Prediction, written
# before the run: if it amplifies a difference by a steady factor per step, the user-vector distance grows about
# geometrically from step 2 to step 10 (no step's ratio more than 3 times the mean ratio over those steps, about
# 4.5); if a step or two do most of it (say the step of the largest prefix move), one step's ratio exceeds 20.
# And the same two cases at seed 1 in fp32. Prediction, written before the run: the learnable prefix's copies stay
# under 0.1% apart over the 100 steps (with bf16 they reached 2.0%); the M-Former's reach 5% within them, at a path
# within a factor of 2 of seed 1's bf16 parting (1.23 at step 5; ``divergence_fine_seed1.md``).
# (``divergence_fp32_fine.md``: not steady. 1.0-1.2e-6 apart through step 4, then 43-fold at step 5, 9.6 at 6, 5.2 at
# 7, 1.9 at 8, 16 at 9 (mean 4.2 a step over steps 2-10): a few steps do most of it; step 5's prefix move (0.16) is
# not the largest, no expert choice differs before step 11. ``divergence_fp32_seed1.md``: the learnable prefix 1.8e-6
# apart after 100 steps, held; the M-Former parts at step 25 (path 4.29; 3.42 at step 20), 2.8-3.5 times seed 1's
# bf16 path: failed, its copies take longer to part from the closer start.)
# And at seed 2 in fp32 (``--seed 2 --every 5``, the same two cases). Prediction, written before the run: the
# learnable prefix's copies stay under 0.1% apart over the 100 steps; the M-Former's reach 5% within them, later than
# with bf16 (step 5, ``divergence_seed2.md``) and by step 30 (seeds 0 and 1 in fp32: steps 9 and 25).
# (``divergence_fp32_seed2.md``: the learnable prefix 2.7e-6 apart after 100 steps, held; the M-Former parts later
# than with bf16 but at step 45 (5.7%, path 7.12; 3.1% at step 40), not by step 30: failed. Its growth is steadier
# here, 2.3e-5 at step 10 to 1.4e-2 at 30, 3-7-fold every 5 steps.)
# And the M-Former at App. B's lr 1e-4 in fp32, seed 0 (``--every 5 --cases main-lr0.0001``). Prediction, written
# before the run: with bf16 its copies went from 0.7% apart (the floor) to 5% at step 75 (``divergence_fine.md``),
# so from 1e-6 they stay under 5% over the 100 steps; if they part within them, its amplification is as strong as
# lr 1e-3's from the same start.
# (``divergence_fp32_lr1e-4.md``: held. 1.5e-4 apart after 100 steps, every top-10 list shared, no expert choice
# differing; growing, though: about 1e-6 to step 30, 2-4e-6 to step 55, then from 6.5e-6 at step 60 to 1.5-2.5e-4.)
# Where in the M-Former does seed 0's fp32 step 5 amplify (user vectors 43-fold, the weights as a whole only 3-fold:
# 3.3e-6 -> 9.9e-6)? ``--groups`` splits the weight distance by weight group, the queries by expert (``--steps 15
# --every 1 --groups --cases main-lr0.001``, fp32). Prediction, written before the run: a small group carries the
# jump. At step 5, the router or one expert's queries grows at least 10-fold, while the two feed-forward groups (the
# largest, 48% of the weights) grow less than 3-fold. It fails if no group grows 10-fold at step 5, or if the
# feed-forward groups grow as much as the most-grown group.
# (``divergence_fp32_groups.md``: held as worded, its premise not. At step 5 the router grows 31-fold (6.7e-7 ->
# 2.1e-5), experts 0, 4 and 5's queries 14-20-fold, the feed-forward groups 2.3-2.4-fold. But no small group carries
# it: the context projection grows 22-fold, cross-attention 18, the output projection's bias 56, and most groups land
# at 0.9-2.2e-5 apart; the feed-forward groups grow least because Adam's first step had put them 9e-6 apart already.
# Experts 1, 2, 3, 6 and 7's queries and the suffix barely move at step 5 (1.1-1.3-fold; whether step 5's batch
# selected those experts was not recorded). Step 9 is as broad: every group 10-100-fold. So the amplification sits
# in those steps' gradients as a whole, not in one group; what makes those batches sensitive remains open.)
# Is it the batch or Adam? ``--grads`` records, for every step, the copies' distance before it, of its gradients and
# of its Adam updates (``--steps 15 --every 1 --grads --cases main-lr0.001``, fp32, seed 0). Prediction, written
# before the run: (a) at step 1 the update distance is at least 10 times the gradient distance (Adam's first step
# normalises every coordinate to about lr, so near-zero gradients that differ in sign differ by 2 lr: the known 30-fold
# growth of the weight distance, 1e-7 -> 3.2e-6); (b) at step 5 the gradient distance is at least 10 times its
# step-4 value while the weight distance before the step is flat (3.3e-6 before steps 4 and 5): the batch amplifies,
# and updates / gradients at step 5 stays within a factor of 3 of its step-4 value. It fails if step 5's jump is in
# the updates and not the gradients (Adam amplifying there too).
# (``divergence_fp32_grads.md``, the same distances as the fine run: (a) held, the step-1 updates 80 times further
# apart than the gradients (1.4e-4 against 1.7e-6). (b) held for the batch: step 5's gradients are 164 times further
# apart than step 4's (1.8e-3 against 1.1e-5) from weights 3.3e-6 apart before both, 539 times the weight distance;
# its clause on Adam failed narrowly the other way: updates / gradients fell 3.8-fold (1.7 -> 0.44), Adam damping the
# jump. Steps 2-3 pass the weight distance through (gradients 1.2 times it); steps 5, 7 and 9 multiply it by 540,
# 1,400 and 2,300, and from step 5 on the updates stay 0.4-1.5 times the gradient distance. So particular batches
# amplify, through the gradient itself; which property of those batches does it is still open.)
# Routing flips in the batch? ``--grads`` now also counts the batch rows whose selected experts differ between the
# copies during each step, and copy a's smallest top-k margin (same run). Prediction, written before the run: if a
# row's expert choice flipping is what makes a batch amplify, steps 5, 7 and 9 each route at least one row apart and
# steps 2-4 none; if no row is routed apart before step 10, the jumps come from the soft parts (router weights,
# attention), not the discrete choice.
# (``divergence_fp32_grads.md``, rerun with the routing columns, every other number the same: no batch row is routed
# apart before step 12 (1 of 8; 2-3 of 8 at steps 13-15), so the second branch holds: the jumps at steps 5, 7 and 9
# come from the soft parts. Copy a's smallest top-k margins are lowest at steps 5 and 6 (4.1e-4, 3.7e-4; 7.7e-4 to
# 5.3e-3 at steps 1-4 and 7-10), a coincidence with the first jump that a margin alone cannot cause: without a flip
# the selection, and with it the gradient's path, is the same in both copies.)
# The router's soft weights? With the router kept at its initial weights in both copies (``--cases
# main-frozen-router-lr0.001``, ``--grads``, fp32, seed 0), Eq. 4's weights w are the same in both copies at every
# step (the collaborative input is frozen too), so the copies cannot differ through the router. Prediction, written
# before the run: the batch amplification persists, at least one of steps 1-10 with gradients / weights of 100 or
# more: the router is not the channel. It fails if every step stays under 100.
# (``divergence_fp32_grads_frozen_router.md``: held. Step 9 multiplies the weight distance by 9,000 in the
# gradients, steps 10 and 11 by 120 and 1,070; no row is routed apart (none can be). But step 5's jump is gone
# (4.9 times, against 539 with the router trained), and steps 2-8 stay at 2.5-74: the router's training carries the
# early jumps, not the later ones.)
# One channel? ``--grads`` now also names, for every step, the weight group whose gradients part most (relative,
# the queries by expert; main case, fp32, seed 0, rerun). Prediction, written before the run: if one part of the
# model carries the amplification, the same group tops steps 5, 7 and 9; if the tops differ, no single group does.
# (``divergence_fp32_grads.md``, rerun, every other number the same: the tops differ. Step 5: the context projection
# (gradients 1.9e-3 apart); steps 7 and 9: experts 7 and 6's queries (2.9e-2, 1.1); from step 6 on the top is always
# one expert's queries, a different expert from step to step (3, 7, 3, 6, 5, 7, 2, 2, 1, 1). No single group.)
# Sensitivity or a rounding floor? A gradient 539 times further apart than the weights may be a large Jacobian (the
# distance then scales with the perturbation) or the batch's gradient being a small difference of large terms, which
# fp32 rounding parts whatever the weights' distance. ``--eps`` 0, 1e-8, 1e-6 and 1e-5 (``--steps 6 --every 1 --grads
# --cases main-lr0.001``, fp32, seed 0; 1e-7 is ``divergence_fp32_grads.md``). Prediction, written before the runs:
# (a) at eps 0 every distance is exactly 0 at every step (a step is bit-repeatable); (b) at step 5 gradients / weights
# stays within a factor of 3 of 539 for eps 1e-8 to 1e-5: a large Jacobian. It fails if step 5's gradient distance
# stays near 1.8e-3 while the weight distance before it moves 10-fold or more (a rounding floor of that batch).
# (``divergence_fp32_eps{0,1e-08,1e-06,1e-05}.md``: (a) held, every distance 0 at every step. (b) failed as worded:
# gradients / weights at step 5 is 186, 539, 129 and 1,290 for eps 1e-8, 1e-7, 1e-6 and 1e-5, a 10-fold range. Its
# failing branch did not hold either: at 1e-5 the weights before step 5 are 45 times further apart than at 1e-7
# (1.5e-4 against 3.3e-6) and step 5's gradients 110 times (0.20 against 1.8e-3), so the gradient distance grows with
# the weights', faster than in proportion: a large Jacobian, no rounding floor. Below 1e-6 the weights before step 5
# are 3.3-8.1e-6 apart whatever eps is, because step 1 sets it: its gradients part by 1.7e-6 from weights 1.6e-9
# apart (eps 1e-8, most of it under fp32's resolution) as from 1e-7 apart, a rounding floor of step 1's gradient that
# Adam's first step turns into ~3e-6. So any difference at all ends ~3e-6 apart after step 1, and step 5 multiplies
# it 130-1,300-fold by the direction it has, not its size.)
APART = 0.05


def case_config(variant: str, lr: float, args, overrides: dict | None = None):
    """``variant``'s run config (``bench_laser_scientific.run_config``, at ``args.seed``, 0 when unset) at ``lr``, with
    the ``overrides`` of a section's keys (``{"mformer.top_k": 8}``): a case of ``RUN_CASES``, as this script and
    ``bench_sharpness.py`` build it."""
    cfg = run_config(variant, argparse.Namespace(**{**vars(args), "lr": lr}))
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if not name or not hasattr(cfg, section):
            raise ValueError(f"case override {key!r}: expected <section>.<key> of the run config, e.g. mformer.top_k")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: value})})
    return cfg


def add_seed_option(ap: argparse.ArgumentParser) -> None:
    """The runs' ``--seed`` option, as this script and ``bench_sharpness.py`` take it."""
    ap.add_argument("--seed", type=int, default=0,
                    help="the runs' seed: initial weights, training users, batch order (the BERT4Rec input stays "
                         "seed 0's)")


def option_flag(args, name: str) -> str:
    """The ``--name`` part of a report's command line (``--seed``, ``--every``): empty when the option is 0 (its
    default) or ``args`` has none."""
    value = getattr(args, name, 0)
    return f" --{name} {value}" if value else ""


def cases_flag(chosen: list[str], default: list[str]) -> str:
    """The ``--cases`` part of a report's command line: empty when the default cases ran."""
    return "" if chosen == default else " --cases " + " ".join(chosen)


def checkpoints(steps: int, every: int = 0) -> list[int]:
    """Steps at which both copies are compared: 0, then 1, 2, 5, 10, 20, 50, ... up to ``steps`` (always included),
    and every ``every`` steps when it is positive."""
    marks = {0, steps} | (set(range(every, steps, every)) if every > 0 else set())
    for decade in range(int(math.log10(max(steps, 1))) + 1):
        marks.update(m * 10**decade for m in (1, 2, 5) if m * 10**decade <= steps)
    return sorted(marks)


def perturb(model: torch.nn.Module, eps: float, seed: int = 1) -> None:
    """Multiply every trainable weight by ``1 + eps z``, z standard normal from a generator of its own (the run's
    random state is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(1 + eps * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def encoder_input(model, prefix: torch.Tensor) -> torch.Tensor | None:
    """What the frozen backbone's first layer reads at the prefix positions: for the BERT family (MiniLM), its
    embedding LayerNorm of prefix + position + token-type embeddings, at positions 0..n-1 (``Backbone.forward``
    counts real tokens only, so the prefix sits there in every row); None for other families."""
    bb = model.backbone
    if bb.family != "bert":
        return None
    b, n, _ = prefix.shape
    with torch.no_grad():
        return bb.model.embeddings(inputs_embeds=prefix.to(bb.dtype), position_ids=torch.arange(n).expand(b, n)).float()


def weight_group(name: str) -> str:
    """A trainable weight's group: an M-Former weight's by :func:`group_of` (``mformer.router.weight`` -> ``router``),
    any other's module (``prefix``, ``suffix``, ...)."""
    return group_of(name[len("mformer."):]) if name.startswith("mformer.") else name.split(".")[0]


def group_distances(a: torch.nn.Module, b: torch.nn.Module, of: str = "weights") -> dict[str, float]:
    """The copies' relative weight distance ||theta_b - theta_a|| / ||theta_a|| within each :func:`weight_group`, the
    M-Former's queries split by expert (``queries e0``, ...: Eq. 4 selects an expert's query rows as a whole);
    ``of="grads"``: the same for the last step's gradients (a weight without one counts as zeros)."""
    diff: dict[str, float] = {}
    norm: dict[str, float] = {}
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        if not pa.requires_grad:
            continue
        if of == "grads":
            pa, pb = (p.grad if p.grad is not None else torch.zeros_like(p) for p in (pa, pb))
        group = weight_group(name)
        pairs = [(f"{group} e{e}", pa[e], pb[e]) for e in range(pa.shape[0])] if name == "mformer.queries" \
            else [(group, pa, pb)]
        for key, wa, wb in pairs:
            diff[key] = diff.get(key, 0.0) + float((wb.detach() - wa.detach()).float().pow(2).sum())
            norm[key] = norm.get(key, 0.0) + float(wa.detach().float().pow(2).sum())
    return {key: math.sqrt(diff[key] / norm[key]) if norm[key] else 0.0 for key in diff}


def routing_flips(routed: list[list], top_k: int) -> dict:
    """From each copy's M-Former outputs during one training step: the batch rows whose selected experts (Eq. 4's
    top k) differ between the copies, and copy a's smallest top-k margin over the rows (its k-th largest router
    weight minus its (k+1)-th: how near a row's choice is to flipping). Empty without an M-Former."""
    if not routed[0] or top_k <= 0:
        return {}
    experts = [torch.cat([o.experts.sort(dim=-1).values for o in outs]) for outs in routed]
    w = torch.cat([o.weights.detach().float() for o in routed[0]]).sort(dim=-1, descending=True).values
    margin = float((w[:, top_k - 1] - w[:, top_k]).min()) if w.shape[1] > top_k else float("nan")
    return {"flips": int((experts[0] != experts[1]).any(dim=-1).sum()), "rows": int(experts[0].shape[0]),
            "margin": margin}


def rel(b: torch.Tensor, a: torch.Tensor) -> float:
    """||b - a|| / ||a|| (0 where both are 0)."""
    norm = float(a.norm())
    return float((b - a).norm()) / norm if norm else 0.0


def gradients(model: torch.nn.Module) -> torch.Tensor:
    """The trainable weights' gradients of the last step, flattened in :func:`weights`' order (zeros where none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten()
                      for p in model.parameters() if p.requires_grad])


def weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in model.parameters() if p.requires_grad])


def compare(a, b, probe: list, table: torch.Tensor, by_group: bool = False) -> dict:
    """Distance of the two copies' weights (``by_group``: also per :func:`group_distances`) and of what they make of
    the probe histories (eval mode)."""
    wa, wb = weights(a), weights(b)
    out = {"weights": float((wb - wa).norm() / wa.norm())}
    if by_group:
        out["groups"] = group_distances(a, b)
    hs, experts = [], []
    for m in (a, b):
        m.eval()
        # the experts each history's M-Former pass selects, caught on their way out (both copies batch alike)
        caught: list[torch.Tensor] = []
        hook = m.mformer.register_forward_hook(lambda _m, _i, out: caught.append(out.experts.sort(dim=-1).values)) \
            if m.mformer is not None else None
        with torch.no_grad():
            hs.append(F.normalize(m.embed_users(probe, 0).float(), dim=-1))
        if hook is not None:
            hook.remove()
            experts.append(torch.cat(caught))
        m.train()
    out["user"] = float((hs[1] - hs[0]).norm() / hs[0].norm())
    out["top10"] = kept(top_k(hs[0], table), top_k(hs[1], table))
    out["experts"] = float((experts[0] != experts[1]).any(dim=-1).float().mean()) if experts else None
    return out


def measure(variant: str, lr: float, args, eps: float, overrides: dict | None = None, label: str = "",
            frozen: tuple[str, ...] = ()) -> dict:
    """The first ``args.steps`` phase-1 steps of ``variant``'s run config at ``lr`` (changed by ``overrides``, as
    :func:`case_config`; its ``frozen`` submodules left at their initial weights), for the run's model and a copy
    perturbed by ``eps``, compared at :func:`checkpoints`."""
    from laser_repro.laser import trainer

    cfg = case_config(variant, lr, args, overrides)
    ds, a, histories, targets, probe, batches = run_start(cfg, frozen)  # frozen: neither trained nor perturbed
    b = copy.deepcopy(a)
    perturb(b, eps)
    steps = min(args.steps, len(batches))
    table = a.embed_items(ds.n_items, cfg.item_batch_size)  # as train_laser's first refresh, for both copies
    opts = [trainer.make_optimizer(cfg, m, len(batches))[0] for m in (a, b)]
    marks, points, losses = checkpoints(steps, getattr(args, "every", 0)), [], ([], [])
    p0 = last_p = probe_prefix(a, probe)  # copy a's prefix for the probe histories (eval mode: no random draws)
    e0 = last_e = encoder_input(a, p0)  # and what the backbone's first layer reads of it
    path, path_in = 0.0, (None if e0 is None else 0.0)
    by_group, by_step, per_step = getattr(args, "groups", False), getattr(args, "grads", False), []
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step in marks:
            points.append({"step": step, **compare(a, b, probe, table, by_group), "path": path,
                           "drift": float((last_p - p0).norm() / p0.norm()), "path_in": path_in})
        if step == steps:
            break
        idx = batches[step]
        state = torch.get_rng_state()
        before = [weights(m) for m in (a, b)] if by_step else []
        routed: list[list] = [[], []]  # --grads: each copy's routing of the batch rows (M-Former)
        hooks = [m.mformer.register_forward_hook(lambda _m, _i, out, into=into: into.append(out))
                 for m, into in zip((a, b), routed) if by_step and m.mformer is not None]
        for m, opt, lost in zip((a, b), opts, losses):
            torch.set_rng_state(state)  # the same dropout masks in both copies
            lost.append(train_step(m, opt, cfg, histories, targets, idx, table))
        for hook in hooks:
            hook.remove()
        if by_step:  # --grads: what this step did to the copies' distance, gradient and update apart
            per_step.append({"step": step + 1, "before": rel(before[1], before[0]),
                             "grad": rel(gradients(b), gradients(a)),
                             "update": rel(weights(b) - before[1], weights(a) - before[0]), "loss": lost[-1],
                             "grad_top": max(group_distances(a, b, "grads").items(), key=lambda kv: kv[1]),
                             **routing_flips(routed, a.mformer.cfg.top_k if a.mformer is not None else 0)})
        p = probe_prefix(a, probe)
        path += float((p - last_p).norm() / p0.norm())
        last_p = p
        if e0 is not None:
            e = encoder_input(a, p)
            path_in += float((e - last_e).norm() / e0.norm())
            last_e = e
    autocast = cpu_autocast(cfg.backbone_precision, torch.device("cpu"))
    return {"variant": variant, "label": label or variant, "backbone": cfg.backbone, "lr": lr, "eps": eps,
            "steps": steps, "points": points, **({"per_step": per_step} if by_step else {}),
            "precision": f"{'under bf16 autocast' if autocast else 'in fp32'} "
                         f"(`backbone_precision: {cfg.backbone_precision}`)",
            "loss_gap": abs(losses[0][-1] - losses[1][-1]) if steps else 0.0,
            "loss": losses[0][-1] if steps else float("nan"), "s_per_step": (time.perf_counter() - t0) / max(steps, 1)}


def parting(points: list[dict], apart: float = APART) -> list[str]:
    """Report cells for the first checkpoint whose user vectors are at least ``apart`` apart: its step, distance,
    prefix path and encoder-input path, then the step and both paths of the checkpoint before it; dashes where the
    copies never part (or a path was not traced)."""
    def paths(p: dict) -> list[str]:
        return [f"{p['path']:.3g}", "—" if p.get("path_in") is None else f"{p['path_in']:.3g}"]

    for before, p in zip(points, points[1:]):
        if p["user"] >= apart:
            return [str(p["step"]), f"{p['user']:.1e}", *paths(p), str(before["step"]), *paths(before)]
    return ["—"] * 7


def report(rows: list[dict], args) -> str:
    marks = [p["step"] for p in rows[0]["points"]] if rows else []
    cases = cases_flag(getattr(args, "cases", DEFAULT_CASES), DEFAULT_CASES)
    seed = getattr(args, "seed", 0)
    precision = " / ".join(dict.fromkeys(r["precision"] for r in rows)) or "not run"  # each case's own config
    lines = ["# How fast two runs of one Laser config part (issue 11 diagnostic)", "",
             f"Written by `python benchmarks/bench_divergence.py --threads {args.threads} --steps {args.steps} "
             f"--eps {args.eps:g}{option_flag(args, 'every')}{' --groups' if getattr(args, 'groups', False) else ''}"
             f"{' --grads' if getattr(args, 'grads', False) else ''}"
             f"{cases}{option_flag(args, 'seed')}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{cpu_model()}, the frozen backbone {precision} (`auto`: bf16 autocast where the CPU has "
             f"bf16 units). Each configuration is the MiniLM run config of `bench_laser_scientific.py` (seed {seed}: "
             "the same initial weights, 1,000 training users, epoch 0's batch order, batch 8, Adam) at the lr shown, "
             "trained twice in lockstep against its own untrained item refresh with the same dropout masks; the "
             f"second copy starts with every trainable weight multiplied by 1 + {args.eps:g} z (z standard normal). "
             "Distances are relative: weights ||theta_b - theta_a|| / ||theta_a||; user vectors the same for the unit "
             "vectors h_u / ||h_u|| of 32 seeded training histories (eval mode). Prefix path: the sum of copy a's "
             "per-step prefix moves ||P_t - P_t-1|| / ||P_0|| for the same histories (its drift: ||P_t - P_0|| / "
             "||P_0||). Encoder-input path: the same sum for what the backbone's first layer reads at the prefix "
             "positions (MiniLM's embedding LayerNorm of prefix + position + token type), over its step-0 norm. "
             "Top-10 shared: the mean share of a "
             "history's top 10 items (cosine against the table) that both copies rank in their top 10. Experts "
             "differ: the share of the 32 histories whose selected experts (Eq. 4's top k) differ between the copies."
             + (" 'All K experts': the M-Former with top k = K, every expert selected (Eq. 4's weights kept, its discrete "
                "choice gone)." if any("all" in r["label"] for r in rows) else "")
             + (" 'Router untrained': the M-Former whose router W_r keeps its initial weights in both copies (not "
                "trained, not perturbed; Eq. 4 selects with it); the weight distance is over the trained weights."
                if any("untrained" in r["label"] for r in rows) else ""), ""]
    formats = {"weights": ".1e", "user": ".1e", "top10": ".2f", "experts": ".2f", "path": ".3g", "drift": ".3g",
               "path_in": ".3g"}
    for key, title in (("weights", "Weight distance"), ("user", "User-vector distance"),
                       ("top10", "Top-10 shared"), ("experts", "Experts differ"),
                       ("path", "Prefix path (copy a)"), ("drift", "Prefix drift (copy a)"),
                       ("path_in", "Encoder-input path (copy a)")):
        lines += [f"**{title}** after each step:", "",
                  "| prefix | lr | " + " | ".join(f"step {s}" for s in marks) + " |",
                  "|---|---:|" + "---:|" * len(marks)]
        for r in rows:
            cells = ["—" if p.get(key) is None else format(p[key], formats[key]) for p in r["points"]]
            lines.append(f"| {r['label']} | {r['lr']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    for r in rows:  # --groups: where in the model the copies' weights part
        if "groups" not in r["points"][0]:
            continue
        lines += [f"**Weight distance by group** ({r['label']}, lr {r['lr']:g}; the M-Former's queries by expert) "
                  "after each step:", "", "| group | " + " | ".join(f"step {s}" for s in marks) + " |",
                  "|---|" + "---:|" * len(marks)]
        for group in r["points"][0]["groups"]:
            lines.append(f"| {group} | " + " | ".join(f"{p['groups'][group]:.1e}" for p in r["points"]) + " |")
        lines.append("")
    for r in rows:  # --grads: which part of each step moves the copies apart
        if "per_step" not in r:
            continue
        lines += [f"**Each step** ({r['label']}, lr {r['lr']:g}): the copies' relative distance before the step "
                  "(weights), of the step's gradients ||g_b - g_a|| / ||g_a|| and of its Adam updates ||d_b - d_a|| "
                  "/ ||d_a||, and copy a's batch loss. A gradient distance far above the weight distance: the batch "
                  "amplifies; an update distance far above the gradient distance: Adam does.", "",
                  "| step | weights before | gradients | updates | gradients / weights | updates / gradients | loss "
                  "| rows routed apart | smallest top-k margin (copy a) | group whose gradients part most |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for q in r["per_step"]:
            ratio = [f"{x / y:.3g}" if y else "—" for x, y in ((q["grad"], q["before"]), (q["update"], q["grad"]))]
            routing = [f"{q['flips']} of {q['rows']}", f"{q['margin']:.1e}"] if "flips" in q else ["—", "—"]
            lines.append(f"| {q['step']} | {q['before']:.1e} | {q['grad']:.1e} | {q['update']:.1e} | "
                         + " | ".join(ratio) + f" | {q['loss']:.4f} | " + " | ".join(routing)
                         + " | " + (f"{q['grad_top'][0]} ({q['grad_top'][1]:.1e})" if q["grad_top"][1] else "—") + " |")
        lines.append("")
    lines += [f"**Where the copies part:** the first step at which their user vectors are at least {APART:.0%} "
              "apart, the prefix and encoder-input paths there, and at the step before it.", "",
              "| prefix | lr | first step apart | its user-vector distance | path there | input path there "
              "| step before | path there | input path there |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['lr']:g} | " + " | ".join(parting(r["points"])) + " |")
    lines.append("")
    lines += ["| prefix | lr | steps | batch loss at the last step (copy a) | its gap between the copies | s per step "
              "(both copies) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['lr']:g} | {r['steps']} | {r['loss']:.4f} | {r['loss_gap']:.1e} "
                     f"| {r['s_per_step']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = steps_parser(__doc__, REPORT, 100)
    ap.add_argument("--eps", type=float, default=1e-7, help="relative size of the second copy's perturbation")
    ap.add_argument("--every", type=int, default=0,
                    help="also compare the copies every this many steps (default 0: steps 1, 2, 5, 10, 20, 50, ...)")
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(RUN_CASES),
                    help="configurations measured (default: the learnable prefix and the M-Former at lr 1e-3 and 1e-4)")
    ap.add_argument("--groups", action="store_true",
                    help="also report the weight distance within each weight group (the M-Former's queries by expert)")
    ap.add_argument("--grads", action="store_true",
                    help="also report, for every step, how far apart the copies' gradients and Adam updates are")
    add_seed_option(ap)
    args = ap.parse_args(argv)
    if args.every < 0:
        ap.error(f"--every: expected 0 (log-spaced checkpoints only) or a positive number of steps, got {args.every}")
    torch.set_num_threads(args.threads)
    budget = runs_budget(args)
    budget.seed, budget.every, budget.groups, budget.grads = args.seed, args.every, args.groups, args.grads
    rows = []
    for case in args.cases:
        label, variant, lr, overrides, frozen = RUN_CASES[case]
        print(f"== minilm, {label}, lr {lr:g}", flush=True)
        rows.append(measure(variant, lr, budget, args.eps, overrides, label, frozen))
        last = rows[-1]["points"][-1]
        print(f"   step {last['step']}: weights {last['weights']:.1e}, user vectors {last['user']:.1e}, "
              f"top-10 shared {last['top10']:.2f}", flush=True)
    write_text(args.out, report(rows, args))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
