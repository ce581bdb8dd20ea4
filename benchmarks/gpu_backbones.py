"""GPU timing of Laser at the paper's backbone sizes: one prepared script for a CUDA machine.

NOT YET RUN ON A GPU: no GPU was available while this was written. Its logic is tested on
CPU with tiny sizes (``--tiny``, tests/test_laser_gpu_script.py); the numbers in
benchmarks/gpu_backbones.md appear only after someone runs it on a CUDA box:

    python benchmarks/gpu_backbones.py --tiny --device cpu --out /tmp/x.md   # logic check on CPU
    python benchmarks/gpu_carry.py          # (CPU machine) data, BERT4Rec run and fp16 MiniLM, under the carry limit

and on the GPU machine (nothing installed there: the repository root, PYTHONPATH=src; carry
``benchmarks/out/gpu_carry``; everything the run writes goes under ``$OUT``, the only folder that comes back):

    set -o pipefail; export PYTHONPATH=src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; nvidia-smi -L
    timeout -s INT 560 python3 benchmarks/gpu_backbones.py --protocol benchmarks/out/gpu_carry --deadline-min 8.5 \
        --cache /tmp/laser-gpu --out $OUT/gpu_backbones.md 2>&1 | tee $OUT/run.log

(with a device timeout of about 600 s; the inner ``timeout -s INT`` and a SIGTERM both end the script through its
clean-up, so the report and the protocol run's files still come back). ``--deadline-min`` gates (a) only: it runs
the epochs that fit what is left and is skipped, with a line in the report, when one epoch (or its set-up) does not;
each call trains into a fresh folder under ``--cache``, and the run's train.log, metrics.json and ranks.npz are
copied next to the report (``protocol-run/``).

For each backbone size it builds a RANDOM-initialised model from a config (no weights are
downloaded; speed and memory do not depend on the weights) in bf16, wraps it in Laser's
adapter with the paper-size M-Former (K 8, top-3, L 32, d_m 768, Z 12) and a learnable suffix,
and times (1) a phase-1 training step (batch 4 real history rows, loss over all items,
backward to the M-Former/suffix, Adam step) and (2) an item refresh (eval, no grad, batched by
text length). It reports tokens/s, rows or items/s and peak GPU memory, and writes a markdown
report plus a JSON file next to it, rewritten after every stage (a timeout keeps what finished).
With ``--protocol`` it then runs (a): the full protocol's steps per epoch are printed, an epoch is
timed from ``--protocol-probe-steps`` steps, and the epochs are capped to fit
``--protocol-budget-min`` (default 6; the cap is stated in the report). Once a real run wrote
``gpu_backbones.json``, ``scripts/measure_docs.py`` takes its GPU hours from it. Text is tokenised with a small BPE trained on the data set
(the real tokenizers need the hub), so token counts differ from the real backbones'.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "amazon-scientific-recformer"

# the paper's backbones' shapes (GPT2-Large: 774M, Llama2-7B: 6.7B parameters)
SIZES = {
    "gpt2-large": ("gpt2", dict(n_embd=1280, n_layer=36, n_head=20, n_positions=1024, vocab_size=50257)),
    "llama2-7b": ("llama", dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                                num_key_value_heads=32, max_position_embeddings=4096, vocab_size=32000)),
}
TINY = {
    "gpt2-large": ("gpt2", dict(n_embd=64, n_layer=2, n_head=2, n_positions=1024, vocab_size=50257)),
    "llama2-7b": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, max_position_embeddings=4096, vocab_size=32000)),
}


def build_backbone(name: str, family: str, shape: dict, tokenizer, device: torch.device, dtype: torch.dtype):
    """A random-initialised model of the given shape wrapped in Laser's adapter."""
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel

    from laser_repro.laser.backbones import Backbone

    if family == "gpt2":
        cfg = GPT2Config(activation_function="gelu_new", **shape)
        cls = GPT2Model
    else:
        cfg = LlamaConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **shape)
        cls = LlamaModel
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = cls(cfg)
    finally:
        torch.set_default_dtype(previous)
    return Backbone(f"{name}-sized (random init)", family, model, tokenizer, {"source": "random init from config"})


def load_data(carry: Path | None = None):
    """The data the timings run on: the carried Scientific (``--protocol``; the GPU machine has no
    ../shared), else ../shared's Scientific next to the checkout, else a synthetic set (said in the report)."""
    if carry is not None and (carry / "data" / "scientific" / "stats.json").exists():
        from laser_repro.data.dataset import load_dataset

        return load_dataset(carry / "data" / "scientific"), "Scientific (real, carried)"
    if SHARED.is_dir():
        from laser_repro.data.sources import recformer

        return recformer.prepare(SHARED, "scientific"), "Scientific (real)"
    from laser_repro.data.sources import synthetic

    return synthetic.prepare(Path(tempfile.mkdtemp()) / "raw", "synthetic"), "synthetic"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def bench_one(name: str, family: str, shape: dict, ds, args, device: torch.device, dtype: torch.dtype) -> dict:
    from laser_repro.idrec.encoder import random_collaborative_encoder
    from laser_repro.laser import template, trainer
    from laser_repro.laser.backbones import tiny_tokenizer
    from laser_repro.laser.config import LaserRunConfig, MFormerConfig
    from laser_repro.laser.flops import dims, forward_flops_per_token, mfu, nonembedding_parameters, step_flops
    from laser_repro.laser.model import LaserModel

    kind = "tiny-gpt2" if family == "gpt2" else "tiny-llama"
    corpus = [template.render([it]) for it in ds.items[:2000]] + [template.USER_INSTRUCTION]
    tokenizer = tiny_tokenizer(kind, corpus, Path(args.cache))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    backbone = build_backbone(name, family, shape, tokenizer, device, dtype)
    build_s = time.perf_counter() - t0
    mformer = MFormerConfig(n_layers=2, d_model=64, n_heads=2, intermediate=128) if args.tiny else MFormerConfig()
    cfg = LaserRunConfig(mformer=mformer)
    encoder = random_collaborative_encoder(ds.n_items, device=device)
    model = LaserModel(cfg, backbone, ds.items, encoder).to(device)
    users = np.flatnonzero(ds.train_len >= 3)[: 4 * (args.steps + 1) * 3]
    hist, tgt = trainer.training_rows(ds, users, 2)
    order = np.random.default_rng(0).permutation(len(hist))[: 4 * (args.steps + 1)]
    table = torch.randn(ds.n_items, backbone.hidden_size, device=device)
    train_s = timed_steps(model, cfg, hist, tgt, table, [order[4 * s : 4 * s + 4] for s in range(args.steps + 1)], device)
    train_peak = peak_gib(device)
    row_tokens = sum(len(t) for t in model.tokens([hist[i] for i in order[4:]])) + 4 * args.steps * (
        model.prefix_len + model.suffix_len)
    n_items = min(args.items, ds.n_items)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.embed_items(min(64, n_items), args.item_batch_size)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    items_table = _refresh(model, n_items, args.item_batch_size)
    sync(device)
    refresh_s = time.perf_counter() - t0
    item_tokens = sum(len(t) for t in model.tokens([[i] for i in range(n_items)], is_item=True)) + n_items * (
        model.prefix_len + model.suffix_len)
    assert torch.isfinite(items_table).all(), "non-finite item embeddings"
    # FLOPs (laser_repro.laser.flops): the frozen backbone's forward + activation-gradient backward per step
    layers, width = dims(backbone.model.config)
    n_nonemb = nonembedding_parameters(backbone.model)
    row_len = row_tokens / (4 * args.steps)
    train_flops = step_flops(row_tokens, forward_flops_per_token(n_nonemb, layers, width, round(row_len)))
    item_len = item_tokens / n_items
    refresh_flops = item_tokens * forward_flops_per_token(n_nonemb, layers, width, round(item_len))
    peak = args.peak_tflops * 1e12
    result = {
        "backbone": name,
        "parameters": sum(p.numel() for p in backbone.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "hidden": backbone.hidden_size,
        "dtype": str(backbone.dtype).replace("torch.", ""),
        "build_s": build_s,
        "train_step_s": train_s / args.steps,
        "train_rows_per_s": 4 * args.steps / train_s,
        "train_tokens_per_s": row_tokens / train_s,
        "train_peak_gib": train_peak,
        "refresh_items_per_s": n_items / refresh_s,
        "refresh_tokens_per_s": item_tokens / refresh_s,
        "refresh_peak_gib": peak_gib(device),
        "full_refresh_estimate_s": ds.n_items / (n_items / refresh_s),
        "nonembedding_parameters": n_nonemb,
        "layers": layers,
        "width": width,
        "train_tokens": row_tokens,
        "train_seq_len": round(row_len),
        "train_flops": train_flops,
        "train_s": train_s,
        "train_tflops_per_s": train_flops / train_s / 1e12,
        "train_mfu": mfu(train_flops, train_s, peak) if peak else None,
        "refresh_flops": refresh_flops,
        "refresh_s": refresh_s,
        "refresh_mfu": mfu(refresh_flops, refresh_s, peak) if peak else None,
    }
    return result  # the model is freed on return; the next size starts with torch.cuda.empty_cache()


def timed_steps(model, cfg, hist, tgt, table: torch.Tensor, batches: list, device: torch.device) -> float:
    """Seconds of Laser training steps (loss over all items, backward, Adam as the trainer makes it) on
    ``batches[1:]`` (row indices), after ``batches[0]`` warms up kernels and the allocator."""
    from laser_repro.laser import trainer

    opt, _ = trainer.make_optimizer(cfg, model, len(batches))
    model.train()
    t0 = 0.0
    for k, idx in enumerate(batches):
        if k == 1:
            sync(device)
            t0 = time.perf_counter()
        model([hist[i] for i in idx], torch.as_tensor(tgt[idx]), table).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t0


def _refresh(model, n_items: int, batch_size: int) -> torch.Tensor:
    """Item refresh of the first ``n_items`` items (the trainer's embed_items on a subset)."""
    return model.embed_items(n_items, batch_size)


def baseline_steps(args, device: torch.device, dtype: torch.dtype) -> dict:
    """Issue 13: one LlamaRec ranker step (LoRA r 8 on q/v, batch of prompts) and one KAR generation batch
    with a random Llama2-7B-shaped model (ChatGLM2's remote code cannot load offline; the same 7B class
    of decoder stands in for its generation speed). Tokens/s of each."""
    from peft import LoraConfig, get_peft_model

    from laser_repro.llamarec.ranker import Ranker, last_logits
    from transformers import LlamaConfig, LlamaForCausalLM

    _, shape = (TINY if args.tiny else SIZES)["llama2-7b"]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape)).to(device=device, dtype=dtype)
    batch, prompt_len = (2, 64) if args.tiny else (12, 600)  # LlamaRec: micro-batch 12, prompts ~600 tokens
    ids = torch.randint(0, shape["vocab_size"], (batch, prompt_len), device=device)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05,
                                                  target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ranker = Ranker(peft_model, None, [], stand_in=True, quantized=False)  # the suite's ranker code path
    mask, positions = torch.ones_like(ids), torch.arange(prompt_len, device=device).expand_as(ids)

    def ranker_step() -> None:
        logits = last_logits(ranker, ids, mask, positions)
        torch.nn.functional.cross_entropy(logits, ids[:, 0]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ranker_step()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    ranker_step()
    sync(device)
    ranker_s = time.perf_counter() - t0
    base = peft_model.unload() if hasattr(peft_model, "unload") else model
    base.eval()
    gen_batch, gen_prompt, new = (2, 16, 4) if args.tiny else (16, 128, 64)
    prompts = torch.randint(0, shape["vocab_size"], (gen_batch, gen_prompt), device=device)
    with torch.no_grad():
        base.generate(prompts[:, :8], max_new_tokens=2, do_sample=False)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        base.generate(prompts, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        sync(device)
    gen_s = time.perf_counter() - t0
    return {"ranker_batch": batch, "ranker_prompt_tokens": prompt_len, "ranker_step_s": ranker_s,
            "ranker_tokens_per_s": batch * prompt_len / ranker_s, "kar_batch": gen_batch,
            "kar_new_tokens": new, "kar_generate_s": gen_s, "kar_new_tokens_per_s": gen_batch * new / gen_s}


def budget_epochs(budget_s: float, epoch_s: float, phase1_max: int = 15, phase2: int = 5) -> tuple[int, int]:
    """(phase-1 epochs, phase-2 epochs) that fit ``budget_s`` at ``epoch_s`` per epoch: the paper's
    (15, 5) when they fit, else at least one phase-1 epoch and about a fifth of the rest in phase 2, at least
    one as soon as two epochs fit (the protocol has both phases)."""
    n = int(budget_s // epoch_s) if epoch_s > 0 else phase1_max + phase2
    if n >= phase1_max + phase2:
        return phase1_max, phase2
    two = min(phase2, max(1 if n >= 2 else 0, n // 5))
    return max(1, n - two), two


def protocol_epoch_seconds(cfg, steps: int, device: torch.device) -> tuple[float, int, float]:
    """(seconds per training epoch, rows per epoch, seconds per step) of ``cfg``'s Laser model, from
    ``steps`` timed steps (batch ``cfg.optim.batch_size``) after one warm-up step. An epoch's item
    refresh and validation are added by the caller's margin."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.laser import trainer

    ds = load_dataset(cfg.dataset)
    model = trainer.build_model(cfg, ds, device)
    hist, tgt = trainer.training_rows(ds, trainer.training_users(ds, cfg), cfg.min_train_history)
    b = cfg.optim.batch_size
    table = torch.randn(ds.n_items, model.backbone.hidden_size, device=device)
    order = np.random.default_rng(0).permutation(len(hist))
    batches = [order[(k * b) % len(order):][:b] for k in range(steps + 1)]
    step_s = timed_steps(model, cfg, hist, tgt, table, batches, device) / steps
    n_steps = -(-len(hist) // b)
    return n_steps * step_s, len(hist), step_s


def protocol_run(carry: Path, args, device: torch.device, deadline: float, run_dir: Path) -> dict:
    """(a) of issue 11: Laser's full paper protocol (App. B defaults: phase 1 up to 15 epochs, patience 3,
    phase 2 5 epochs, lr 1e-4, batch 4) on Scientific, MiniLM from its carried fp16 folder, the trained
    BERT4Rec feeding a paper-size M-Former, no user caps. The epochs are capped to fit
    ``--protocol-budget-min`` from a measured step time (recorded in the report); ``--protocol-caps``
    (CPU logic checks only) also caps users. ``deadline`` (``time.monotonic()``): the run gets only the epochs that
    fit before it, after :data:`PROTOCOL_FIXED_S` of set-up and final tests; it is skipped (``{"skipped": why}``)
    when one epoch does not. ``run_dir``: the run folder (a fresh one per call)."""
    if deadline - time.monotonic() < PROTOCOL_FIXED_S:  # not even the set-up fits: skip before the probe
        return skipped(f"under {PROTOCOL_FIXED_S / 60:.0f} min left before --deadline-min, less than its set-up and "
                       "final tests", {})
    import dataclasses

    from laser_repro.laser.config import LaserRunConfig
    from laser_repro.laser.trainer import train_laser

    over: dict = {}
    if args.protocol_caps:
        from laser_repro.laser.tiny import TINY_MFORMER
        from laser_repro.laser.config import MFormerConfig

        over = dict(max_train_users=8, max_eval_users=16, mformer=MFormerConfig(**TINY_MFORMER))
    cfg = LaserRunConfig(dataset=str(carry / "data" / "scientific"), idrec_run=str(carry / "bert4rec"),
                         backbone=f"local:{carry / 'minilm-fp16'}", method=None, device=str(device),
                         progress=False, cache_dir=str(args.cache), **over)
    epoch_s, rows, step_s = protocol_epoch_seconds(cfg, args.protocol_probe_steps, device)
    epoch_s *= PROTOCOL_MARGIN  # item refresh and validation of all users, each epoch
    paper = (cfg.phases.phase1_max_epochs, cfg.phases.phase2_epochs)
    left = deadline - time.monotonic() - PROTOCOL_FIXED_S
    budget_s = min(args.protocol_budget_min * 60, left)
    if budget_s < epoch_s:
        return skipped(f"one epoch (~{epoch_s / 60:.1f} min: {rows} rows at {step_s * 1000:.1f} ms a step, with refresh "
                       f"and validation) does not fit the {max(left, 0) / 60:.1f} min left before --deadline-min",
                       {"rows": rows, "step_ms": step_s * 1000, "epoch_s_estimate": epoch_s})
    p1, p2 = budget_epochs(budget_s, epoch_s, *paper)
    if args.protocol_caps:
        p1, p2 = 1, 1
    print(f"protocol: {rows} training rows = {-(-rows // cfg.optim.batch_size)} steps per epoch at "
          f"{step_s * 1000:.1f} ms; ~{epoch_s / 60:.1f} min per epoch; running {p1} + {p2} epochs "
          f"(paper: up to {paper[0]} + {paper[1]})", flush=True)
    cfg = dataclasses.replace(cfg, phases=dataclasses.replace(cfg.phases, phase1_max_epochs=p1, phase2_epochs=p2))
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the probe's model is gone: free its memory for the run
    t0 = time.perf_counter()
    rec = train_laser(cfg, run_dir)
    rec["protocol_wall_s"] = time.perf_counter() - t0
    rec["protocol_budget"] = {"budget_min": args.protocol_budget_min, "rows": rows, "step_ms": step_s * 1000,
                              "epoch_s_estimate": epoch_s, "phase1_epochs": p1, "phase2_epochs": p2,
                              "paper_epochs": paper, "capped": (p1, p2) != paper}
    return rec


PROTOCOL_MARGIN = 1.3  # an epoch's item refresh and full validation on top of its training steps
PROTOCOL_FIXED_S = 120.0  # the run's first refresh, untrained validation, final validation and test, checkpoints
RUN_FILES = ("train.log", "metrics.json", "ranks.npz")  # what comes back of the protocol run (next to the report)


def skipped(why: str, budget: dict) -> dict:
    """The protocol stage's result when (a) does not run: why, and what the probe measured (``budget``)."""
    print(f"protocol skipped: {why}", flush=True)
    return {"skipped": why, "protocol_budget": budget}


def keep_run_files(run: Path, out: Path) -> None:
    """Copy the protocol run's log and results next to the report (``out``/protocol-run): on a GPU machine only the
    report's folder comes back."""
    dest = out.parent / "protocol-run"
    for name in RUN_FILES:
        if (run / name).exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run / name, dest / name)


def write_report(out: Path, lines: list[str], payload: dict) -> None:
    """The markdown report and its JSON, rewritten after every stage (a timeout keeps what finished)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")


def render(payload: dict, args, dtype: torch.dtype, data_name: str, n_items: int) -> list[str]:
    """The markdown report of what ``payload`` holds so far (each stage's result or its error)."""
    lines = [
        "# Laser at the paper's backbone sizes" + (" (TINY logic check, not a benchmark)" if args.tiny else ""),
        "",
        f"`benchmarks/gpu_backbones.py` on {payload['device']}, torch {torch.__version__}, {payload['started']}. "
        f"Data: {data_name}. Random-initialised backbones in {str(dtype).replace('torch.', '')}; "
        f"M-Former {'tiny' if args.tiny else 'paper-size (K 8, top-3, L 32, d_m 768, Z 12)'}; batch 4; "
        f"{args.steps} timed steps; refresh of {min(args.items, n_items)} items in batches of {args.item_batch_size}.",
        "",
        "| backbone | params | train step s | rows/s | train tokens/s | train TFLOP/s | train MFU | train peak GiB "
        "| refresh items/s | refresh tokens/s | refresh MFU | refresh peak GiB | full refresh est. s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def gib(v):
        return "n/a" if v is None else f"{v:.1f}"

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    for r in payload["results"]:
        lines.append(f"| {r['backbone']} | {r['parameters'] / 1e6:.0f}M | {r['train_step_s']:.3f} | {r['train_rows_per_s']:.1f} | "
                     f"{r['train_tokens_per_s']:.0f} | {r['train_tflops_per_s']:.3g} | {pct(r['train_mfu'])} | "
                     f"{gib(r['train_peak_gib'])} | {r['refresh_items_per_s']:.1f} | {r['refresh_tokens_per_s']:.0f} | "
                     f"{pct(r['refresh_mfu'])} | {gib(r['refresh_peak_gib'])} | {r['full_refresh_estimate_s']:.0f} |")
    lines += ["", f"FLOPs per token: forward 2 N + 4 n_layers T d (N non-embedding parameters, T the mean row length); "
              f"a training step through the frozen backbone costs 2x its forward (activation gradients only); MFU "
              f"against a dense bf16 peak of {args.peak_tflops:g} TFLOP/s (`laser_repro.laser.flops`)."]
    b = payload["baselines"]
    if b is not None:
        lines += ["", "## LLM baselines at Llama2-7B size (random weights)", "",
                  f"LlamaRec ranker step (LoRA r 8 on q/v, {b['ranker_batch']} prompts x {b['ranker_prompt_tokens']} "
                  f"tokens): {b['ranker_step_s']:.3f} s, {b['ranker_tokens_per_s']:.0f} tokens/s. KAR generation "
                  f"({b['kar_batch']} prompts, {b['kar_new_tokens']} new tokens each, greedy): {b['kar_generate_s']:.2f} s, "
                  f"{b['kar_new_tokens_per_s']:.0f} new tokens/s."]
    protocol = payload["protocol"]
    if protocol is not None:
        title = ("## Laser, full protocol on Scientific (MiniLM carried in fp16, run in "
                 f"{str(dtype).replace('torch.', '')}; trained BERT4Rec, paper-size M-Former)"
                 + (" (CAPPED logic check)" if args.protocol_caps else ""))
        b = protocol["protocol_budget"]
        if "skipped" in protocol:
            lines += ["", title, "", f"Not run: {protocol['skipped']}."]
        else:
            t, v = protocol["test"], protocol["valid"]
            lines += ["", title, "",
                      f"Test users {t['n']}: R@10 {100 * t['recall@10']:.2f}, N@10 {100 * t['ndcg@10']:.2f}, MRR "
                      f"{100 * t['mrr']:.2f} (x100); validation N@10 {100 * v['ndcg@10']:.2f}; reported phase "
                      f"{protocol['best_phase']}, epoch {protocol['best_epoch']}; {len(protocol['history'])} epochs, "
                      f"{protocol['item_refreshes']} item refreshes; wall {protocol['protocol_wall_s'] / 60:.1f} min."]
            lines += ["", f"Budget: {b['rows']} training rows per epoch ({b['step_ms']:.1f} ms per step of batch 4), "
                      f"about {b['epoch_s_estimate'] / 60:.1f} min per epoch with refresh and validation; "
                      + (f"CAPPED to {b['phase1_epochs']} + {b['phase2_epochs']} epochs (paper: up to "
                         f"{b['paper_epochs'][0]} + {b['paper_epochs'][1]}) to fit the time left, so this is not the "
                         "paper's full schedule." if b["capped"] else "the paper's full 15 + 5 epochs fit the budget.")]
    if payload["errors"]:
        lines += ["", "## Stages that failed", ""] + [f"- {stage}: `{err}`" for stage, err in payload["errors"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny, for a logic check)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and M-Former (CPU logic check, not a benchmark)")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=10, help="timed training steps (batch 4) after one warm-up step")
    ap.add_argument("--items", type=int, default=2048, help="items embedded in the timed refresh")
    ap.add_argument("--item-batch-size", type=int, default=128)
    ap.add_argument("--cache", default=tempfile.mkdtemp(prefix="laser-gpu-"), help="tokenizer cache folder")
    ap.add_argument("--protocol", type=Path, default=None,
                    help="a folder written by benchmarks/gpu_carry.py: also run Laser's full protocol on Scientific")
    ap.add_argument("--baselines", action="store_true",
                    help="also time one LlamaRec ranker step and one KAR generation batch at Llama2-7B size")
    ap.add_argument("--protocol-caps", action="store_true", help="cap users/epochs of --protocol (CPU logic check)")
    ap.add_argument("--protocol-budget-min", type=float, default=6.0,
                    help="wall-clock budget of --protocol: its epochs are capped to fit (recorded in the report)")
    ap.add_argument("--protocol-probe-steps", type=int, default=20, help="timed steps that estimate an epoch")
    ap.add_argument("--deadline-min", type=float, default=None,
                    help="minutes after the start by which the script must be done: --protocol gets only the epochs "
                         "that fit what is left, or is skipped (default: no deadline)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak of the GPU for MFU (H100/H200 SXM: 989); 0 = no MFU")
    ap.add_argument("--out", type=Path, default=HERE / "gpu_backbones.md", help="markdown report (JSON next to it)")
    args = ap.parse_args(argv)
    deadline = time.monotonic() + (args.deadline_min * 60 if args.deadline_min is not None else float("inf"))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here; use --tiny --device cpu for a logic check")
    logger, handler = logging.getLogger("laser_repro"), logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    level = logger.level
    logger.addHandler(handler)  # the trainers' progress in the run's output, not only in train.log
    logger.setLevel(logging.INFO)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's TERM runs the clean-up too
    try:
        return _run(args, deadline, device)
    finally:
        signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(args, deadline: float, device: torch.device) -> int:
    """The stages of :func:`main`, each recorded in the report as it ends."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ds, data_name = load_data(args.protocol)
    shapes = TINY if args.tiny else SIZES
    payload = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "tiny": args.tiny,
               "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": [], "baselines": None,
               "protocol": None, "errors": {}}

    def stage(name: str, fn, keep) -> None:
        """Run one stage and ``keep`` its result; a failure is recorded (report and stdout) and the next stage still
        runs; the report is rewritten either way."""
        try:
            keep(fn())
        except Exception as err:  # noqa: BLE001 - one stage's failure must not cost the others their device time
            traceback.print_exc()
            payload["errors"][name] = f"{type(err).__name__}: {err}"
        finally:
            write_report(args.out, render(payload, args, dtype, data_name, ds.n_items), payload)

    def keep_size(r: dict) -> None:
        payload["results"].append(r)
        print(json.dumps(r), flush=True)

    for name in args.sizes:
        family, shape = shapes[name]
        stage(f"(b) {name}", lambda: bench_one(name, family, shape, ds, args, device, dtype), keep_size)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.baselines:
        stage("baselines", lambda: baseline_steps(args, device, dtype), lambda b: payload.update(baselines=b))
    if args.protocol:
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        run = Path(tempfile.mkdtemp(prefix="protocol-run-", dir=args.cache))  # a fresh folder on every call

        def protocol():
            try:
                return protocol_run(args.protocol, args, device, deadline, run)
            finally:
                keep_run_files(run, args.out)

        stage("(a) protocol", protocol, lambda p: payload.update(protocol=p))
    write_report(args.out, render(payload, args, dtype, data_name, ds.n_items), payload)
    print(f"wrote {args.out}" + (f"; failed: {', '.join(payload['errors'])}" if payload["errors"] else ""))
    return 1 if payload["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
