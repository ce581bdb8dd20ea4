"""RECFORMER training: optional pre-training, then the official code's two-stage fine-tuning.

Pre-training (``pretrain.steps`` > 0, on ``pretrain.datasets``): per sampled user, a target
position from the second half of the training sequence; the items before it are the input and
the target item alone the positive. Loss = in-batch item-item contrastive (cosine / tau) +
``mlm_weight`` x masked-token loss (:func:`pretrain_losses`); word embeddings frozen.

Fine-tuning (official ``finetune.py``): one example per training user per epoch, its target
position uniform over the training sequence (position 0: an empty history). Cross-entropy of
cosine / tau against ALL items, whose table is encoded without gradients (frozen).
* Stage 1: items re-encoded every epoch; validation every ``eval_every`` epochs; the best
  validation NDCG@10 is kept; stop after ``stage1_patience`` validations without a better one.
* Stage 2: stage 1's best weights and item table restored, no more re-encoding, validation
  every ``eval_every`` epochs, ``stage2_patience``; stage 1's best stays the bar; the same AdamW
  (official parameter groups) and linear schedule (warm-up, then decay over ``schedule_epochs``;
  :func:`linear_schedule`) go on.
The selected model is tested with the shared full-ranking evaluator. Run folder, checkpoints
(every epoch) and exact resume: :mod:`laser_repro.train.scaffold`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from laser_repro.data.dataset import SeqDataset, load_dataset
from laser_repro.data.splits import run_eval_users, sample_train_users, seeded_subset
from laser_repro.eval.evaluator import EvalResult, evaluate
from laser_repro.recformer.config import RecformerRunConfig
from laser_repro.recformer.model import Built, Recformer, build, cosine_logits
from laser_repro.recformer.tokenization import TYPE_KEY, TYPE_VALUE, KeyValueTokenizer
from laser_repro.train.scaffold import (
    RunFolder,
    check_loss,
    check_numerics,
    decay_groups,
    cpu_autocast,
    load_torch,
    OpenedRun,
    run_trainer,
    set_rng_state,
)

log = logging.getLogger("laser_repro.recformer")
SELECT_METRIC = "ndcg@10"


@dataclass
class TrainState:
    stage: str = "start"  # start | pretrain | stage1 | to-stage2 | stage2 | final
    epoch: int = 0  # completed epochs in the current stage
    pretrain_steps: int = 0
    best1_epoch: int = -1
    best1_score: float = -1.0
    best2_epoch: int = -1
    best2_score: float = -1.0
    bad_evals: int = 0
    item_encodings: int = 0
    wall_time_s: float = 0.0
    history: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# pieces (pure where possible)
# ---------------------------------------------------------------------------------------
def finetune_examples(ds: SeqDataset, users: np.ndarray, rng: np.random.Generator) -> tuple[list, np.ndarray]:
    """One (history, target) per user: target position uniform over the user's training sequence."""
    hist, targets = [], []
    for u in users:
        seq = ds.train_sequence(int(u))
        t = int(rng.integers(0, seq.shape[0]))
        hist.append(seq[:t])
        targets.append(int(seq[t]))
    return hist, np.asarray(targets, dtype=np.int64)


def pretrain_examples(ds: SeqDataset, users: np.ndarray, rng: np.random.Generator) -> tuple[list, list]:
    """(history, positive item) per user: the target position uniform over ``(n - 1) // 2 .. n - 1`` (the
    official collator's ``randint(start, item_seq_len - 1)``; the history may be empty)."""
    hist, pos = [], []
    for u in users:
        seq = ds.train_sequence(int(u))
        t = int(rng.integers((seq.shape[0] - 1) // 2, seq.shape[0]))
        hist.append(seq[:t])
        pos.append(int(seq[t]))
    return hist, pos


def mlm_mask(batch: dict[str, torch.Tensor], probability: float, vocab: int, mask_id: int,
             rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of key/value tokens: (masked input ids, labels with -100 where not predicted)."""
    ids = batch["input_ids"]
    text = (batch["token_type_ids"] == TYPE_KEY) | (batch["token_type_ids"] == TYPE_VALUE)
    draw = torch.as_tensor(rng.random((3, *ids.shape)), device=ids.device)
    chosen = text & (draw[0] < probability)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    out = ids.clone()
    to_mask = chosen & (draw[1] < 0.8)
    to_random = chosen & ~to_mask & (draw[2] < 0.5)
    out[to_mask] = mask_id
    random_ids = torch.as_tensor(rng.integers(0, vocab, ids.shape), device=ids.device)
    out[to_random] = random_ids[to_random]
    return out, labels


def pretrain_losses(model: Recformer, tok: KeyValueTokenizer, histories: Sequence, positives: Sequence[int],
                    cfg: RecformerRunConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Item-item contrastive (in batch) and MLM losses of one pre-training batch, as the official
    ``RecformerForPretraining``: IIC between the clean sequences and the clean positive items; MLM on a masked
    copy of each, ``mlm_weight`` times each (four forwards)."""
    dev = next(model.parameters()).device
    seqs = tok.batch([tok.encode(h) for h in histories], dev)
    items = tok.batch([tok.encode([p]) for p in positives], dev)
    logits = cosine_logits(model(seqs), model(items), cfg.tau)
    iic = F.cross_entropy(logits, torch.arange(len(positives), device=dev))
    mlm = [masked_lm_loss(model, batch, cfg, int(tok.tokenizer.mask_token_id), rng) for batch in (seqs, items)]
    return {"loss": iic + cfg.pretrain.mlm_weight * (mlm[0] + mlm[1]), "iic": iic, "mlm": mlm[0], "mlm_item": mlm[1]}


def masked_lm_loss(model: Recformer, batch: dict[str, torch.Tensor], cfg: RecformerRunConfig, mask_id: int,
                   rng: np.random.Generator) -> torch.Tensor:
    """Cross-entropy of the masked key/value tokens of ``batch`` (a masked copy through the encoder)."""
    masked, labels = mlm_mask(batch, cfg.pretrain.mlm_probability, model.word_embeddings.num_embeddings, mask_id, rng)
    states = model.states({**batch, "input_ids": masked})
    picked = labels != -100
    return (F.cross_entropy(model.mlm_logits(states[picked]), labels[picked]) if bool(picked.any())
            else states.sum() * 0.0)


@torch.no_grad()
def encode_items(model: Recformer, tok: KeyValueTokenizer, n_items: int, batch_size: int, progress: bool) -> torch.Tensor:
    """Every item as a one-item sequence (eval mode, no gradients): the frozen item table."""
    was = model.training
    model.eval()
    order = np.argsort([len(tok.item_tokens(i)[0]) for i in range(n_items)], kind="stable")
    table = None
    for s in tqdm(range(0, n_items, batch_size), desc="items", leave=False, disable=not progress):
        idx = order[s : s + batch_size]
        vecs = model(tok.batch([tok.encode([int(i)]) for i in idx], next(model.parameters()).device)).float()
        table = vecs.new_zeros(n_items, vecs.shape[1]) if table is None else table
        table[torch.as_tensor(idx, device=vecs.device)] = vecs
    model.train(was)
    return table


@torch.no_grad()
def evaluate_split(model: Recformer, tok: KeyValueTokenizer, ds: SeqDataset, users: np.ndarray, split: str,
                   table: torch.Tensor, cfg: RecformerRunConfig) -> EvalResult:
    """Full ranking of all items by cosine with the shared evaluator."""
    was = model.training
    model.eval()
    dev = table.device
    histories = [ds.history_and_target(int(u), split)[0] for u in users]
    vecs = [model(tok.batch([tok.encode(h) for h in histories[s : s + cfg.eval_batch_size]], dev)).float()
            for s in range(0, len(histories), cfg.eval_batch_size)]
    user_vecs = torch.cat(vecs) if vecs else table.new_zeros(0, table.shape[1])
    model.train(was)
    return evaluate(lambda pos: cosine_logits(user_vecs[torch.as_tensor(pos, device=dev)], table, cfg.tau),
                    users, ds.targets(split, users), ties=cfg.ties, n_items=ds.n_items)


def linear_schedule(warmup: int, total: int):
    """The official ``optimization.py`` schedule as a LambdaLR factor of optimiser step ``step``: ``step / warmup``
    during the warm-up (so the first step's lr is 0), then ``1 - step / total``, floored at 0."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, 1.0 - step / max(1, total))
    return factor


SCHEDULE = "official-optimization.py"  # kept in checkpoints: a resume never mixes two schedules
PRETRAIN_SCHEDULE = "official-litmodels-linear"  # the same for pre-training's optimiser and schedule
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")  # the official create_optimizer_and_scheduler's list


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the official parameter groups: weight decay on all but biases and LayerNorm weights."""
    return torch.optim.AdamW(decay_groups(model, weight_decay, NO_DECAY), lr=lr)


def schedule_steps(n_users: int, cfg: RecformerRunConfig) -> int:
    """Optimiser steps over ``schedule_epochs``: ceil(batches / accumulation) an epoch, as :func:`run_epoch` also steps
    on an epoch's last, partial accumulation group (the official code floors the count and carries that group's
    gradients into the next epoch, which a resume from an epoch's checkpoint could not repeat)."""
    return math.ceil(math.ceil(n_users / cfg.batch_size) / cfg.grad_accumulation) * cfg.schedule_epochs


def training_users(ds: SeqDataset, cfg: RecformerRunConfig) -> np.ndarray:
    users = (np.flatnonzero(ds.train_len >= 1) if cfg.train_user_fraction >= 1.0
             else sample_train_users(ds, cfg.train_user_fraction, cfg.seed))
    return seeded_subset(users, cfg.max_train_users, cfg.seed, 1)


# ---------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------
def train_recformer(cfg: RecformerRunConfig, out_dir: str | Path, replace_stale: bool = False) -> dict:
    """Train (or resume) one RECFORMER run into ``out_dir``; returns the metrics.json record."""
    return run_trainer(cfg, out_dir, replace_stale, _train)


def _train(cfg: RecformerRunConfig, opened: OpenedRun) -> dict:
    run, ckpt, device, ds = opened.run, opened.checkpoint, opened.device, opened.data
    built: Built = build(cfg.encoder, cfg.max_items, cfg.max_tokens, cfg.attention_window, cfg.init_checkpoint)
    model = built.model.to(device)
    model.autocast = cpu_autocast(cfg.precision, device)
    if cfg.init_from:
        path = Path(cfg.init_from) / "model.pt"
        blob = load_torch(path, "a train-recformer run's model.pt", keys=("state_dict",))
        try:
            model.load_state_dict(blob["state_dict"])
        except RuntimeError as err:
            raise ValueError(f"init_from: {path} does not fit this run's encoder: {err}") from None
        log.info("initialised from %s", cfg.init_from)
    tok = KeyValueTokenizer(built.tokenizer, ds.items, cfg.max_items, cfg.max_tokens, cfg.max_attr_tokens)
    users = training_users(ds, cfg)
    valid_users = run_eval_users(ds, "valid", cfg)
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    total = schedule_steps(len(users), cfg)
    if len(users) and total <= cfg.warmup_steps:
        log.warning("the schedule's %d steps end inside its %d warm-up steps: as in the official code, the learning "
                    "rate rises through the warm-up and is 0 from step %d on; it never decays (fewer warmup_steps, "
                    "or more users or schedule_epochs, avoid it)", total, cfg.warmup_steps, cfg.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(cfg.warmup_steps, total))
    log.info("RECFORMER on %s: encoder %s, %d training users, %d validation users, device %s",
             ds.name, cfg.encoder, len(users), len(valid_users), device)

    state, table, best1, best2 = TrainState(), None, None, None
    numerics = {"cpu_bf16_autocast": bool(model.autocast), "dtype": str(next(model.parameters()).dtype)}
    if ckpt is not None:
        check_numerics(ckpt, numerics, run.checkpoint_path)
        if ckpt.get("schedule") != SCHEDULE:  # its optimiser state stepped under the schedule before 2026-12-07
            raise ValueError(f"{run.checkpoint_path}: written under an earlier learning-rate schedule (before "
                             f"{SCHEDULE!r}); remove the run folder to train it again")
        state = TrainState(**ckpt["state"])
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        table = None if ckpt["table"] is None else ckpt["table"].to(device)
        best1, best2 = ckpt["best1"], ckpt["best2"]
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s: %s, epoch %d", run.checkpoint_path, state.stage, state.epoch)
    t_start = time.perf_counter() - state.wall_time_s

    def checkpoint(pretraining: dict | None = None) -> None:
        state.wall_time_s = time.perf_counter() - t_start
        run.save_checkpoint(state=asdict(state), model=model.state_dict(), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), table=None if table is None else table.cpu(),
                            best1=best1, best2=best2, schedule=SCHEDULE, pretraining=pretraining, numerics=numerics)

    def items() -> torch.Tensor:
        state.item_encodings += 1
        return encode_items(model, tok, ds.n_items, cfg.item_batch_size, cfg.progress)

    def validate(tab: torch.Tensor) -> dict:
        return evaluate_split(model, tok, ds, valid_users, "valid", tab, cfg).metrics

    if state.stage == "start":
        state.stage = "pretrain" if cfg.pretrain.steps > 0 else "stage1"
    if state.stage == "pretrain":
        def save_pretraining(progress: dict) -> None:
            state.pretrain_steps = progress["step"]
            checkpoint(pretraining=progress)

        pretrain(model, tok, cfg, state, device, save_pretraining, ckpt.get("pretraining") if ckpt else None)
        state.stage = "stage1"
        checkpoint()
    if state.stage == "stage1" and (len(users) == 0 or cfg.stage1_max_epochs == 0):
        state.stage = "to-stage2"

    # ---- stage 1: items re-encoded every epoch -------------------------------------------
    # As the official finetune.py: encode the items, train the epoch against them, validate with the same
    # table (the one in the checkpoint it saves), so stage 2 starts from the best epoch's weights and its table.
    while state.stage == "stage1":
        e = state.epoch + 1
        if table is None:
            table = items()
        loss = run_epoch(model, tok, ds, users, table, opt, sched, cfg, e, device)
        record: dict = {"stage": 1, "epoch": e, "loss": loss}
        if e % cfg.eval_every == 0 or e == cfg.stage1_max_epochs:
            record["valid"] = validate(table)
            if record["valid"][SELECT_METRIC] > state.best1_score:
                state.best1_epoch, state.best1_score, state.bad_evals = e, record["valid"][SELECT_METRIC], 0
                best1 = {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                         "table": table.cpu()}
            else:
                state.bad_evals += 1
            log.info("stage 1 epoch %d: loss %.4f, valid %s %.4f", e, loss, SELECT_METRIC, record["valid"][SELECT_METRIC])
        else:
            log.info("stage 1 epoch %d: loss %.4f", e, loss)
        state.history.append(record)
        state.epoch = e
        table = None  # the next epoch encodes the items again
        if state.bad_evals >= cfg.stage1_patience or e >= cfg.stage1_max_epochs:
            state.stage = "to-stage2"
        checkpoint()

    # ---- between the stages: restore stage 1's best and freeze its item table -------------
    if state.stage == "to-stage2":
        if best1 is not None:
            model.load_state_dict(best1["model"])
            table = best1["table"].to(device)
        else:  # no training (zero-shot): the encoder as it is
            table = items()
        state.best2_score = state.best1_score  # stage 1's best stays the bar
        state.stage, state.epoch, state.bad_evals = ("stage2" if best1 is not None and cfg.stage2_max_epochs > 0
                                                     else "final"), 0, 0
        checkpoint()

    # ---- stage 2: item table fixed ---------------------------------------------------------
    while state.stage == "stage2":
        e = state.epoch + 1
        loss = run_epoch(model, tok, ds, users, table, opt, sched, cfg, 1000 + e, device)
        record = {"stage": 2, "epoch": e, "loss": loss}
        if e % cfg.eval_every == 0 or e == cfg.stage2_max_epochs:  # the official stage 2 validates as stage 1
            record["valid"] = valid = validate(table)
            log.info("stage 2 epoch %d: loss %.4f, valid %s %.4f", e, loss, SELECT_METRIC, valid[SELECT_METRIC])
            if valid[SELECT_METRIC] > state.best2_score:
                state.best2_epoch, state.best2_score, state.bad_evals = e, valid[SELECT_METRIC], 0
                best2 = {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            else:
                state.bad_evals += 1
        else:
            log.info("stage 2 epoch %d: loss %.4f", e, loss)
        state.history.append(record)
        state.epoch = e
        if state.bad_evals >= cfg.stage2_patience or e >= cfg.stage2_max_epochs:
            state.stage = "final"
        checkpoint()
    return _finish(cfg, run, ds, model, tok, table, best1, best2, state, built.stand_in, device, t_start, len(users))


PRETRAIN_CHECKPOINT_S = 600.0  # pre-training is checkpointed at most this often (every step is one at paper scale)


def pretrain(model: Recformer, tok: KeyValueTokenizer, cfg: RecformerRunConfig, state: TrainState,
             device: torch.device, save: Callable[[dict], None] | None = None, resume: dict | None = None) -> None:
    """``pretrain.steps`` steps of IIC + MLM on the pre-training data sets (word embeddings frozen).

    Every :data:`PRETRAIN_CHECKPOINT_S` seconds ``save(progress)`` checkpoints it (steps done, the optimiser and
    the batch sampler's state); ``resume`` = such a progress continues after its step, drawing what an unbroken
    run draws."""
    p = cfg.pretrain
    if not p.datasets:
        raise ValueError("pretrain.datasets: empty, but pretrain.steps > 0 (list prepared data set folders)")
    sets = [load_dataset(d) for d in p.datasets]
    pools = [np.flatnonzero(s.train_len >= 2) for s in sets]
    model.word_embeddings.weight.requires_grad_(False)
    # the official LitWrapper: AdamW without weight decay (its no-decay groups), the linear schedule from p.lr to 0
    # over the run's steps without warm-up (get_linear_schedule_with_warmup(0, total))
    opt = adamw(model, p.lr, 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(0, p.steps))
    rng = np.random.default_rng([cfg.seed, 7])
    start = 0
    if resume is not None:
        if resume.get("schedule") != PRETRAIN_SCHEDULE:
            raise ValueError("a pre-training checkpoint of the earlier optimiser (constant lr, weight decay 0.01 on "
                             "every weight; before 2026-12-07) cannot resume under the official one: remove the "
                             "run's checkpoint.pt to pre-train again")
        start = int(resume["step"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        rng.bit_generator.state = resume["sampler"]
        log.info("pre-training resumed after step %d of %d", start, p.steps)
    model.train()
    last_save = time.perf_counter()
    for step in tqdm(range(start, p.steps), desc="pre-training", leave=False, disable=not cfg.progress,
                     initial=start, total=p.steps):
        k = int(rng.integers(len(sets)))
        users = rng.choice(pools[k], min(p.batch_size, pools[k].shape[0]), replace=False)
        tok_k = tok if sets[k].items is tok.items else KeyValueTokenizer(
            tok.tokenizer, sets[k].items, cfg.max_items, cfg.max_tokens, cfg.max_attr_tokens)
        hist, pos = pretrain_examples(sets[k], users, rng)
        losses = pretrain_losses(model, tok_k, hist, pos, cfg, rng)
        check_loss(losses["loss"], f"pre-training step {step}")
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # the official Trainer's gradient_clip_val
        opt.step()
        sched.step()
        if step % 50 == 0 or step == p.steps - 1:
            log.info("pre-training step %d: iic %.4f mlm %.4f", step, float(losses["iic"].detach()),
                     float(losses["mlm"].detach()))
        if save is not None and step + 1 < p.steps and time.perf_counter() - last_save >= PRETRAIN_CHECKPOINT_S:
            save({"step": step + 1, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "schedule": PRETRAIN_SCHEDULE, "sampler": rng.bit_generator.state})
            last_save = time.perf_counter()
    model.word_embeddings.weight.requires_grad_(True)
    state.pretrain_steps = p.steps


def run_epoch(model: Recformer, tok: KeyValueTokenizer, ds: SeqDataset, users: np.ndarray, table: torch.Tensor,
              opt, sched, cfg: RecformerRunConfig, epoch: int, device: torch.device) -> float:
    """One fine-tuning epoch (seeded by (seed, epoch)); returns the mean loss."""
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1_000_003 + epoch)
    hist, targets = finetune_examples(ds, users[rng.permutation(len(users))], rng)
    model.train()
    total, n = 0.0, 0
    opt.zero_grad(set_to_none=True)
    starts = list(range(0, len(hist), cfg.batch_size))
    for i, s in enumerate(tqdm(starts, desc=f"epoch {epoch}", leave=False, disable=not cfg.progress), 1):
        user_vecs = model(tok.batch([tok.encode(h) for h in hist[s : s + cfg.batch_size]], device))
        target = torch.as_tensor(targets[s : s + cfg.batch_size], device=device)
        loss = F.cross_entropy(cosine_logits(user_vecs, table, cfg.tau), target)
        check_loss(loss, f"fine-tuning epoch {epoch}, batch {i}")
        (loss / cfg.grad_accumulation).backward()
        if i % cfg.grad_accumulation == 0 or i == len(starts):
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        total += float(loss.detach()) * target.shape[0]
        n += target.shape[0]
    return total / max(n, 1)


def _finish(cfg, run: RunFolder, ds, model, tok, table, best1, best2, state, stand_in: bool, device, t_start,
            n_users: int) -> dict:
    if best2 is not None:
        model.load_state_dict(best2["model"])
        best = (2, state.best2_epoch)
    elif best1 is not None:
        model.load_state_dict(best1["model"])
        best = (1, state.best1_epoch)
    else:
        best = (0, -1)
    results = {split: evaluate_split(model, tok, ds, run_eval_users(ds, split, cfg), split, table, cfg)
               for split in ("valid", "test")}
    log.info("reported (stage %d, epoch %d): valid %s %.4f | test %s %.4f", best[0], best[1], SELECT_METRIC,
             results["valid"].metrics[SELECT_METRIC], SELECT_METRIC, results["test"].metrics[SELECT_METRIC])
    state.stage = "done"
    record = {
        "method": cfg.method, "dataset": ds.name, "seed": cfg.seed,
        "best_stage": best[0], "best_epoch": best[1], "stage1_best_epoch": state.best1_epoch,
        "ties": cfg.ties, "stand_in_encoder": stand_in, "pretrain_steps": state.pretrain_steps,
        "item_encodings": state.item_encodings, "train_users": n_users, "history": state.history,
        "wall_time_s": time.perf_counter() - t_start,
    }
    blob = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": run.training_config()}
    return run.write_outputs(results, blob, record, device)
