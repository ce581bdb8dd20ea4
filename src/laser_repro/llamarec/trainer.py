"""LlamaRec: an LRURec retriever (its own train-idrec run) and a LoRA-tuned LLM ranker over its top 20.

Training rows (official): every prefix of every training sequence (seeded caps on users and rows
for CPU runs); candidates = the target and ``n_candidates - 1`` random items outside the history,
shuffled; loss = cross-entropy of the answer letter over the whole vocabulary at the prompt's last
position. The best epoch by validation NDCG@10 is kept. Evaluation: the retriever ranks all items;
the LLM re-scores the top 20 (in retriever order) of users whose target is among them;
:func:`laser_repro.llamarec.scoring.composite_scores` hands the shared evaluator one score per item.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from laser_repro.data.dataset import SeqDataset
from laser_repro.data.splits import run_eval_users, seeded_subset
from laser_repro.eval.evaluator import EvalResult, evaluate
from laser_repro.idrec.base import pad_histories
from laser_repro.idrec.encoder import load_collaborative_encoder
from laser_repro.llamarec.config import LlamaRecRunConfig
from laser_repro.llamarec.ranker import Ranker, build_ranker, letter_logits
from laser_repro.llamarec.scoring import build_prompt, composite_scores, llamarec_overall
from laser_repro.train.scaffold import (
    DATASET_REQUIRED, OpenedRun, check_loss, check_numerics, run_trainer, set_rng_state)

log = logging.getLogger("laser_repro.llamarec")


def titles(ds: SeqDataset, tokenizer, max_tokens: int) -> list[str]:
    """Each item's title cut to ``max_tokens`` tokens (LlamaRec's text is the title only)."""
    out = []
    for it in ds.items:
        ids = tokenizer(str(it.get("title") or ""), add_special_tokens=False)["input_ids"][:max_tokens]
        out.append(tokenizer.decode(ids).strip())
    return out


def load_adapters(model, adapters: dict, where: Path) -> None:
    """Load saved LoRA weights into ``model``; every adapter weight of the model must be among them and nothing
    else (``strict=False`` alone skipped them all silently had the key names changed, e.g. with another peft)."""
    result = model.load_state_dict(adapters, strict=False)
    expected = {k for k in model.state_dict() if "lora_" in k}
    missing = sorted(expected & set(result.missing_keys))
    if missing or result.unexpected_keys:
        raise ValueError(f"{where}: its adapters do not fit this ranker (missing {missing[:3]}, unexpected "
                         f"{list(result.unexpected_keys)[:3]}); written by another peft or model? remove the run "
                         "folder to train it again")


def training_rows(ds: SeqDataset, users: np.ndarray, cfg: LlamaRecRunConfig, rng: np.random.Generator):
    """(history, candidates, answer index): every prefix of each training sequence, random negatives. The
    negatives avoid the history only when the retriever masks it (``mask_history``, LlamaRec's code) or
    ``negatives: outside_history`` asks: unmasked, the test's candidates hold history items, and a training set
    whose history items were all answers would teach the ranker "a history item is the answer"."""
    rows = []
    avoid = cfg.mask_history or cfg.negatives == "outside_history"
    for u in users:
        seq = ds.train_sequence(int(u))
        for t in range(1, seq.shape[0]):
            hist = seq[:t][-cfg.max_history:]
            seen = (set(seq[:t].tolist()) if avoid else set()) | {int(seq[t])}
            if ds.n_items - len(seen) < cfg.n_candidates - 1:  # a history over nearly every item (tiny data sets):
                seen = {int(seq[t])}  # negatives may then come from it (else the draw never ended)
            negs = []
            while len(negs) < cfg.n_candidates - 1:
                i = int(rng.integers(ds.n_items))
                if i not in seen:
                    seen.add(i)
                    negs.append(i)
            cands = [int(seq[t])] + negs
            order = rng.permutation(len(cands))
            cands = [cands[i] for i in order]
            rows.append((hist, cands, int(np.flatnonzero(order == 0)[0])))
    if cfg.max_train_rows is not None and len(rows) > cfg.max_train_rows:
        keep = np.sort(rng.choice(len(rows), cfg.max_train_rows, replace=False))
        rows = [rows[i] for i in keep]
    return rows


class Retriever:
    """The LRURec run's scores for every item (history items masked only when ``mask_history``)."""

    def __init__(self, run: str, device: torch.device, mask_history: bool, dataset: str | None = None):
        self.model = load_collaborative_encoder(run, dataset=dataset, key="retriever_run").model.to(device).eval()
        if getattr(self.model, "needs_users", False):  # its inputs carry a user column this retriever never adds
            raise ValueError(f"retriever_run: {run} is a {self.model.name} run, which scores users, not histories "
                             "alone; use an LRURec run (or another history-only ID model)")
        self.device, self.mask_history = device, mask_history

    @torch.no_grad()
    def scores(self, histories: list[np.ndarray]) -> torch.Tensor:
        tokens = torch.as_tensor(pad_histories(histories, self.model.history_len), device=self.device)
        s = self.model.full_scores(tokens).float()
        if self.mask_history:
            for r, h in enumerate(histories):
                s[r, torch.as_tensor(h, dtype=torch.long)] = -1e9
        return s


@torch.no_grad()
def evaluate_split(ranker: Ranker, retriever: Retriever, ds: SeqDataset, users: np.ndarray, split: str,
                   names: list[str], cfg: LlamaRecRunConfig) -> tuple[EvalResult, dict]:
    """Composite full-ranking evaluation; also LlamaRec's own overall metrics and the retriever alone."""
    ranker.model.eval()
    histories = [ds.history_and_target(int(u), split)[0] for u in users]
    targets = ds.targets(split, users)
    base = retriever.scores(histories)
    k = cfg.n_candidates
    top = base.topk(k, dim=1).indices
    tgt = torch.as_tensor(targets, device=base.device)
    retrieved = (top == tgt[:, None]).any(dim=1)
    logits = torch.zeros(len(users), k, device=base.device)
    rows = torch.nonzero(retrieved).flatten().tolist()
    for s in tqdm(range(0, len(rows), cfg.eval_batch_size), desc=f"{split} LLM", leave=False, disable=not cfg.progress):
        batch = rows[s : s + cfg.eval_batch_size]
        prompts = [build_prompt([names[i] for i in histories[r][-cfg.max_history:]], [names[int(i)] for i in top[r]])
                   for r in batch]
        logits[torch.as_tensor(batch)] = letter_logits(ranker, prompts, cfg.max_prompt_tokens, k)[1].to(logits.device)
    scores = composite_scores(base, top, logits, retrieved)
    result = evaluate(lambda pos: scores[torch.as_tensor(pos)], users, targets, ties=cfg.ties, n_items=ds.n_items)
    alone = evaluate(lambda pos: base[torch.as_tensor(pos)], users, targets, ties=cfg.ties, n_items=ds.n_items)
    in_top = torch.argsort(torch.argsort(-logits, dim=1), dim=1)  # 0-based rank of each candidate by the LLM
    pos_t = (top == tgt[:, None]).float().argmax(dim=1)
    ranker_ranks = (in_top[torch.arange(len(users)), pos_t] + 1).cpu().numpy()
    extra = {"retriever": alone.metrics, "retrieved_share": float(retrieved.float().mean()), "llm_users": len(rows),
             "llamarec_overall": llamarec_overall(alone.ranks + 1, ranker_ranks, k)}
    return result, extra


MAX_GRAD_NORM = 1.0  # the HF Trainer's default max_grad_norm (the official code sets none)
CHECKPOINT_EVERY_S = 600.0  # between validations a checkpoint at most this often (a kill loses at most this much)


def linear_warmup_decay(warmup: int, total: int):
    """The HF Trainer's default schedule (``get_linear_schedule_with_warmup``) as a LambdaLR factor of step ``s``:
    ``s / warmup`` during the warm-up, then linearly down to 0 at ``total``."""
    def factor(s: int) -> float:
        if s < warmup:
            return s / max(1, warmup)
        return max(0.0, (total - s) / max(1, total - warmup))
    return factor


def train_llamarec(cfg: LlamaRecRunConfig, out_dir: str | Path, replace_stale: bool = False) -> dict:
    """Train (or resume) one LlamaRec ranker into ``out_dir``; returns the metrics.json record."""
    required = {**DATASET_REQUIRED, "retriever_run": "a finished LRURec run (train-idrec, model lrurec)"}
    return run_trainer(cfg, out_dir, replace_stale, _train, required)


def ranker_optimizer(params, lr: float) -> torch.optim.Optimizer:
    """AdamW as the official HF ``TrainingArguments`` leave it: betas (0.9, 0.999), eps 1e-8, no weight decay (the
    Trainer's default 0.0; torch's AdamW defaults to 0.01, which this suite used until 2026-12-07)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _train(cfg: LlamaRecRunConfig, opened: OpenedRun) -> dict:
    run, ckpt, device, ds = opened.run, opened.checkpoint, opened.device, opened.data
    if cfg.n_candidates > ds.n_items:
        raise ValueError(f"n_candidates: {cfg.n_candidates}, but {cfg.dataset} has {ds.n_items} items; expected at "
                         "most that many candidates")
    corpus = [str(it.get("title") or "") for it in ds.items]
    ranker = build_ranker(cfg.backbone, cfg.cache_dir, corpus, cfg.quantize, device, cfg.lora_r, cfg.lora_alpha,
                          cfg.lora_dropout, cfg.lora_targets, cfg.precision)
    retriever = Retriever(cfg.retriever_run, device, cfg.mask_history, cfg.dataset)
    names = titles(ds, ranker.tokenizer, cfg.max_title_tokens)
    rng = np.random.default_rng([cfg.seed, 5])
    users = seeded_subset(np.flatnonzero(ds.train_len >= 2), cfg.max_train_users, cfg.seed, 1)
    rows = training_rows(ds, users, cfg, rng)
    valid_users = run_eval_users(ds, "valid", cfg)
    params = [p for p in ranker.model.parameters() if p.requires_grad]
    opt = ranker_optimizer(params, cfg.lr)
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    total = cfg.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(cfg.warmup_steps, total))
    state = {"step": 0, "best_step": 0, "best_score": -1.0, "bad_evals": 0, "history": [], "loss_sum": 0.0,
             "loss_rows": 0, "wall": 0.0}
    best = None
    numerics = {"quantized": ranker.quantized, "cpu_bf16_autocast": ranker.autocast,
                "dtype": str(next(ranker.model.parameters()).dtype)}
    if ckpt is not None:
        check_numerics(ckpt, numerics, run.checkpoint_path)
        load_adapters(ranker.model, ckpt["lora"], run.checkpoint_path)
        opt.load_state_dict(ckpt["optimizer"])
        if any(g.get("weight_decay") for g in opt.param_groups):  # it would decay on, as a run of the new code
            raise ValueError(f"{run.checkpoint_path}: written with AdamW's weight decay 0.01 (before 2026-12-07; the "
                             "official Trainer's is 0); remove the run folder to train it again")
        sched.load_state_dict(ckpt["scheduler"])
        state, best = ckpt["state"], ckpt["best"]
        set_rng_state(ckpt["rng"])
    log.info("LlamaRec on %s: ranker %s (LoRA, %s), %d training rows from %d users, %d validation users, "
             "%d steps", ds.name, cfg.backbone, "4-bit" if ranker.quantized else "unquantised", len(rows), len(users),
             len(valid_users), total)
    t0 = time.perf_counter() - state["wall"]

    def lora_state() -> dict:
        return {k: v.detach().cpu().clone() for k, v in ranker.model.state_dict().items() if "lora_" in k}

    # The official HF Trainer: linear warm-up then linear decay to 0, gradients clipped at norm 1, validation
    # every eval_steps steps (and at the last, so a short run is validated once), early stopping after
    # `patience` validations without a better NDCG@10, the best adapters kept
    order, order_epoch = None, 0  # the epoch's seeded row order, drawn once per epoch (the same after a resume)
    saved_at = time.perf_counter()

    def save() -> None:
        nonlocal saved_at
        state["wall"] = time.perf_counter() - t0
        run.save_checkpoint(lora=lora_state(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            state=state, best=best, numerics=numerics)
        saved_at = time.perf_counter()

    while state["step"] < total and state["bad_evals"] < cfg.patience:
        e, b = state["step"] // per_epoch + 1, state["step"] % per_epoch
        ranker.model.train()
        if order_epoch != e:
            order, order_epoch = np.random.default_rng([cfg.seed, e]).permutation(len(rows)), e
        batch = [rows[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
        prompts = [build_prompt([names[i] for i in h], [names[i] for i in c]) for h, c, _ in batch]
        full, _ = letter_logits(ranker, prompts, cfg.max_prompt_tokens, cfg.n_candidates)
        answer = torch.as_tensor([ranker.letter_ids[a] for _, _, a in batch], device=full.device)
        loss = F.cross_entropy(full, answer)
        check_loss(loss, f"epoch {e}, step {state['step'] + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        sched.step()
        state["step"] += 1
        state["loss_sum"] += float(loss.detach()) * len(batch)
        state["loss_rows"] += len(batch)
        log.info("step %d/%d: loss %.4f", state["step"], total, float(loss.detach()))  # an LLM step: seconds to minutes
        if state["step"] % cfg.eval_steps and state["step"] < total:
            if time.perf_counter() - saved_at >= CHECKPOINT_EVERY_S:  # a 7B step takes seconds: 100 of them, long
                save()
            continue
        valid, _ = evaluate_split(ranker, retriever, ds, valid_users, "valid", names, cfg)
        mean_loss = state["loss_sum"] / state["loss_rows"]
        state["history"].append({"step": state["step"], "epoch": e, "loss": mean_loss, "valid": valid.metrics})
        state["loss_sum"], state["loss_rows"] = 0.0, 0
        if valid.metrics["ndcg@10"] > state["best_score"]:
            state.update(best_step=state["step"], best_score=valid.metrics["ndcg@10"], bad_evals=0)
            best = lora_state()
        else:
            state["bad_evals"] += 1
        log.info("step %d (epoch %d): loss %.4f, valid ndcg@10 %.4f", state["step"], e, mean_loss,
                 valid.metrics["ndcg@10"])
        save()
    if best is not None:
        load_adapters(ranker.model, best, run.checkpoint_path)
    results, extras = {}, {}
    for split in ("valid", "test"):
        results[split], extras[split] = evaluate_split(ranker, retriever, ds, run_eval_users(ds, split, cfg), split,
                                                       names, cfg)
    record = {
        "method": cfg.method, "dataset": ds.name, "seed": cfg.seed,
        "test_extra": extras["test"], "valid_extra": extras["valid"],
        "best_epoch": (state["best_step"] - 1) // per_epoch + 1 if state["best_step"] else 0,
        "best_step": state["best_step"], "steps_run": state["step"],
        "ties": cfg.ties, "stand_in_backbone": ranker.stand_in, "quantized": ranker.quantized,
        "cpu_bf16_autocast": ranker.autocast,
        "train_rows": len(rows), "train_users": int(users.shape[0]), "history": state["history"],
        "trainable_parameters": sum(p.numel() for p in ranker.model.parameters() if p.requires_grad),
        "wall_time_s": time.perf_counter() - t0,
    }
    return run.write_outputs(results, {"lora": lora_state(), "config": run.training_config()}, record, device)
