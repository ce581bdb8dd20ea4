"""LLM4REC, the leave-one-out port (spec §4): content and collaborative pre-training, then next-item
fine-tuning over all items, scored by the shared full-ranking evaluator.

1. Content: "The title of <item_j> is: <title>", language-model loss on the title tokens.
2. Collaborative: "<user_u> has interacted with <item_a> <item_b> ...", the chronological TRAINING
   history; the item head predicts each next item token. (The official second model's lambda_V
   regulariser towards the content model's ID embeddings is moot here: one model learns both.)
3. Fine-tuning: "<user_u> has interacted with <last 50 items>, <user_u> will interact with", the last
   state scores every item; cross-entropy of the next item, one row per training prefix (seeded
   caps for CPU runs); the best epoch by validation NDCG@10 (patience) is tested.
Graph bias (closed form, training edges only) in every stage when ``graph_bias``. Each stage steps its
own Adam (official: ``review_optimizer``, ``collaborative_optimizer``); the content stage its own batch size.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from laser_repro.data.dataset import SeqDataset
from laser_repro.data.splits import run_eval_users, seeded_subset
from laser_repro.eval.evaluator import EvalResult, evaluate
from laser_repro.llm4rec.config import LLM4RecRunConfig
from laser_repro.llm4rec.graph import ITEM
from laser_repro.llm4rec.model import LLM4Rec, Prompt
from laser_repro.train.scaffold import (
    check_loss, check_numerics, OpenedRun, run_trainer, set_rng_state)

log = logging.getLogger("laser_repro.llm4rec")


class Prompts:
    """The three prompt kinds, tokenised once per text piece."""

    def __init__(self, tokenizer, ds: SeqDataset, max_history: int):
        tok = lambda s: list(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        self.title_of, self.is_, self.has, self.comma, self.will = (
            tok("The title of"), tok(" is:"), tok(" has interacted with"), tok(","), tok(" will interact with"))
        self.titles = [tok(" " + str(it.get("title") or ""))[:32] for it in ds.items]
        self.max_history = max_history

    def content(self, item: int) -> Prompt:
        return Prompt().text(self.title_of).items([item]).text(self.is_).text(self.titles[item], predict=True)

    def collaborative(self, user: int, history) -> Prompt:
        return Prompt().user(user).text(self.has).items(history[-self.max_history:])

    def recommend(self, user: int, history) -> Prompt:
        return (Prompt().user(user).text(self.has).items(history[-self.max_history:]).text(self.comma).user(user)
                .text(self.will))


def collaborative_loss(model: LLM4Rec, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Item-head cross-entropy of every item token from the position before it."""
    s = model.states(b)
    nxt_item = (b["kinds"][:, 1:] == ITEM) & (b["mask"][:, 1:] > 0)
    return F.cross_entropy(model.item_logits(s[:, :-1][nxt_item]), b["ids"][:, 1:][nxt_item])


def content_loss(model: LLM4Rec, b: dict[str, torch.Tensor]) -> torch.Tensor:
    s = model.states(b)
    keep = b["labels"] != -100
    return F.cross_entropy(model.word_logits(s[keep]), b["labels"][keep])


@torch.no_grad()
def evaluate_split(model: LLM4Rec, prompts: Prompts, ds: SeqDataset, users: np.ndarray, split: str,
                   cfg: LLM4RecRunConfig) -> EvalResult:
    model.eval()
    hist = [ds.history_and_target(int(u), split)[0] for u in users]
    scores = []
    for s in range(0, len(users), cfg.eval_batch_size):
        b = model.batch([prompts.recommend(int(u), h) for u, h in zip(users[s : s + cfg.eval_batch_size],
                                                                      hist[s : s + cfg.eval_batch_size])])
        scores.append(model.item_logits(model.last_states(b)))
    table = torch.cat(scores) if scores else torch.zeros(0, ds.n_items)
    return evaluate(lambda pos: table[torch.as_tensor(pos)], users, ds.targets(split, users), ties=cfg.ties,
                    n_items=ds.n_items)


def train_llm4rec(cfg: LLM4RecRunConfig, out_dir: str | Path, replace_stale: bool = False) -> dict:
    """Train (or resume) one LLM4REC run into ``out_dir``; returns the metrics.json record."""
    return run_trainer(cfg, out_dir, replace_stale, _train)


def _epoch(model, opt, rows: list, make, loss_fn, batch_size: int, progress: bool, tag: str,
           seed: list[int]) -> float:
    model.train()
    order = np.random.default_rng(seed).permutation(len(rows))
    torch.manual_seed(int(np.random.default_rng(seed).integers(2**31)))
    total = 0.0
    for s in tqdm(range(0, len(order), batch_size), desc=tag, leave=False, disable=not progress):
        loss = loss_fn(model, model.batch([make(rows[i]) for i in order[s : s + batch_size]]))
        check_loss(loss, f"{tag}, batch {s // batch_size}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
    return total / max(1, -(-len(order) // batch_size))


def _train(cfg: LLM4RecRunConfig, opened: OpenedRun) -> dict:
    from laser_repro.laser.backbones import load_backbone

    run, ckpt, device, ds = opened.run, opened.checkpoint, opened.device, opened.data
    bb = load_backbone(cfg.backbone, device, [str(it.get("title") or "") for it in ds.items], cfg.cache_dir,
                       precision=cfg.precision)
    half = next(bb.model.parameters()).dtype != torch.float32  # load_backbone's bf16 on CUDA
    if half:  # LLM4REC trains the backbone with its fp32 user/item tables: fp32 weights (Adam's updates would
        bb.model.float()  # vanish in bf16, and fp32 inputs_embeds into bf16 layers fail), bf16 autocast instead
    for p in bb.model.parameters():
        p.requires_grad_(cfg.train_backbone)
    model = LLM4Rec(bb.model, ds.n_users, ds.n_items, cfg.graph_bias).to(device)
    model.autocast = bb.autocast or half
    prompts = Prompts(bb.tokenizer, ds, cfg.max_history)
    users = seeded_subset(np.flatnonzero(ds.train_len >= 2), cfg.max_train_users, cfg.seed, 1)
    rows = [(int(u), t) for u in users for t in range(1, ds.train_len[u])]
    if cfg.max_train_rows is not None and len(rows) > cfg.max_train_rows:
        keep = np.sort(np.random.default_rng([cfg.seed, 4]).choice(len(rows), cfg.max_train_rows, replace=False))
        rows = [rows[i] for i in keep]
    valid_users = run_eval_users(ds, "valid", cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    # one Adam per stage, as the official code (review_optimizer, collaborative_optimizer, then fine-tuning's)
    content_opt = torch.optim.Adam(params, lr=cfg.pretrain_lr)
    collab_opt = torch.optim.Adam(params, lr=cfg.pretrain_lr)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    state = {"stage": "content", "epoch": 0, "best_epoch": -1, "best_score": -1.0, "bad": 0, "history": [], "wall": 0.0}
    best = None
    numerics = {"cpu_bf16_autocast": bool(bb.autocast), "bf16_backbone": half}
    if ckpt is not None:
        check_numerics(ckpt, numerics, run.checkpoint_path)
        if "collab_opt" not in ckpt:  # before 2026-12-07 both pre-training stages stepped one Adam
            raise ValueError(f"{run.checkpoint_path}: written when both pre-training stages shared one optimiser; "
                             "remove the run folder to train it again")
        model.load_state_dict(ckpt["model"])
        content_opt.load_state_dict(ckpt["content_opt"])
        collab_opt.load_state_dict(ckpt["collab_opt"])
        opt.load_state_dict(ckpt["opt"])
        state, best = ckpt["state"], ckpt["best"]
        set_rng_state(ckpt["rng"])
    t0 = time.perf_counter() - state["wall"]
    log.info("LLM4REC on %s: backbone %s (%s), %d fine-tuning rows from %d users, graph bias %s", ds.name,
             cfg.backbone, "trained" if cfg.train_backbone else "frozen", len(rows), len(users), cfg.graph_bias)

    def save() -> None:
        state["wall"] = time.perf_counter() - t0
        run.save_checkpoint(model=model.state_dict(), content_opt=content_opt.state_dict(),
                            collab_opt=collab_opt.state_dict(), opt=opt.state_dict(), state=state, best=best,
                            numerics=numerics)

    stages = (("content", cfg.content_epochs, list(range(ds.n_items)), prompts.content, content_loss, content_opt,
               cfg.content_batch_size),
              ("collaborative", cfg.collab_epochs, [int(u) for u in users],
               lambda u: prompts.collaborative(u, ds.train_sequence(u)), collaborative_loss, collab_opt,
               cfg.batch_size))
    for name, epochs, items, make, loss_fn, optimizer, batch_size in stages:
        while state["stage"] == name and state["epoch"] < epochs:
            e = state["epoch"] + 1
            loss = _epoch(model, optimizer, items, make, loss_fn, batch_size, cfg.progress, f"{name} {e}",
                          [cfg.seed, len(name), e])
            state["history"].append({"stage": name, "epoch": e, "loss": loss})
            log.info("%s epoch %d: loss %.4f", name, e, loss)
            state["epoch"] = e
            save()
        if state["stage"] == name:
            state["stage"], state["epoch"] = ("collaborative" if name == "content" else "finetune"), 0

    def rec_loss(m: LLM4Rec, b: dict) -> torch.Tensor:
        return F.cross_entropy(m.item_logits(m.last_states(b)), b["targets"])

    def make_rec(row) -> Prompt:
        u, t = row
        return prompts.recommend(u, ds.train_sequence(u)[:t])

    def batch_with_targets(chosen):  # the fine-tuning batch also carries its targets
        b = model.batch([make_rec(r) for r in chosen])
        b["targets"] = torch.as_tensor([int(ds.train_sequence(u)[t]) for u, t in chosen], device=model.device)
        return b

    while state["stage"] == "finetune" and state["epoch"] < cfg.finetune_max_epochs and rows:
        e = state["epoch"] + 1
        model.train()
        order = np.random.default_rng([cfg.seed, 9, e]).permutation(len(rows))
        total = 0.0
        for s in tqdm(range(0, len(order), cfg.batch_size), desc=f"fine-tune {e}", leave=False,
                      disable=not cfg.progress):
            loss = rec_loss(model, batch_with_targets([rows[i] for i in order[s : s + cfg.batch_size]]))
            check_loss(loss, f"fine-tuning epoch {e}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        valid = evaluate_split(model, prompts, ds, valid_users, "valid", cfg).metrics
        state["history"].append({"stage": "finetune", "epoch": e, "loss": total / max(1, -(-len(rows) // cfg.batch_size)),
                                 "valid": valid})
        log.info("fine-tune epoch %d: valid ndcg@10 %.4f", e, valid["ndcg@10"])
        if valid["ndcg@10"] > state["best_score"]:
            state["best_epoch"], state["best_score"], state["bad"] = e, valid["ndcg@10"], 0
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad"] += 1
        state["epoch"] = e
        if state["bad"] >= cfg.patience:
            state["stage"] = "final"
        save()
    if best is not None:
        model.load_state_dict(best)
    results = {}
    for split in ("valid", "test"):
        results[split] = evaluate_split(model, prompts, ds, run_eval_users(ds, split, cfg), split, cfg)
    record = {
        "method": cfg.method, "dataset": ds.name, "seed": cfg.seed,
        "best_epoch": state["best_epoch"], "ties": cfg.ties, "stand_in_backbone": cfg.backbone != "gpt2-large",
        "cpu_bf16_autocast": model.autocast,
        "train_rows": len(rows), "train_users": int(users.shape[0]), "history": state["history"],
        "wall_time_s": time.perf_counter() - t0,
    }
    blob = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": run.training_config()}
    return run.write_outputs(results, blob, record, device)
