"""The trainer shared by the ID-based recommenders (RecBole protocol under UniSRec's settings).

Adam over shuffled training instances, validation NDCG@10 after each epoch, early stopping with
patience 10, test at the best validation epoch; scored by the shared full-ranking evaluator.
Run folder, resume and outputs follow :mod:`laser_repro.train.scaffold`: a checkpoint after
every epoch, and running the same command again resumes from it and ends with identical
metrics (every epoch also re-seeds its shuffling, dropout and masking from (seed, epoch)).

Outputs in the run folder: ``metrics.json`` (runinfo schema), ``ranks.npz`` (valid, test),
``model.pt`` (best-epoch weights, read by :func:`laser_repro.idrec.encoder.load_collaborative_encoder`),
``checkpoint.pt`` and ``train.log``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from laser_repro.config import to_dict
from laser_repro.data.dataset import SeqDataset
from laser_repro.data.splits import sample_train_users
from laser_repro.eval.evaluator import EvalResult, evaluate
from laser_repro.idrec.base import SeqRecModel, pad_histories
from laser_repro.idrec.config import IDRecRunConfig
from laser_repro.idrec.registry import build_model, features_of, model_config, uses_text
from laser_repro.train.scaffold import (
    OpenedRun,
    RunFolder,
    check_loss,
    load_torch,
    run_trainer,
    seed_everything,
    set_rng_state,
)

log = logging.getLogger("laser_repro.idrec")
TEXT_FILE = "text_features.npz"
KNOWLEDGE_FILE = "knowledge_features.npz"


@dataclass
class TrainState:
    """Everything besides weights and optimizer that a resumed run needs."""

    epoch: int = 0  # completed epochs
    best_epoch: int = 0  # 0 = the untrained model
    best_score: float = float("-inf")
    bad_evals: int = 0  # evaluations since the current stage's best (early stopping)
    stage_best: float = float("-inf")  # the best score since the current training stage began
    stopped: bool = False
    elapsed_s: float = 0.0  # time spent in training epochs (all sessions)
    wall_s: float = 0.0  # wall time of all sessions up to the last checkpoint
    history: list[dict] = field(default_factory=list)
    pretrain: dict | None = None  # what pre-training on source data sets ran (ZESRec), once done
    pretraining: dict | None = None  # an unfinished pre-training's progress (epochs done, losses, time)

    @classmethod
    def restore(cls, saved: dict) -> "TrainState":
        """The state of a checkpoint; one written before ``stage_best`` existed counts against ``best_score``
        (what its early stopping did then)."""
        return cls(**{"stage_best": saved.get("best_score", float("-inf")), **saved})

    def new_stage(self) -> None:
        """A new training stage (RecGURU's BPR after reconstruction): early stopping counts against the
        stage's own best from here, while the selected epoch stays the best validated one."""
        self.bad_evals, self.stage_best = 0, float("-inf")

    def observe(self, epoch: int, score: float) -> bool:
        """Record a validation ``score``; True when it is the best so far (the epoch to keep)."""
        best = score > self.best_score
        if best:
            self.best_score, self.best_epoch = score, epoch
        if score > self.stage_best:
            self.stage_best, self.bad_evals = score, 0
        else:
            self.bad_evals += 1
        return best


def resolved_config(cfg: IDRecRunConfig) -> dict:
    """The run config with the model's full config (defaults filled in): what metrics.json records."""
    out = to_dict(cfg)
    out["model_config"] = to_dict(model_config(cfg.model, cfg.model_config))
    return out


def eval_inputs(ds: SeqDataset, split: str, history_len: int,
                with_users: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, targets, right-padded history tokens) of every user with a ``split`` target; ``with_users``
    appends each row's user index as a last column (models with ``needs_users``: KAR)."""
    users = ds.eval_users(split)
    tokens = pad_histories([ds.history_and_target(int(u), split)[0] for u in users], history_len)
    if with_users:
        tokens = np.concatenate([tokens, users[:, None].astype(np.int64)], axis=1)
    return users, ds.targets(split, users), tokens


def training_instances(model: SeqRecModel, ds: SeqDataset, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model's training instances of ``users``; with ``needs_users``, each row's user index appended."""
    if not getattr(model, "needs_users", False):
        return model.make_instances([ds.train_sequence(int(u)) for u in users])
    parts = [model.make_instances([ds.train_sequence(int(u))]) for u in users]
    X = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 1), np.int64)
    col = np.repeat(users.astype(np.int64), [p[0].shape[0] for p in parts])
    return np.concatenate([X, col[:, None]], axis=1), np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)


def knowledge_features(ds: SeqDataset, cfg: IDRecRunConfig, out_dir: Path, device: torch.device) -> dict:
    """KAR's encoded knowledge (items, users): mean-pooled ``text_encoder`` states, cached in the run folder (and in
    ``feature_cache`` when set)."""
    from laser_repro.idrec.text_features import encode_cached
    from laser_repro.kar.knowledge import ENCODER_MAX_TOKENS, stored_texts

    if not cfg.knowledge_file:
        raise ValueError("knowledge_file: required for KAR (write one with `laser-repro kar-knowledge`)")
    items, users = stored_texts(ds, cfg.knowledge_file, cfg.knowledge_generator)
    vecs = encode_cached(out_dir / KNOWLEDGE_FILE, items + users, cfg.text_encoder, cfg.text_batch_size, device,
                         pooling="mean", max_tokens=ENCODER_MAX_TOKENS, shared=shared_cache(cfg))
    return {"item_knowledge": torch.from_numpy(vecs[: len(items)]), "user_knowledge": torch.from_numpy(vecs[len(items):])}


def evaluate_model(
    model: SeqRecModel, inputs: tuple[np.ndarray, np.ndarray, np.ndarray], device: torch.device, batch_size: int, ties: str
) -> EvalResult:
    """Full-ranking evaluation of ``model`` on prebuilt ``eval_inputs``."""
    users, targets, tokens = inputs
    was_training = model.training
    model.eval()
    try:
        return evaluate(
            lambda pos: model.full_scores(torch.as_tensor(tokens[pos], device=device)),
            users, targets, batch_size=batch_size, ties=ties, n_items=model.n_items,
        )
    finally:
        model.train(was_training)


def item_text_features(ds: SeqDataset, cfg: IDRecRunConfig, out_dir: Path, device: torch.device) -> torch.Tensor:
    """FDSA's and ZESRec's item-text features, cached in the run folder (and in ``feature_cache`` when set)."""
    from laser_repro.idrec.text_features import encode_cached, item_text

    texts = [item_text(it) for it in ds.items]
    return torch.from_numpy(encode_cached(out_dir / TEXT_FILE, texts, cfg.text_encoder, cfg.text_batch_size, device,
                                          shared=shared_cache(cfg)))


def shared_cache(cfg: IDRecRunConfig) -> Path | None:
    """The folder runs share for encoded texts (``feature_cache``), if set."""
    return Path(cfg.feature_cache) if cfg.feature_cache else None


ITEM_SPECIFIC = ("text_features",)  # per-data-set tensors a pre-trained run never passes on


def init_weights_from(model: SeqRecModel, cfg: IDRecRunConfig) -> list[str]:
    """Copy a finished run's best weights (``init_from``) into ``model``; returns the copied names.

    The source must be a run of the same model with the same model config; item-specific tensors
    (:data:`ITEM_SPECIFIC`) stay this data set's own. Any other shape mismatch (an item-ID table of
    another data set) is an error naming the tensor.
    """
    path = Path(cfg.init_from) / "model.pt"
    if not path.exists():
        raise ValueError(f"init_from: {path} not found (expected a finished train-idrec run folder)")
    blob = load_torch(path, "a train-idrec run's model.pt", keys=("model", "state_dict"))
    if blob.get("model") != cfg.model:
        raise ValueError(f"init_from: {path} is a {blob.get('model')!r} run; this run trains {cfg.model!r}")
    mine, theirs = to_dict(model_config(cfg.model, cfg.model_config)), blob.get("model_config") or {}
    differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differ:  # same names, other layers (ZESRec's item_net) would leave this run's own layers untouched
        raise ValueError(f"init_from: {path} was trained with another model config ({', '.join(differ)}: "
                         f"{[theirs.get(k) for k in differ]}, this run {[mine.get(k) for k in differ]})")
    own = model.state_dict()
    copied = []
    for name, value in blob["state_dict"].items():
        if name.endswith(ITEM_SPECIFIC) or name not in own:
            continue
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(f"init_from: {path}: tensor {name} has shape {tuple(value.shape)}, this model's is "
                             f"{tuple(own[name].shape)} (item-ID tables do not transfer across data sets)")
        own[name] = value
        copied.append(name)
    model.load_state_dict(own)
    log.info("initialised %d tensors from %s", len(copied), path)
    return copied


def training_users(ds: SeqDataset, cfg: IDRecRunConfig, min_items: int = 2) -> np.ndarray:
    """Users whose training sequences make the instances: at least ``min_items`` training items (the model's
    ``min_train_items``); Figure 3: a seeded fraction."""
    if cfg.train_user_fraction >= 1.0:
        return np.flatnonzero(ds.train_len >= min_items)
    return sample_train_users(ds, cfg.train_user_fraction, cfg.seed)


def train_idrec(cfg: IDRecRunConfig, out_dir: str | Path, replace_stale: bool = False) -> dict:
    """Train (or resume) one ID-model run into ``out_dir``; returns the metrics.json record.

    ``replace_stale``: a checkpoint or metrics.json of another config or data set is removed
    (the run starts over) instead of refused.
    """
    return run_trainer(cfg, out_dir, replace_stale, _train, config_of=resolved_config,
                       own_files=(TEXT_FILE, KNOWLEDGE_FILE))


def _train(cfg: IDRecRunConfig, opened: OpenedRun) -> dict:
    t_start = time.perf_counter()
    run, device, ds, out_dir = opened.run, opened.device, opened.data, opened.run.path
    feats = item_text_features(ds, cfg, out_dir, device) if uses_text(cfg.model) else None
    more = knowledge_features(ds, cfg, out_dir, device) if "item_knowledge" in features_of(cfg.model) else {}
    seed_everything(cfg.seed)
    model = build_model(cfg.model, ds.n_items, cfg.model_config, text_features=feats, **more).to(device)
    if cfg.init_from:
        init_weights_from(model, cfg)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam

    def new_optimizer() -> torch.optim.Optimizer:
        return opt_cls(model.param_groups(cfg.weight_decay), lr=cfg.lr, **model.optimizer_options())

    optimizer = new_optimizer()
    users = training_users(ds, cfg, model.min_train_items)
    X, y = training_instances(model, ds, users)
    with_users = getattr(model, "needs_users", False)
    valid_in = eval_inputs(ds, "valid", model.history_len, with_users)
    log.info(
        "%s on %s: %d items, %d training users, %d training instances, device %s, config %s",
        cfg.model, ds.name, ds.n_items, users.shape[0], X.shape[0], device, run.config_hash,
    )

    state, best_state, wall_before = TrainState(), None, 0.0
    blob = opened.checkpoint
    if blob is not None:
        try:
            model.load_state_dict(blob["model"])
        except RuntimeError as err:  # the same config, other layers: a checkpoint of an earlier version of the model
            raise ValueError(f"{run.checkpoint_path}: written by an earlier version of {cfg.model} whose layers "
                             f"differ ({str(err).splitlines()[0]}); remove the run folder to train it again") from None
        optimizer.load_state_dict(blob["optimizer"])
        best_state = None if blob["best_state"] is None else {k: v.to(device) for k, v in blob["best_state"].items()}
        state = TrainState.restore(blob["state"])
        if "rng" in blob:  # checkpoints written before the shared scaffolding carry none
            set_rng_state(blob["rng"])
        wall_before = state.wall_s
        if state.pretrain is not None and not state.pretrain.get("merged"):  # sources one after another (< 2026-12-07)
            raise ValueError(f"{run.checkpoint_path}: pre-trained on its sources one after another, before they were "
                             "merged; remove the run folder to train it again")
        log.info("resumed from %s after epoch %d (best epoch %d)", run.checkpoint_path, state.epoch, state.best_epoch)

    if cfg.pretrain_datasets and state.pretrain is None:  # before the target's first epoch (checkpointed each epoch)
        from laser_repro.idrec.pretrain import pretrain, with_target_items

        def save_pretraining(progress: dict, pretrain_optimizer: dict) -> None:
            state.pretraining, state.wall_s = progress, wall_before + (time.perf_counter() - t_start)
            run.save_checkpoint(model=with_target_items(model.state_dict(), feats), optimizer=optimizer.state_dict(),
                                best_state=best_state, state=asdict(state), pretrain_optimizer=pretrain_optimizer)

        resume = None if state.pretraining is None else (state.pretraining, blob["pretrain_optimizer"])
        state.pretrain = pretrain(model, cfg, out_dir, device, feats, resume, save_pretraining)
        state.pretraining, state.wall_s = None, wall_before + (time.perf_counter() - t_start)
        run.save_checkpoint(model=model.state_dict(), optimizer=optimizer.state_dict(), best_state=best_state,
                            state=asdict(state))
    if not model.validates(cfg.max_epochs):
        log.warning("max_epochs %d ends before %s's validated stage (its ranking part is then untrained): only the "
                    "last epoch is validated and reported", cfg.max_epochs, cfg.model)
    if X.shape[0] == 0:
        log.info("no training instances (train_user_fraction=%s): the model stays untrained", cfg.train_user_fraction)
        state.stopped = True
    while not state.stopped and state.epoch < cfg.max_epochs:
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        if model.start_epoch(epoch):  # a new stage (RecGURU's BPR): a fresh optimiser, as its official opt_rec
            state.new_stage()
            optimizer = new_optimizer()
        loss = _run_epoch(model, optimizer, X, y, cfg, epoch, device, out_dir,
                          first_step=(epoch - 1) * math.ceil(X.shape[0] / cfg.batch_size))
        record: dict[str, Any] = {"epoch": epoch, "loss": loss}
        if (epoch % cfg.eval_every == 0 and model.validates(epoch)) or epoch == cfg.max_epochs:
            valid = evaluate_model(model, valid_in, device, cfg.eval_batch_size, cfg.ties).metrics
            score = valid[cfg.select_metric]
            record["valid"] = valid
            if state.observe(epoch, score):
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state.stopped = state.bad_evals >= cfg.patience and model.validates(epoch)
        record["time_s"] = time.perf_counter() - t0
        state.history.append(record)
        state.epoch = epoch
        state.elapsed_s += record["time_s"]
        v = record.get("valid", {})
        log.info(
            "epoch %d loss %.5f valid %s %.5f (best %.5f @ %d) %.1fs",
            epoch, loss, cfg.select_metric, v.get(cfg.select_metric, float("nan")),
            state.best_score, state.best_epoch, record["time_s"],
        )
        state.wall_s = wall_before + (time.perf_counter() - t_start)
        run.save_checkpoint(model=model.state_dict(), optimizer=optimizer.state_dict(), best_state=best_state,
                            state=asdict(state))
    if state.stopped and state.bad_evals >= cfg.patience:
        log.info("early stop after epoch %d: no better validation %s for %d evaluations", state.epoch, cfg.select_metric, cfg.patience)
    return _finish(cfg, run, ds, model, best_state, state, device, valid_in, users, X, wall_before, t_start)


def _run_epoch(model, optimizer, X: np.ndarray, y: np.ndarray, cfg: IDRecRunConfig, epoch: int, device,
               out_dir: Path, first_step: int = 0) -> float:
    """One pass over the shuffled instances; every random draw is seeded by (seed, epoch). ``first_step``:
    optimiser steps before this epoch (the model's learning-rate schedule counts from the run's start)."""
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout
    rng = np.random.default_rng([cfg.seed, epoch])  # order and cloze masks
    order = rng.permutation(X.shape[0])
    model.train()
    model.start_epoch(epoch)  # (again: idempotent; sets the stage after a resume too)
    total, n = 0.0, 0
    batches = range(0, X.shape[0], cfg.batch_size)
    for step, start in enumerate(tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not cfg.progress), 1):
        idx = order[start : start + cfg.batch_size]
        tokens = torch.as_tensor(X[idx], device=device)
        targets = torch.as_tensor(y[idx], device=device)
        lr = model.learning_rate(first_step + step, cfg.lr)
        loss = model.batch_loss(tokens, targets, rng)
        check_loss(loss, f"{out_dir}: epoch {epoch}, step {step} (lr {lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if model.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), model.max_grad_norm)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        total += float(loss.detach()) * idx.shape[0]
        n += idx.shape[0]
    return total / max(n, 1)


def _finish(cfg, run: RunFolder, ds, model, best_state, state, device, valid_in, users, X, wall_before, t_start) -> dict:
    """Load the best epoch, evaluate valid and test, write model.pt, ranks.npz and metrics.json."""
    if best_state is not None:
        model.load_state_dict(best_state)
    results = {
        "valid": evaluate_model(model, valid_in, device, cfg.eval_batch_size, cfg.ties),
        "test": evaluate_model(model, eval_inputs(ds, "test", model.history_len, getattr(model, "needs_users", False)),
                               device, cfg.eval_batch_size, cfg.ties),
    }
    blob = {
        "model": cfg.model,
        "n_items": ds.n_items,
        "model_config": run.config["model_config"],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    record = {
        "method": cfg.model,
        "dataset": ds.name,
        "seed": cfg.seed,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "ties": cfg.ties,
        "train_users": int(users.shape[0]),
        "train_instances": int(X.shape[0]),
        "history": state.history,
        **({"pretrain": state.pretrain} if state.pretrain else {}),
        "train_time_s": state.elapsed_s,
        "wall_time_s": wall_before + (time.perf_counter() - t_start),  # all sessions, setup and evaluation included
    }
    record = run.write_outputs(results, blob, record, device)
    t = results["test"].metrics
    log.info(
        "best epoch %d: test recall@10 %.4f ndcg@10 %.4f mrr %.4f (n=%d) -> %s",
        state.best_epoch, t["recall@10"], t["ndcg@10"], t["mrr"], t["n"], run.path,
    )
    return record
