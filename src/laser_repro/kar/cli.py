"""``laser-repro kar-knowledge``: generate (or reuse) KAR's knowledge texts for a prepared data set."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write KAR's knowledge file for a data set: one text per item prompt and per user prompt (KAR's product "
        "prompts without ratings; user history = the first min(ceil(n/2), 15) training items). Texts already in "
        "--out (or its working copy --out.cache) for the same generator, prompt version and --max-new-tokens (an LLM's) "
        "are reused; the working copy is saved after every batch, so an interrupted generation resumes, and --out is "
        "written when complete."
    )
    parser.add_argument("--data", required=True, type=Path, help="prepared data set folder")
    parser.add_argument("--generator", default="template",
                        help="template (deterministic stand-in, no LLM; the default) | smollm2 | tiny-llama | "
                             "chatglm2-6b | another causal LM of the hub registry | local:PATH (a model folder); "
                             "a KAR run's knowledge_generator must name the same")
    parser.add_argument("--out", required=True, type=Path, help="knowledge JSON file")
    parser.add_argument("--max-users", type=int, default=None,
                        help="generate user texts for a seeded subset of this many users only (CPU demonstrations)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="tokens each answer may have (at least 1)")
    parser.add_argument("--cache-dir", default=None, help="backbone cache (smollm2's dequantised weights)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when visible, else CPU) | cpu | cuda[:N]")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from laser_repro.data.dataset import data_fingerprint, load_dataset
    from laser_repro.data.splits import seeded_subset
    from laser_repro.kar.knowledge import KnowledgeStore, decoding, knowledge, llm_generator, template_generator
    from laser_repro.laser.hub import GENERATORS, check_name
    from laser_repro.train.scaffold import resolve_device

    check_name("--generator", args.generator, GENERATORS)  # before the data set and any model is loaded
    if args.out.is_dir():
        raise ValueError(f"--out {args.out}: a folder; expected the knowledge JSON file's path")
    if args.max_new_tokens < 1 or (args.max_users is not None and args.max_users < 1):
        raise ValueError(f"--max-new-tokens {args.max_new_tokens} / --max-users {args.max_users}: expected at least 1 "
                         "(0 new tokens would store an empty text for every prompt)")
    data_fingerprint(args.data)  # a data folder edited by hand since it was prepared is refused
    ds = load_dataset(args.data)
    gen = (template_generator(ds) if args.generator == "template"
           else llm_generator(args.generator, args.cache_dir, resolve_device(args.device), args.max_new_tokens))
    users = None if args.max_users is None else seeded_subset(np.arange(ds.n_users), args.max_users, 0, 3).tolist()
    store = KnowledgeStore(args.out, args.generator, decoding=decoding(args.generator, args.max_new_tokens))
    _, _, n = knowledge(ds, store, gen, users)
    print(f"{args.out}: {n} texts generated with {args.generator} ({ds.n_items} items, "
          f"{ds.n_users if users is None else len(users)} users)")
    return 0
