"""Evaluate the best-so-far epoch of an UNFINISHED train-idrec run from its checkpoint (valid + test).

    python benchmarks/eval_unfinished.py MODEL [RUN_FOLDER] [--data FOLDER] [--threads 1]

For benchmark runs stopped by a time budget before early stopping: writes ``unfinished_eval.json`` next to the
checkpoint (never metrics.json, which only a finished run has). The model is built with the registry's settings
(``--model-config`` JSON overrides them), as the Scientific benchmarks train it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the run's ID model (sasrec, bert4rec, fdsa, zesrec, ...)")
    ap.add_argument("run", nargs="?", type=Path, default=None,
                    help="its run folder (default: benchmarks/out/idrec_scientific/MODEL/seed~0)")
    ap.add_argument("--data", type=Path, default=OUT / "data" / "scientific", help="the prepared data set it trains on")
    ap.add_argument("--model-config", type=json.loads, default={}, help="model_config overrides as JSON (default {})")
    ap.add_argument("--threads", type=int, default=1)
    return ap


def main(argv: list[str] | None = None) -> int:
    from laser_repro.data.dataset import load_dataset
    from laser_repro.idrec.registry import build_model
    from laser_repro.idrec.trainer import TEXT_FILE, eval_inputs, evaluate_model
    from laser_repro.io import write_json

    args = parser().parse_args(argv)
    run = args.run or OUT / "idrec_scientific" / args.model / "seed~0"
    checkpoint = run / "checkpoint.pt"
    if not checkpoint.exists():
        raise SystemExit(f"{checkpoint}: missing; expected the checkpoint of a train-idrec run")
    torch.set_num_threads(args.threads)
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if blob.get("best_state") is None:
        raise SystemExit(f"{checkpoint}: no best-so-far epoch yet (no validated epoch)")
    ds = load_dataset(args.data)
    feats = None
    if (run / TEXT_FILE).exists():
        with np.load(run / TEXT_FILE) as z:
            feats = torch.from_numpy(z["vectors"])
    model = build_model(args.model, ds.n_items, args.model_config, text_features=feats)
    model.load_state_dict(blob["best_state"])
    state = blob["state"]
    res = {split: evaluate_model(model, eval_inputs(ds, split, model.history_len), torch.device("cpu"), 1024,
                                 "pessimistic").metrics for split in ("valid", "test")}
    write_json(run / "unfinished_eval.json", {
        "note": "UNFINISHED run (stopped by the benchmark's time budget, not by early stopping): best-so-far epoch "
                "evaluated", "epochs_run": state["epoch"], "best_epoch": state["best_epoch"],
        "elapsed_s": state["elapsed_s"], **res}, indent=1)
    print(args.model, {k: tuple(round(100 * v[m], 2) for m in ("recall@10", "ndcg@10", "mrr")) for k, v in res.items()},
          state["epoch"], state["best_epoch"], round(state["elapsed_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
