"""Two-phase training (paper §4.3.2, App. B) with per-epoch checkpoints and exact resume.

Phase 1: every epoch starts with an item refresh (all item embeddings recomputed, eval mode,
no grad); the epoch's validation NDCG@10 (against that epoch's item table) selects the best
epoch (patience 3, at most 15 epochs). Phase 2: the best epoch's weights and item table are
restored, the table is frozen, and training goes on for 5 epochs; the best validation epoch
is reported on test. Nothing is ever selected on test.

A kill at any point loses at most the current epoch: running the same command again
restores the last epoch's checkpoint (weights, optimiser, item tables, RNG states) and ends
with identical metrics on the same machine and settings (on a CPU; CUDA's kernels are not deterministic, so on
a GPU a resumed run, like any rerun, may differ in the last digits) (run folder and resume contract:
:mod:`laser_repro.train.scaffold`; other backbone numerics are refused, and under bf16 the
execution keys ``eval_batch_size``, ``item_batch_size`` and ``num_threads`` may move last bits).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from laser_repro.data.dataset import SeqDataset
from laser_repro.eval.evaluator import EvalResult, evaluate, load_ranks, reuse_ranks
from laser_repro.experiment.registry import METHODS, stand_in
from laser_repro.laser import template
from laser_repro.laser.backbones import load_backbone, same_numerics
from laser_repro.laser.config import LaserRunConfig
from laser_repro.laser.model import LaserModel
from laser_repro.data.splits import eval_user_subset, run_eval_users, seeded_subset
from laser_repro.train.scaffold import (
    METRICS_FILE,
    MODEL_FILE,
    RANKS_FILE,
    RunFolder,
    check_loss,
    load_torch,
    OpenedRun,
    run_trainer,
    set_rng_state,
)

log = logging.getLogger("laser_repro.laser")

SELECT_METRIC = "ndcg@10"


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint."""

    phase: str = "start"  # start | phase1 | phase2 | final | done
    epoch: int = 0  # next epoch within the current phase
    best1_epoch: int = -1
    best1_score: float = -1.0
    bad_epochs: int = 0
    best2_epoch: int = -1
    best2_score: float = -1.0
    refreshes: int = 0
    untrained_valid: dict | None = None
    history: list = field(default_factory=list)
    wall_time_s: float = 0.0


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
def training_users(ds: SeqDataset, cfg: LaserRunConfig) -> np.ndarray:
    """Users whose training part feeds training rows: a Figure 3 fraction, then a seeded cap."""
    if cfg.train_user_fraction is not None:
        from laser_repro.data.splits import sample_train_users

        users = sample_train_users(ds, cfg.train_user_fraction, cfg.seed)
    else:
        users = np.flatnonzero(ds.train_len >= cfg.min_train_history + 1)
    return seeded_subset(users, cfg.max_train_users, cfg.seed, 1)


def training_rows(ds: SeqDataset, users: np.ndarray, min_history: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Every prefix of a training part with >= ``min_history`` items as input, the next item as target."""
    histories, targets = [], []
    for u in users:
        seq = ds.train_sequence(int(u))
        for t in range(max(min_history, 1), seq.shape[0]):
            histories.append(seq[:t])
            targets.append(int(seq[t]))
    return histories, np.asarray(targets, dtype=np.int64)


def eval_users(ds: SeqDataset, split: str, cfg: LaserRunConfig, cap: int | None = None) -> np.ndarray:
    """Users with a ``split`` target; a seeded subset of ``cap`` users, else of ``max_valid_users``
    (validation) or ``max_eval_users`` (smoke runs) when set."""
    return run_eval_users(ds, split, cfg) if cap is None else eval_user_subset(ds, split, cfg.seed, cap)


# ---------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------
def build_model(cfg: LaserRunConfig, ds: SeqDataset, device: torch.device) -> LaserModel:
    """Backbone + collaborative encoder + trainable parts (initialised from ``init_from`` if set)."""
    corpus = None
    if cfg.backbone.startswith("tiny-"):  # tokenizer trained on this data set's texts
        corpus = [template.instruction(v, i) for v in template.VARIANTS for i in (False, True)]
        corpus += [template.render([it], category_field=cfg.template.category_field) for it in ds.items]
    backbone = load_backbone(cfg.backbone, device, corpus, cfg.cache_dir, cfg.backbone_revision, cfg.backbone_precision)
    encoder = None
    if cfg.bituning.prefix == "mformer":
        from laser_repro.idrec.encoder import load_collaborative_encoder, random_collaborative_encoder

        if cfg.idrec_run:
            encoder = load_collaborative_encoder(cfg.idrec_run, device, window=cfg.template.window, dataset=cfg.dataset)
        else:
            encoder = random_collaborative_encoder(ds.n_items, cfg.idrec_model, seed=cfg.seed,
                                                   window=cfg.template.window, device=device)
    model = LaserModel(cfg, backbone, ds.items, encoder).to(device)
    if cfg.init_from:
        path = Path(cfg.init_from) / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"init_from: {path} not found (expected a finished train-laser run folder)")
        blob = load_torch(path, "a train-laser run's model.pt", keys=("trainable",), map_location=device,
                          weights_only=True)
        try:
            model.load_trainable_state(blob["trainable"])
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"init_from: {path} does not fit this run's model: {err}") from None
        log.info("initialised trainable weights from %s", path)
    return model


def make_optimizer(cfg: LaserRunConfig, model: LaserModel, steps: int):
    """Adam (paper) or AdamW (authors' configs); optional linear warmup + cosine decay over ``steps``."""
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
    opt = cls(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.scheduler == "none":
        return opt, None

    def factor(step: int) -> float:
        if step < o.warmup_steps:
            return (step + 1) / max(o.warmup_steps, 1)
        progress = (step - o.warmup_steps) / max(steps - o.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ---------------------------------------------------------------------------------------
# one epoch, one refresh, one evaluation
# ---------------------------------------------------------------------------------------
def batch_order(n: int, batch_size: int, buckets: int, rng: np.random.Generator,
                lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """Batches of a seeded permutation of ``n`` rows; with ``buckets`` > 1, rows of similar token length
    share a batch (each run of ``buckets`` batches is sorted by length, then all batches are shuffled),
    so padding stays small."""
    order = rng.permutation(n)
    if buckets > 1 and lengths is not None:
        chunk = batch_size * buckets
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(order, range(chunk, n, chunk))]) \
            if n else order
        batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]
    return [order[s : s + batch_size] for s in range(0, n, batch_size)]


def run_epoch(model: LaserModel, rows: tuple[list, np.ndarray], table: torch.Tensor, opt, sched,
              cfg: LaserRunConfig, phase: int, epoch: int) -> dict[str, float]:
    """One pass over the training rows in a seeded order; returns mean loss terms."""
    histories, targets = rows
    model.train()
    o = cfg.optim
    rng = np.random.default_rng([cfg.seed, phase, epoch])
    lengths = np.array([len(t) for t in model.tokens(histories)]) if o.length_buckets > 1 else None
    batches = batch_order(len(histories), o.batch_size, o.length_buckets, rng, lengths)
    sums = {"loss": 0.0, "loss_iic": 0.0, "loss_lb": 0.0}
    opt.zero_grad(set_to_none=True)
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(batches, desc=f"phase {phase} epoch {epoch}", leave=False, disable=not cfg.progress)
    for step, idx in enumerate(bar, start=1):
        out = model([histories[i] for i in idx], torch.as_tensor(targets[idx]), table)
        check_loss(out.loss, f"phase {phase}, epoch {epoch}, step {step} (lr {o.lr:g})")
        (out.loss / o.grad_accumulation).backward()
        if step % o.grad_accumulation == 0 or step == len(batches):
            if o.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, o.max_grad_norm)
            opt.step()
            if sched is not None:
                sched.step()
            opt.zero_grad(set_to_none=True)
        sums["loss"] += out.loss.item()
        sums["loss_iic"] += out.loss_iic.item()
        sums["loss_lb"] += 0.0 if out.loss_lb is None else out.loss_lb.item()
        bar.set_postfix(loss=f"{sums['loss'] / step:.4f}")
    return {k: v / max(len(batches), 1) for k, v in sums.items()}


def refresh_items(model: LaserModel, n_items: int, cfg: LaserRunConfig, state: TrainState, why: str) -> torch.Tensor:
    """All item embeddings with the current weights (no grad, eval mode); logged and counted."""
    t0 = time.perf_counter()
    bar = (lambda b: tqdm(b, desc="item refresh", leave=False)) if cfg.progress else None
    table = model.embed_items(n_items, cfg.item_batch_size, bar)
    state.refreshes += 1
    log.info("item refresh #%d (%s): %d items in %.1fs", state.refreshes, why, n_items, time.perf_counter() - t0)
    return table


def evaluate_split(model: LaserModel, ds: SeqDataset, users: np.ndarray, split: str, table: torch.Tensor,
                   cfg: LaserRunConfig) -> EvalResult:
    """Full ranking of all items by cosine (Eqs. 2-3) with the shared evaluator."""
    histories = [ds.history_and_target(int(u), split)[0] for u in users]
    h = F.normalize(model.embed_users(histories, cfg.eval_batch_size).float(), dim=-1)
    items = F.normalize(table.float(), dim=-1)
    return evaluate(lambda pos: h[torch.as_tensor(pos, device=h.device)] @ items.T, users,
                    ds.targets(split, users), ties=cfg.ties, n_items=ds.n_items)


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def train_laser(cfg: LaserRunConfig, out_dir: str | Path, replace_stale: bool = False) -> dict:
    """Train (or resume) one Laser run into ``out_dir``; returns the metrics.json record.

    ``replace_stale``: a checkpoint or metrics.json of another config or data set is removed
    (the run starts over) instead of refused.
    """
    return run_trainer(cfg, out_dir, replace_stale, _train)


def _train(cfg: LaserRunConfig, opened: OpenedRun) -> dict:
    if opened.retest is not None:
        return _retest(cfg, opened)
    run, ckpt, device, ds = opened.run, opened.checkpoint, opened.device, opened.data
    model = build_model(cfg, ds, device)
    rows = training_rows(ds, training_users(ds, cfg), cfg.min_train_history)
    valid_users = eval_users(ds, "valid", cfg)
    steps_per_epoch = math.ceil(len(rows[0]) / cfg.optim.batch_size / cfg.optim.grad_accumulation)
    log.info("Laser on %s: backbone %s (%s), %d training rows, %d validation users, device %s",
             ds.name, cfg.backbone, model.backbone.describe()["dtype"], len(rows[0]), valid_users.shape[0], device)

    ph = cfg.phases
    carry = cfg.optim.phase2_optimizer == "carry"
    phase1_steps, phase2_steps = steps_per_epoch * max(ph.phase1_max_epochs, 1), steps_per_epoch * ph.phase2_epochs
    state = TrainState()
    # carry (RecFormer): one optimiser and one schedule over both phases; fresh: one per phase
    opt, sched = make_optimizer(cfg, model, phase1_steps + (phase2_steps if carry else 0))
    table: torch.Tensor | None = None
    best1: dict | None = None
    best2: dict | None = None
    if ckpt is not None:
        try:
            state = TrainState(**ckpt["state"])
            model.load_trainable_state(ckpt["trainable"])
            if state.phase == "phase2" and (not carry or state.best1_epoch < 0):
                opt, sched = make_optimizer(cfg, model, phase2_steps)
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None and ckpt.get("scheduler"):
                sched.load_state_dict(ckpt["scheduler"])
            table = None if ckpt["table"] is None else ckpt["table"].to(device)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a layout of an earlier version of this trainer
            if isinstance(err, torch.OutOfMemoryError) or "CUDA" in str(err):  # the machine, not the checkpoint
                raise
            raise ValueError(f"{run.checkpoint_path}: cannot be resumed by this version of the Laser trainer, probably "
                             f"written by an earlier one ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else err!r}); remove it (or the run folder) to "
                             "train the run again") from err
        if "backbone" in ckpt:  # its item table, its validation scores and its selection came from that backbone
            # (also the workflow's retest: a finished run rerun with other test users from its final checkpoint)
            check_same_backbone(model, ckpt["backbone"], run.checkpoint_path,
                                "test it" if state.phase == "done" else "resume it")
        best1, best2 = ckpt["best1"], ckpt["best2"]
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s: %s, epoch %d", run.checkpoint_path, state.phase, state.epoch)
    t_start = time.perf_counter() - state.wall_time_s

    def checkpoint() -> None:
        state.wall_time_s = time.perf_counter() - t_start
        run.save_checkpoint(state=asdict(state), trainable=model.trainable_state(), optimizer=opt.state_dict(),
                            scheduler=None if sched is None else sched.state_dict(),
                            table=None if table is None else table.cpu(), best1=best1, best2=best2,
                            backbone=model.backbone.describe())

    def validate(tab: torch.Tensor) -> dict:
        return evaluate_split(model, ds, valid_users, "valid", tab, cfg).metrics

    curve_users = eval_users(ds, "test", cfg, cap=cfg.test_curve_users) if cfg.test_curve_users else None

    def curve(tab: torch.Tensor) -> dict:
        """Test metrics of ``test_curve_users`` seeded users for the learning curve; never used to select."""
        if curve_users is None:
            return {}
        return {"test": {**evaluate_split(model, ds, curve_users, "test", tab, cfg).metrics,
                         "n": int(curve_users.shape[0])}}

    if not rows[0]:
        log.warning("no training rows (train_user_fraction 0?): the model is evaluated as is (zero-shot)")
    if state.phase == "start":
        state.phase = "phase1" if ph.phase1 and ph.phase1_max_epochs > 0 and rows[0] else "to-phase2"

    # ---- phase 1: refresh every epoch, select on validation NDCG@10 --------------------
    while state.phase == "phase1":
        e = state.epoch
        table = refresh_items(model, ds.n_items, cfg, state, f"phase 1, epoch {e}")
        if state.untrained_valid is None:
            state.untrained_valid = validate(table)
            log.info("untrained model: valid %s", _fmt(state.untrained_valid))
        losses = run_epoch(model, rows, table, opt, sched, cfg, 1, e)
        valid = validate(table)
        state.history.append({"phase": 1, "epoch": e, **losses, "valid": valid, **curve(table)})
        log.info("phase 1 epoch %d: loss %.4f (iic %.4f, lb %.4f), valid %s", e, losses["loss"],
                 losses["loss_iic"], losses["loss_lb"], _fmt(valid))
        if valid[SELECT_METRIC] > state.best1_score:
            state.best1_epoch, state.best1_score, state.bad_epochs = e, valid[SELECT_METRIC], 0
            best1 = {"trainable": model.trainable_state(), "table": table.cpu()}
        else:
            state.bad_epochs += 1
        state.epoch += 1
        if state.bad_epochs >= ph.phase1_patience or state.epoch >= ph.phase1_max_epochs:
            log.info("phase 1 ends after epoch %d: best epoch %d (valid %s %.4f)", e, state.best1_epoch,
                     SELECT_METRIC, state.best1_score)
            state.phase = "to-phase2"
        checkpoint()

    # ---- between the phases: fix the item table ---------------------------------------
    if state.phase == "to-phase2":
        if best1 is not None:  # the best phase-1 epoch's weights and its item table; its score is the bar
            model.load_trainable_state(best1["trainable"])
            table = best1["table"].to(device)
            state.best2_score = state.best1_score
        else:  # "w/o phase 1": item embeddings from the untrained (or init_from) model
            table = refresh_items(model, ds.n_items, cfg, state, "untrained model, phase 1 skipped")
            state.untrained_valid = validate(table)
            log.info("untrained model: valid %s", _fmt(state.untrained_valid))
        state.phase, state.epoch = ("phase2" if ph.phase2 and ph.phase2_epochs > 0 and rows[0] else "final"), 0
        if not carry or best1 is None:  # nothing to carry without phase 1
            opt, sched = make_optimizer(cfg, model, phase2_steps)
        checkpoint()

    # ---- phase 2: item table frozen ----------------------------------------------------
    while state.phase == "phase2":
        e = state.epoch
        losses = run_epoch(model, rows, table, opt, sched, cfg, 2, e)
        valid = validate(table)
        state.history.append({"phase": 2, "epoch": e, **losses, "valid": valid, **curve(table)})
        log.info("phase 2 epoch %d: loss %.4f (iic %.4f, lb %.4f), valid %s", e, losses["loss"],
                 losses["loss_iic"], losses["loss_lb"], _fmt(valid))
        if valid[SELECT_METRIC] > state.best2_score:
            state.best2_epoch, state.best2_score = e, valid[SELECT_METRIC]
            best2 = {"trainable": model.trainable_state()}
        state.epoch += 1
        if state.epoch >= ph.phase2_epochs:
            state.phase = "final"
        checkpoint()

    return _finish(cfg, run, ds, model, table, best1, best2, state, device, t_start, checkpoint, len(rows[0]))


def _finish(cfg, run: RunFolder, ds, model, table, best1, best2, state, device, t_start, checkpoint,
            n_rows: int) -> dict:
    """Restore the selected weights, evaluate valid + test, write the run folder."""
    if best2 is not None:
        model.load_trainable_state(best2["trainable"])
        best_epoch, best_phase = state.best2_epoch, 2
    elif best1 is not None:
        model.load_trainable_state(best1["trainable"])
        best_epoch, best_phase = state.best1_epoch, 1
    else:  # no training at all (zero-shot)
        best_epoch, best_phase = -1, 0
    results = {split: evaluate_split(model, ds, eval_users(ds, split, cfg), split, table, cfg)
               for split in ("valid", "test")}
    log.info("reported (phase %d, epoch %d): valid %s | test %s", best_phase, best_epoch,
             _fmt(results["valid"].metrics), _fmt(results["test"].metrics))
    state.phase = "done"
    checkpoint()
    record = {
        "method": method_name(cfg),
        "dataset": ds.name,
        "seed": cfg.seed,
        "best_epoch": best_epoch,
        "best_phase": best_phase,
        "phase1_best_epoch": state.best1_epoch,
        "ties": cfg.ties,
        "wall_time_s": time.perf_counter() - t_start,
        "backbone": model.backbone.describe(),
        "stand_in_backbone": stand_in(method_name(cfg), cfg.backbone) is not None,
        "item_refreshes": state.refreshes,
        "untrained_valid": state.untrained_valid,
        "history": state.history,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_rows": n_rows,
    }
    blob = {"trainable": model.trainable_state(), "config": run.training_config(),
            "backbone": model.backbone.identity()}
    return run.write_outputs(results, blob, record, device)


def _retest(cfg: LaserRunConfig, opened: OpenedRun) -> dict:
    """A finished run tested on this config's test users (another ``max_eval_users``; nothing else differs:
    ``train.scaffold`` "Retest"): its selected weights and item table come from its final checkpoint, the
    ranks of users it already tested are kept, the others ranked now. Training history and validation stay."""
    run, ckpt, device, ds, old = opened.run, opened.checkpoint, opened.device, opened.data, opened.retest
    if ckpt["state"]["phase"] != "done":
        raise ValueError(f"{run.checkpoint_path}: not the final checkpoint of the finished run (phase "
                         f"{ckpt['state']['phase']!r}); delete metrics.json to train again")
    if not (run.path / RANKS_FILE).exists():
        raise ValueError(f"{run.path / RANKS_FILE}: missing; a retest keeps the finished run's ranks (delete "
                         "metrics.json to train again)")
    t0 = time.perf_counter()
    model = build_model(cfg, ds, device)
    model.load_trainable_state(ckpt["trainable"])
    table = ckpt["table"].to(device)
    check_same_backbone(model, old.get("backbone"), run.path, "retest it")
    kept = load_ranks(run.path / RANKS_FILE)
    users = eval_users(ds, "test", cfg)
    fresh = int((~np.isin(users, kept["test"].users)).sum())
    log.info("retest: %d test users, %d of them ranked before", users.shape[0], users.shape[0] - fresh)
    test = reuse_ranks(kept["test"], users, ds.targets("test", users),
                       lambda rest: evaluate_split(model, ds, rest, "test", table, cfg))
    log.info("retested: test %s", _fmt(test.metrics))
    first = old.get("retested") or {}  # the training's commit, device and finish time, kept over repeated retests
    # old's provenance (config, hashes, commit, versions, device) is replaced by this call's in write_metrics
    record = {**old, "retested": {"from_resume_hash": old["resume_hash"],
                                  "trained_at_commit": first.get("trained_at_commit", old.get("git_commit")),
                                  "trained_on": first.get("trained_on", old.get("device")),
                                  "trained_finished_at": first.get("trained_finished_at", old.get("finished_at")),
                                  "test_users_before": old["test"]["n"], "ranked_now": fresh,
                                  "wall_time_s": time.perf_counter() - t0}}
    # model.pt stays as it is (the same weights; a rewrite would change its digest, which runs that start from it
    # record). The checkpoint moves to this config's hash first (with its training hash, which a checkpoint written
    # before 2026-12-07 lacks), then the old metrics.json goes: kept beside the new ranks by a kill, it read as
    # finished under the old cap and reported other users than ranks.npz held. A kill at any point leaves a final
    # checkpoint that the next call under either cap finishes (RunFolder.retest_source / load_checkpoint).
    run.save_checkpoint(**ckpt)  # its hash, RNG and fingerprint keys are replaced by this run's
    (run.path / METRICS_FILE).unlink()
    run.write_ranks({"valid": kept["valid"], "test": test})
    return run.write_metrics({**record, "valid": kept["valid"].metrics, "test": test.metrics}, device)


def check_same_backbone(model: LaserModel, recorded: dict | None, where: Path, action: str) -> None:
    """Refuse to resume or test a run with a backbone whose numbers differ from the one ``recorded`` (bf16 autocast on
    a CPU with bf16 units, fp32 on one without; bf16 weights on CUDA; another model): the run's item table, its
    validation scores and so its selection came from that one. Paths do not count (``same_numerics``)."""
    if same_numerics(model.backbone.describe()) != same_numerics(recorded):
        raise ValueError(f"{where}: the backbone here ({model.backbone.describe()}) is not the one the run was trained "
                         f"and tested with ({recorded}); {action} where it was trained (or set backbone_precision "
                         "to match), or train again")


def method_name(cfg: LaserRunConfig) -> str:
    """``cfg.method``, else the registered Laser method whose paper backbone this is, else "laser"."""
    if cfg.method:
        return cfg.method
    return next((m.name for m in METHODS.values() if m.trainer.name == "laser" and m.paper_backbone == cfg.backbone),
                "laser")


def _fmt(m: dict) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in m.items() if k in ("recall@10", "ndcg@10", "mrr"))
