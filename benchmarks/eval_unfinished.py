"""Evaluate the best-so-far epoch of an UNFINISHED train-idrec run from its checkpoint (valid + test).

    python benchmarks/eval_unfinished.py MODEL [RUN_FOLDER]

For benchmark runs stopped by a time budget before early stopping: writes
``unfinished_eval.json`` next to the checkpoint (never metrics.json, which only a finished run has).
"""
import json
import os
import sys

import numpy as np
import torch

torch.set_num_threads(1)
from laser_repro.data.dataset import load_dataset
from laser_repro.idrec.registry import build_model
from laser_repro.idrec.trainer import eval_inputs, evaluate_model
model = sys.argv[1]
run = sys.argv[2] if len(sys.argv) > 2 else f"benchmarks/out/idrec_scientific/{model}/seed~0"
blob = torch.load(f"{run}/checkpoint.pt", map_location="cpu", weights_only=False)
ds = load_dataset("benchmarks/out/data/scientific")
cache = f"{run}/text_features.npz" if os.path.exists(f"{run}/text_features.npz") else f"{run}/text_features.npy"
feats = None if model != "zesrec" else torch.from_numpy(np.load(cache)["vectors"] if cache.endswith("z") else np.load(cache))
m = build_model(model, ds.n_items, {}, text_features=feats)
m.load_state_dict(blob["best_state"])
st = blob["state"]
res = {s: evaluate_model(m, eval_inputs(ds, s, m.history_len), torch.device("cpu"), 1024, "pessimistic").metrics for s in ("valid", "test")}
out = {"note": "UNFINISHED run (stopped by the benchmark's time budget, not by early stopping): best-so-far epoch evaluated",
       "epochs_run": st["epoch"], "best_epoch": st["best_epoch"], "elapsed_s": st["elapsed_s"], **res}
json.dump(out, open(f"{run}/unfinished_eval.json", "w"), indent=1)
print(model, {k: (round(100*v["recall@10"], 2), round(100*v["ndcg@10"], 2), round(100*v["mrr"], 2)) for k, v in res.items()}, st["epoch"], st["best_epoch"], round(st["elapsed_s"]))
