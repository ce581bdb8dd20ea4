"""The first real-data Laser result: Scientific, a trained BERT4Rec feeding the M-Former, real backbones.

    python benchmarks/bench_laser_scientific.py --threads 1 [--variants main no-mformer no-prefix]
    python benchmarks/bench_laser_scientific.py --report-only

Side by side at one training budget (issue 11): (a) BERT4Rec alone (the ID benchmark's seed-0 run,
which also feeds the M-Former), (b) Laser, (c) Laser "w/o M-Former" (learnable prefix), (d) Laser
"w/o prefix", all with MiniLM-L6 (a real pretrained stand-in for the paper's LLMs) and, with
``--variants smollm2 smollm2-no-mformer smollm2-no-prefix``, the same three on SmolLM2-135M (a real
Llama-family decoder; a third of the training users, half the validation and curve users). The MiniLM runs train
under further seeds with ``--variants main-seed1 main-seed2`` (likewise ``no-mformer-seed<k>``, ``no-prefix-seed<k>``);
the report's seeds section averages each variant over the seeds it has. ``--variants main-lambda0.1
main-lambda0.1-seed1 main-lambda0.1-seed2`` is a diagnostic: each seed's M-Former run with lambda 0.1 in Eq. 10
(App. B: 0.01), compared with it seed by seed; ``--variants main-lr1e-4 main-lr1e-4-seed1 main-lr1e-4-seed2`` is
another: each seed's M-Former run at App. B's lr 1e-4 (the budget's lr is 1e-3); ``--variants main-lr1e-4-longer``
is seed 0's with up to 4 phase-1 epochs, ``--variants no-mformer-lr1e-4 no-prefix-lr1e-4`` (and their
``-seed<k>``) are the two ablations at lr 1e-4;
``--variants main-rerun main-rerun-seed1 main-rerun-seed2`` reruns each seed's M-Former run unchanged, now that its
CPU gradients are bit-repeatable.

Budget on 2 cores: a seeded subset of training users (``--train-users``), a seeded validation cap
(``--valid-users``), 2 phase-1 epochs (each with an item refresh) and 1 phase-2 epoch, batch 8,
lr 1e-3 (the CPU M-Former of ``bench_laser_cpu.py``). Every one of the 11,039 test users is tested at
the selected epoch; the learning curve tests a seeded subset (``--curve-users``) after every epoch.
All caps are recorded in each run's metrics.json. Runs resume when re-run. Nothing here is tuned
towards a paper number.

The report reads the run folders (``--runs``, not committed) and copies each finished run's metrics.json,
ranks.npz and diagnostics into ``benchmarks/records/laser_scientific/`` (committed), so a later machine without
the run folders still reports them, t-tests included. Runs from before the records existed keep their lines
from the previous report, named as such under the results table.

The report (benchmarks/laser_scientific.md) adds diagnostics of the selected models: the anisotropy
of the item table (mean cosine of random item pairs), the spread of the logits cos/tau, and the norm
of the prefix vectors against the backbone's token embeddings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench_laser_cpu import CPU_MFORMER  # the M-Former of the real-data runs
from records import in_progress, keep_record, kept_lines, newer_record, source, stale_inputs
from laser_repro.config import from_dict
from laser_repro.io import write_json, write_text
from laser_repro.laser import trainer
from laser_repro.laser.config import BiTuningConfig, LaserRunConfig, LossConfig, OptimConfig, PhaseConfig
from laser_repro.train.scaffold import recorded_config

HERE = Path(__file__).resolve().parent
REPORT = HERE / "laser_scientific.md"
IDREC_RUN = HERE / "out" / "idrec_scientific" / "bert4rec" / "seed~0"
IDREC_RECORD = HERE / "records" / "idrec_scientific" / "bert4rec" / "seed~0"  # bench_idrec_scientific.py's record of it
ANALYSIS = "<!-- analysis: hand-written, kept when the tables above are regenerated -->"
# Table 2, Scientific, x100: the paper's BERT4Rec and Laser cells (for orientation only; never a target)
PAPER = {"bert4rec": {"recall@10": 10.61, "ndcg@10": 7.90, "mrr": 7.59}}
VARIANTS = {  # name -> (label, backbone, bituning overrides)
    "main": ("Laser (M-Former prefix + suffix)", "minilm", {}),
    "no-mformer": ("Laser w/o M-Former (learnable prefix)", "minilm", {"prefix": "learnable"}),
    "no-prefix": ("Laser w/o prefix", "minilm", {"prefix": "none"}),
    "smollm2": ("Laser (M-Former prefix + suffix)", "smollm2", {}),
    "smollm2-no-mformer": ("Laser w/o M-Former (learnable prefix)", "smollm2", {"prefix": "learnable"}),
    "smollm2-no-prefix": ("Laser w/o prefix", "smollm2", {"prefix": "none"}),
    # diagnostic, not in the paper: is the M-Former's output scale what stops SmolLM2 from learning?
    "smollm2-token-scale": ("Laser, M-Former prefix at the token norm (diagnostic)", "smollm2",
                            {"prefix_scale": "token"}),
    # diagnostic, not in the paper: does the prefix's dependence on the input stop SmolLM2 from learning?
    "smollm2-constant-input": ("Laser, M-Former fed one constant input (diagnostic)", "smollm2",
                               {"prefix_input": "constant"}),
    # diagnostic: the M-Former run at App. B's learning rate 1e-4 instead of the budget's 1e-3 (BUDGETS)
    "smollm2-paper-lr": ("Laser (M-Former prefix + suffix) at App. B's lr 1e-4 (diagnostic)", "smollm2", {}),
}
# A diagnostic's own budget (overrides of the command-line budget): one phase-1 epoch, compared with the first
# epoch of the other SmolLM2 runs (same users, order and constant lr), tested on a seeded 1,000 users
DIAGNOSTIC_BUDGET = {"phase1_epochs": 1, "phase2_epochs": 0, "smollm2_test_users": 1000}
PAPER_LR = 1e-4  # App. B's learning rate (the budget's is --lr, 1e-3)
BUDGETS = {"smollm2-token-scale": DIAGNOSTIC_BUDGET, "smollm2-constant-input": DIAGNOSTIC_BUDGET,
           "smollm2-paper-lr": {**DIAGNOSTIC_BUDGET, "lr": PAPER_LR}}
# Diagnostic, not in the paper: the MiniLM M-Former with lambda = 0.1 (Eq. 10; App. B sets 0.01, Figure 4's text
# calls 0.1 best), the full budget, every test user, under each seed: does a stronger pull to balance keep the router
# from concentrating (L_LB rose in every poorer run) and steady the run across seeds? Compared seed by seed with main.
LAMBDA_WEIGHT = 0.1
LAMBDA = f"main-lambda{LAMBDA_WEIGHT}"
VARIANTS[LAMBDA] = (f"Laser (M-Former prefix + suffix), lambda {LAMBDA_WEIGHT} (diagnostic)", "minilm", {})
BUDGETS[LAMBDA] = {"loss": {"lb_weight": LAMBDA_WEIGHT}}
# Diagnostic, not in the paper's Table 3: the MiniLM M-Former at App. B's learning rate 1e-4 instead of the budget's
# 1e-3, the full budget, every test user, under each seed: is lr 1e-3 what makes the run fragile across seeds?
# Compared seed by seed with main (at this budget a smaller lr also moves less: the curves say how far it got).
SLOW, SLOW_LABEL = "main-lr1e-4", "Laser (M-Former prefix + suffix), App. B's lr 1e-4"
VARIANTS[SLOW] = (f"{SLOW_LABEL} (diagnostic)", "minilm", {})
BUDGETS[SLOW] = {"lr": PAPER_LR}
# Diagnostic: the main run of each seed again, unchanged, after the M-Former's gradients were made bit-repeatable
# on CPU threads (mformer.py: index_select). The main records were trained before, when two runs of one config
# drifted apart from their second step: how much of main's spread over seeds was that drift, not the seed?
RERUN = "main-rerun"
VARIANTS[RERUN] = ("Laser (M-Former prefix + suffix), rerun with bit-repeatable M-Former gradients (diagnostic)",
                   "minilm", {})
DIAGNOSTIC_SEEDED = (LAMBDA, SLOW, RERUN)  # each compared with main on the seeds both have
# ... and the two ablations at App. B's lr, under each seed: Table 3's comparison at the paper's lr (each is its
# lr-1e-3 ablation with only the lr changed; compared with main-lr1e-4 on the seeds both have)
SLOW_ABLATIONS = {f"{base}-lr1e-4": base for base in ("no-mformer", "no-prefix")}
for _name, _base in SLOW_ABLATIONS.items():
    VARIANTS[_name] = (f"{VARIANTS[_base][0]}, App. B's lr 1e-4 (diagnostic)", *VARIANTS[_base][1:])
    BUDGETS[_name] = BUDGETS[SLOW]
SLOW_LEARNABLE, SLOW_NOPREFIX = SLOW_ABLATIONS
# ... and, seed 0 only, with more phase-1 epochs: is lr 1e-4 only slower? (Its first epochs are main-lr1e-4's config;
# both records predate the bit-repeatable M-Former gradients, so their first epochs differ by rounding.)
SLOW_LONGER, LONGER_EPOCHS = f"{SLOW}-longer", 4
VARIANTS[SLOW_LONGER] = (f"{SLOW_LABEL}, up to {LONGER_EPOCHS} phase-1 epochs (diagnostic)", "minilm", {})
BUDGETS[SLOW_LONGER] = {**BUDGETS[SLOW], "phase1_epochs": LONGER_EPOCHS}
# Further training seeds of the MiniLM runs ("<variant>-seed<k>": other seeded training, validation and curve users,
# batch order and initialisation; the same seed-0 BERT4Rec input and every test user), averaged in the report's
# seeds section
SEEDED, EXTRA_SEEDS = ("main", "no-mformer", "no-prefix", *DIAGNOSTIC_SEEDED, *SLOW_ABLATIONS), (1, 2)
VARIANTS.update({f"{b}-seed{k}": (f"{VARIANTS[b][0]}, seed {k}", *VARIANTS[b][1:]) for b in SEEDED for k in EXTRA_SEEDS})
BUDGETS.update({f"{b}-seed{k}": {**BUDGETS.get(b, {}), "seed": k} for b in SEEDED for k in EXTRA_SEEDS})


def seeds_of(base: str) -> list[str]:
    """The variants that train ``base`` under each seed: ``base`` itself (seed 0), then its ``-seed<k>`` runs."""
    return [base] + [f"{base}-seed{k}" for k in EXTRA_SEEDS]


def uses_mformer(variant: str) -> bool:
    """The variant's prefix comes from the M-Former, the only part that reads the BERT4Rec run and routes (Eq. 7)."""
    return VARIANTS[variant][2].get("prefix", "mformer") == "mformer"


def seed_of(variant: str) -> int:
    """The training seed of a variant (0 unless its budget sets one)."""
    return BUDGETS.get(variant, {}).get("seed", 0)


# Committed records of finished runs (records.py), so the report survives a machine whose benchmarks/out is gone
RECORDS = HERE / "records" / "laser_scientific"
METRICS = ("recall@10", "ndcg@10", "mrr")


def run_config(variant: str, args) -> LaserRunConfig:
    _, backbone, bituning = VARIANTS[variant]
    args = argparse.Namespace(**{**vars(args), **BUDGETS.get(variant, {})})
    small = backbone == "smollm2"  # a third of the training users, half the validation and curve users
    return LaserRunConfig(
        dataset=str(args.data), idrec_run=str(args.idrec_run) if uses_mformer(variant) else None, backbone=backbone, cache_dir=str(args.cache),
        mformer=CPU_MFORMER, bituning=BiTuningConfig(**bituning), loss=LossConfig(**getattr(args, "loss", {})),
        phases=PhaseConfig(phase1_max_epochs=args.phase1_epochs, phase1_patience=2, phase2_epochs=args.phase2_epochs),
        optim=OptimConfig(batch_size=8, lr=args.lr),
        max_train_users=args.train_users // 3 if small else args.train_users,
        max_valid_users=args.valid_users // 2 if small else args.valid_users,
        test_curve_users=args.curve_users // 2 if small else args.curve_users,
        max_eval_users=args.smollm2_test_users if small else args.test_users,
        num_threads=args.threads, progress=False,  # no-grad batches: the device default (laser_batches.md)
        seed=getattr(args, "seed", 0),
    )


def train(args) -> None:
    if not (args.data / "stats.json").exists():
        sys.exit(f"{args.data}: no prepared Scientific data; prepare it with `laser-repro data prepare --source "
                 f"recformer --input ../shared/data/amazon-scientific-recformer --name scientific --out {args.data}`")
    needs_idrec = any(uses_mformer(v) for v in args.variants)
    if needs_idrec and not (args.idrec_run / "metrics.json").exists():  # the ID benchmark's seed-0 BERT4Rec
        from laser_repro.experiment.registry import METHODS
        from laser_repro.idrec.config import IDRecRunConfig
        from laser_repro.idrec.trainer import train_idrec

        print(f"== BERT4Rec seed 0 -> {args.idrec_run}", flush=True)
        over = {**METHODS["bert4rec"].base_config(), "dataset": str(args.data), "seed": 0,
                "num_threads": args.threads, "progress": False}
        train_idrec(from_dict(IDRecRunConfig, over), args.idrec_run)
    if args.same_budget_bert4rec:
        train_bert4rec_budget(args)
    for v in args.variants:
        print(f"== {v}", flush=True)
        t0 = time.time()
        rec = trainer.train_laser(run_config(v, args), args.runs / v)
        print(f"== {v}: test ndcg@10 {rec['test']['ndcg@10']:.4f} ({time.time() - t0:.0f} s)", flush=True)


def retest(args) -> None:
    """Test each finished run of ``--retest`` on every test user, from the config its metrics.json recorded (a run made
    under an earlier form of :func:`run_config`): its selected model ranks the users it did not test, nothing is
    retrained (``train.scaffold`` "Retest")."""
    for v in args.retest:
        path = args.runs / v / "metrics.json"
        if not path.exists():
            sys.exit(f"--retest {v}: no finished run ({path} missing)")
        if newer_record(args.runs / v, RECORDS / v):  # its record is a later training (pulled): never replaced
            sys.exit(f"--retest {v}: {RECORDS / v} holds a later training than the run folder {args.runs / v}; "
                     "retesting the older model would not be that result (rerun the training, or move the folder aside)")
        cfg = dataclasses.replace(recorded_config(LaserRunConfig, json.loads(path.read_text())), max_eval_users=None,
                                  num_threads=args.threads, progress=False)
        print(f"== retest {v}", flush=True)
        rec = trainer.train_laser(cfg, args.runs / v)
        print(f"== {v}: test ndcg@10 {rec['test']['ndcg@10']:.4f} on {rec['test']['n']} users", flush=True)


BUDGET_RUN = "bert4rec-budget"  # BERT4Rec trained on as many seeded users as the Laser runs


def train_bert4rec_budget(args) -> dict:
    """(a') BERT4Rec at Laser's training budget: a seeded fraction of the users giving ``--train-users``
    training users (the ID trainer draws a fraction, so the users are as many, not the same ones)."""
    from laser_repro.data.dataset import load_dataset
    from laser_repro.experiment.registry import METHODS
    from laser_repro.idrec.config import IDRecRunConfig
    from laser_repro.idrec.trainer import train_idrec

    pool = int((load_dataset(args.data).train_len >= 2).sum())
    over = {**METHODS["bert4rec"].base_config(), "dataset": str(args.data), "seed": 0, "num_threads": args.threads,
            "progress": False, "train_user_fraction": round(args.train_users / pool, 6)}
    print(f"== {BUDGET_RUN}: fraction {over['train_user_fraction']} of {pool} users", flush=True)
    return train_idrec(from_dict(IDRecRunConfig, over), args.runs / BUDGET_RUN)


def paired_tests(folders: dict[str, list[Path]], pairs: list[tuple[str, str]], metric: str = "ndcg@10") -> list[str]:
    """Markdown rows of two-sided paired t-tests on per-user test ``metric`` (common users; a name with several run
    folders, one per seed, is seed-averaged per user as the tables do: ``artifacts.runs.paired_values``)."""
    from laser_repro.artifacts.runs import RunGroup, load_run, paired_values
    from laser_repro.artifacts.significance import paired_ttest

    groups = {name: RunGroup("scientific", name, "main", tuple(range(len(fs))),
                             runs=[load_run(f, i) for i, f in enumerate(fs)])
              for name, fs in folders.items() if fs and all((f / "ranks.npz").exists() for f in fs)}
    rows = []
    for a, b in pairs:
        if a not in groups or b not in groups:
            rows.append(f"| {a} vs {b} | — | — | — | — | not run |")
            continue
        t = paired_ttest(*paired_values(groups[a], groups[b], "test", metric))
        rows.append(f"| {a} vs {b} | {t.n} | {100 * t.mean_a:.2f} vs {100 * t.mean_b:.2f} | {t.t:.2f} | {t.p:.2g} | "
                    + ("a better" if t.p < 0.05 and t.mean_a > t.mean_b else "b better" if t.p < 0.05 else "no difference")
                    + " |")
    return rows


# ---------------------------------------------------------------------------------------
# diagnostics of a finished run
# ---------------------------------------------------------------------------------------
def diagnose(folder: Path, n_pairs: int = 20000, n_rows: int = 64) -> dict:
    """Anisotropy, logit spread and prefix scale of the selected model of one run."""
    metrics = json.loads((folder / "metrics.json").read_text())
    cfg = dataclasses.replace(recorded_config(LaserRunConfig, metrics), num_threads=0, progress=False)
    table = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)["table"].float()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, table.shape[0], n_pairs), rng.integers(0, table.shape[0], n_pairs)
    keep = a != b
    unit = torch.nn.functional.normalize(table, dim=1)
    cos = (unit[a[keep]] * unit[b[keep]]).sum(1)
    out = {"item_cos_mean": float(cos.mean()), "item_cos_std": float(cos.std()),
           "logit_std": float(cos.std() / cfg.loss.tau), "tau": cfg.loss.tau}
    from laser_repro.data.dataset import load_dataset

    ds = load_dataset(cfg.dataset)
    model = trainer.build_model(cfg, ds, torch.device("cpu"))
    model.load_trainable_state(torch.load(folder / "model.pt", map_location="cpu", weights_only=False)["trainable"])
    model.eval()
    users = np.flatnonzero(ds.train_len >= 3)[:n_rows]
    hist = [ds.train_sequence(int(u)) for u in users]
    with torch.no_grad():
        tok = [model.backbone.embed(torch.as_tensor(t).unsqueeze(0)).float()[0] for t in model.tokens(hist)]
        out["token_norm"] = float(torch.cat(tok).norm(dim=1).mean())
        prefix, _ = model._prefix(hist, False)
        out["prefix_norm"] = float(prefix.float().norm(dim=-1).mean()) if prefix is not None else None
        out["suffix_norm"] = float(model.suffix.float().norm(dim=-1).mean()) if model.suffix is not None else None
    return out


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
def x100(m: dict, k: str) -> str:
    return f"{100 * m[k]:.2f}" if m and k in m else "—"


def wall(r: dict) -> str:
    """A Laser run's wall minutes; a retest (more test users, no training: ``train.scaffold`` "Retest") added."""
    retest = r.get("retested")
    return f"{r['wall_time_s'] / 60:.0f}" + (f" + {retest['wall_time_s'] / 60:.0f} retest" if retest else "")


def idrec_row(path: Path, label: str) -> str:
    """A BERT4Rec run's row of the results table (its training users, or "all")."""
    if not path.exists():
        return f"| {label} | — | missing run | | | | | — | — | — | |"
    b = json.loads(path.read_text())
    frac = b["config"].get("train_user_fraction", 1.0)
    users = "all" if frac >= 1.0 else f"{b['train_users']} (seeded fraction {frac})"
    return (f"| {label} | — | {users} | {b.get('train_instances', '—')} instances | {b['valid'].get('n', 'all')} "
            f"| {b['test'].get('n', 'all')} | epoch {b.get('best_epoch', '?')} | {x100(b['test'], 'recall@10')} "
            f"| {x100(b['test'], 'ndcg@10')} | {x100(b['test'], 'mrr')} | {b.get('wall_time_s', 0) / 60:.0f} |")


def report(args) -> str:
    """The report from the run folders in ``--runs`` (synced into the committed records), else the records, else
    the previous report's lines for that run (named under the results table), else a 'not run' gap."""
    old = REPORT.read_text() if REPORT.exists() else ""
    folders = {"bert4rec": args.idrec_run, BUDGET_RUN: args.runs / BUDGET_RUN, **{v: args.runs / v for v in VARIANTS}}
    records = {name: RECORDS / name for name in folders}
    if args.idrec_run == IDREC_RUN:  # the ID benchmark's own run: its record there, not a second copy here
        records["bert4rec"] = IDREC_RECORD
    for name, folder in folders.items():
        keep_record(folder, records[name])
    found = {name: source(folder, records[name]) for name, folder in folders.items()}
    # a result whose data or BERT4Rec input has changed here is shown as stale, never as a result
    def reads_bert4rec(metrics: dict) -> bool:  # only the M-Former reads the ID model
        return (metrics.get("config") or {}).get("bituning", {}).get("prefix", "mformer") == "mformer"

    metrics = {name: json.loads((f / "metrics.json").read_text()) for name, f in found.items() if f}
    stale = {name: stale_inputs(m, getattr(args, "data", None),
                                {"idrec_run": folders["bert4rec"]} if name in VARIANTS and reads_bert4rec(m) else {})
             for name, m in metrics.items()}
    stale = {name: why for name, why in stale.items() if why}
    kept: list[str] = []
    unfinished = [n for n, f in folders.items() if found[n] and in_progress(f)]  # reruns: earlier results until done

    def old_or(names: list[str], starts: str, fallback: list[str], block: bool = False) -> list[str]:
        lines = kept_lines(old, starts, block)
        kept.extend(n for n in names if lines and n not in kept)
        return lines or fallback

    lines = ["# Laser on the real Scientific set (first real-data result)", "",
             "Written by `python benchmarks/bench_laser_scientific.py --report-only` from the runs that "
             "`bench_laser_scientific.py` trained (see its docstring for the commands) or their committed records "
             "(`benchmarks/records/laser_scientific/`). Values x100. Rows marked (diagnostic) are not the paper's "
             "Laser: the SmolLM2 ones are one phase-1 epoch of the SmolLM2 M-Former run with one change, tested on "
             "1,000 seeded test users; the MiniLM lambda 0.1 and lr 1e-4 ones are the MiniLM M-Former run (same seed, "
             "full budget, every test user) with lambda 0.1 in Eq. 10 instead of App. B's 0.01, or with App. B's "
             "lr 1e-4 instead of the budget's 1e-3 (and up to 4 phase-1 epochs where the label says so). Every Laser "
             "run uses lr 1e-3 unless its label says otherwise.", ""]
    rows = ["| system | backbone | training users | train rows | valid users | test users | best (phase, epoch) "
            "| test R@10 | test N@10 | test MRR | wall (min) |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, label in (("bert4rec", "(a) BERT4Rec alone (ID benchmark, seed 0; the M-Former's input)"),
                        (BUDGET_RUN, "(a') BERT4Rec at the same budget")):
        if name in stale:
            rows.append(f"| {label} | — | STALE: {'; '.join(stale[name])} | | | | | — | — | — | |")
            continue
        rows += ([idrec_row(found[name] / "metrics.json", label)] if found[name]
                 else old_or([name], f"| {label} |", [idrec_row(folders[name] / "metrics.json", label)]))
    recs = {}
    for v, (label, backbone, _) in VARIANTS.items():
        if v in stale:
            rows.append(f"| {label} | {backbone} | STALE: {'; '.join(stale[v])} | | | | | — | — | — | |")
            continue
        if found[v] is None:
            ckpt = args.runs / v / "checkpoint.pt"
            previous = kept_lines(old, f"| {label} | {backbone} |")
            if ckpt.exists() and previous:  # a rerun in progress: the previous results stay until it finishes
                unfinished.append(v)
            if ckpt.exists() and not previous:  # an unfinished run: its curve so far, no test
                st = torch.load(ckpt, map_location="cpu", weights_only=False)["state"]
                recs[v] = {"history": st["history"], "untrained_valid": st["untrained_valid"], "unfinished": True}
                rows.append(f"| {label} | {backbone} | UNFINISHED ({st['phase']}, epoch {st['epoch']}; see its curve) "
                            "| | | | | — | — | — | |")
            else:
                rows += old_or([v], f"| {label} | {backbone} |", [f"| {label} | {backbone} | not run | | | | | — | — | — | |"])
            continue
        r = recs[v] = json.loads((found[v] / "metrics.json").read_text())
        c = r["config"]
        rows.append(f"| {label} | {backbone} | {c['max_train_users']} (seeded) | {r['train_rows']} | {r['valid']['n']} "
                    f"| {r['test']['n']} | {r['best_phase']}, {r['best_epoch']} | {x100(r['test'], 'recall@10')} "
                    f"| {x100(r['test'], 'ndcg@10')} | {x100(r['test'], 'mrr')} | {wall(r)} |")
    lines += rows
    kept_note = len(lines)
    lines += ["", f"Paper, Table 2, Scientific: BERT4Rec R@10 {PAPER['bert4rec']['recall@10']}, "
              f"N@10 {PAPER['bert4rec']['ndcg@10']}, MRR {PAPER['bert4rec']['mrr']} (orientation only).", ""]
    pairs = [(v, other) for v in VARIANTS if seed_of(v) == 0 for other in ("bert4rec", BUDGET_RUN)]
    pairs += [("main", "no-mformer"), ("main", "no-prefix"), ("no-prefix", "no-mformer"), ("smollm2", "main"),
              ("smollm2-no-mformer", "main"),
              ("smollm2", "smollm2-no-mformer"), ("smollm2", "smollm2-no-prefix"), ("smollm2-no-prefix", "no-prefix"),
              ("smollm2-no-mformer", "smollm2-no-prefix"), ("smollm2-no-mformer", "no-mformer"),
              ("smollm2-token-scale", "smollm2"), ("smollm2-constant-input", "smollm2"),
              ("smollm2-constant-input", "smollm2-token-scale"), ("smollm2-paper-lr", "smollm2"),
              ("smollm2-paper-lr", "smollm2-constant-input"),
              *(pair for d in DIAGNOSTIC_SEEDED for pair in zip(seeds_of(d), seeds_of("main"))),
              (SLOW_LONGER, SLOW), (SLOW_LONGER, "main"), (SLOW, SLOW_LEARNABLE), (SLOW, SLOW_NOPREFIX),
              (SLOW_NOPREFIX, SLOW_LEARNABLE), *((slow, base) for slow, base in SLOW_ABLATIONS.items())]
    tests = paired_tests({k: [f] for k, f in found.items() if f and k not in stale}, pairs)

    def same_runs(line: str, a: str, b: str) -> bool:
        """Whether an old t-test row was computed on the runs here: each side found here shows the same test N@10."""
        shown = [v.strip() for v in line.split("|")[3].split(" vs ")]
        return len(shown) == 2 and all(x100(metrics[x]["test"], "ndcg@10") == v for x, v in zip((a, b), shown)
                                       if found[x])

    reported = set(kept) | {name for name, f in found.items() if f}  # run, whether or not its ranks are here
    for i, (a, b) in enumerate(pairs):
        if a in stale or b in stale:
            tests[i] = f"| {a} vs {b} | — | — | — | — | STALE: {' and '.join(x for x in (a, b) if x in stale)} |"
        elif tests[i].endswith("not run |"):
            lost = [x for x in (a, b) if x in reported and not found[x]]
            gap = (tests[i] if any(x not in reported for x in (a, b)) else tests[i].replace(
                "not run |", f"no per-user ranks of {' and '.join(lost)} (run before records were kept) |"))
            # an old test is kept only for the runs it was computed on: never an old run against a new one
            previous = kept_lines(old, f"| {a} vs {b} |")
            tests[i] = previous[0] if previous and same_runs(previous[0], a, b) else gap
            kept.extend(x for x in (a, b) if previous and tests[i] == previous[0] and not found[x] and x not in kept)
    lines += ["## Paired t-tests (test NDCG@10 per user, two-sided, common test users)", "",
              "Computed from each run's ranks.npz (`laser_repro.artifacts.significance.paired_ttest`); "
              "'a better' / 'b better' at p < 0.05.", "",
              "| a vs b | n | a vs b (x100) | t | p | verdict |", "|---|---:|---|---:|---:|---|", *tests, ""]
    lines += seeds_section({k: f for k, f in found.items() if k not in stale}, metrics)
    lines += ["## Learning curves (NDCG@10 x100)", "",
              "Validation on the capped validation users; test on the seeded curve subset (n in the header). "
              "Epoch -1 = before training (untrained prefix/suffix, first item refresh). L_LB: the epoch's mean "
              "load-balancing loss of the M-Former's router (Eq. 7: 1 when the experts are used evenly, up to K = 8 "
              "when one expert takes every item).", ""]
    for v in VARIANTS:
        if v in stale:
            continue
        if v not in recs:
            block = old_or([v], f"**{v}** (", [], block=True)
            lines += block + ([""] if block and block[-1] else [])
            continue
        r = recs[v]
        n_curve = next((h["test"]["n"] for h in r["history"] if "test" in h), 0)
        lines += [f"**{v}** ({VARIANTS[v][1]}; curve test users {n_curve}"
                  + ("; UNFINISHED, the curve so far)" if r.get("unfinished") else ")"), "",
                  "| phase | epoch | loss | L_LB (Eq. 7) | valid N@10 | curve-test N@10 |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| — | -1 | — | — | {x100(r['untrained_valid'], 'ndcg@10')} | — |"]
        for h in r["history"]:
            lb = f"{h['loss_lb']:.3f}" if uses_mformer(v) and "loss_lb" in h else "—"
            lines.append(f"| {h['phase']} | {h['epoch']} | {h['loss']:.3f} | {lb} | {x100(h['valid'], 'ndcg@10')} "
                         f"| {x100(h.get('test', {}), 'ndcg@10')} |")
        lines.append("")
    lines += ["## Diagnostics of the selected models", "",
              "Item cosine: mean (std) cosine of 20,000 random pairs of the final item table. Logit spread: "
              "std of those cosines / tau, the scale at which Eq. 6 separates items. Norms: mean L2 norm of the "
              "backbone's input token embeddings of 64 training histories, of the prefix vectors the model "
              "feeds with them, and of the suffix vectors.", "",
              "| run | item cosine mean (std) | tau | logit spread | token norm | prefix norm | suffix norm |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for v in VARIANTS:
        if v in stale:
            continue
        d = (diagnostics(args.runs / v if found[v] == args.runs / v else None, RECORDS / v, metrics[v])
             if v in metrics else None)
        if d is None:
            lines += old_or([v], f"| {v} |", [])
            continue
        fmt = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"| {v} | {d['item_cos_mean']:.3f} ({d['item_cos_std']:.3f}) | {d['tau']} | "
                     f"{d['logit_std']:.2f} | {fmt(d['token_norm'])} | {fmt(d['prefix_norm'])} | "
                     f"{fmt(d['suffix_norm'])} |")
    lines.append("")
    notes = ([f"Kept from the previous version of this report (no run folder or record of them on this machine; they "
              f"ran before records were kept): the rows, t-tests, curves and diagnostics of {', '.join(kept)}."]
             if kept else [])
    notes += [f"Reruns in progress (their previous results stay until they finish): {', '.join(unfinished)}."] \
        if unfinished else []
    notes += [f"Stale (results of other data or another BERT4Rec input than this machine's; not shown, not tested): "
              f"{', '.join(stale)}."] if stale else []
    if notes:
        lines.insert(kept_note, "\n" + " ".join(notes))
    analysis = old[old.index(ANALYSIS):] if ANALYSIS in old else ANALYSIS + "\n"
    return "\n".join(lines) + "\n" + analysis


def seeds_section(found: dict[str, Path | None], metrics: dict[str, dict]) -> list[str]:
    """The MiniLM runs over their training seeds (:data:`EXTRA_SEEDS`): test metrics per seed and their mean, and
    paired t-tests on per-user test N@10 averaged over the seeds each variant has (a seed not run is shown as such)."""
    head = ["| variant | " + " | ".join(f"seed {seed_of(v)} N@10" for v in seeds_of(SEEDED[0]))
            + " | seeds | mean R@10 | mean N@10 (± std) | mean MRR |",
            "|---|" + "---:|" * (len(EXTRA_SEEDS) + 5)]
    from laser_repro.artifacts.markdown import fmt_mean_std
    from laser_repro.artifacts.significance import summarize

    rows, groups, named = [], {}, {}
    for base in SEEDED:
        done = [v for v in seeds_of(base) if found.get(v)]
        cells = [x100(metrics[v]["test"], "ndcg@10") if v in done else "not run" for v in seeds_of(base)]
        mean = {k: summarize([metrics[v]["test"][k] for v in done]) for k in METRICS}
        only = {k: "—" if not done else f"{100 * mean[k].mean:.2f}" for k in ("recall@10", "mrr")}  # no std
        rows.append(f"| {base} | {' | '.join(cells)} | {len(done)} | {only['recall@10']} | "
                    f"{fmt_mean_std(mean['ndcg@10'], 100)} | {only['mrr']} |")
        named[base] = f"{base} (seeds {', '.join(str(seed_of(v)) for v in done)})" if done else base
        groups[named[base]] = [found[v] for v in done]
    groups["bert4rec"] = [found["bert4rec"]] if found.get("bert4rec") else []
    pairs = [(named["main"], "bert4rec"), (named["main"], named["no-mformer"]), (named["main"], named["no-prefix"]),
             (named["no-prefix"], named["no-mformer"])]
    # main's config trained twice per seed (its first runs; the reruns with bit-repeatable gradients): every run of
    # it, one sample each of where the same config can end
    runs = [v for v in (*seeds_of("main"), *seeds_of(RERUN)) if found.get(v)]
    pooled = f"main + {RERUN} ({len(runs)} runs)"
    per_seed = [" / ".join(x100(metrics[v]["test"], "ndcg@10") for v in (m, r) if found.get(v)) or "not run"
                for m, r in zip(seeds_of("main"), seeds_of(RERUN))]
    mean = {k: summarize([metrics[v]["test"][k] for v in runs]) for k in METRICS}
    rows.append(f"| {pooled} | {' | '.join(per_seed)} | {len(runs)} | "
                + (f"{100 * mean['recall@10'].mean:.2f} | {fmt_mean_std(mean['ndcg@10'], 100)} | {100 * mean['mrr'].mean:.2f} |"
                   if runs else "— | — | — |"))
    groups[pooled] = [found[v] for v in runs]
    pairs += [(pooled, "bert4rec"), (pooled, named["no-mformer"]), (pooled, named["no-prefix"]), (named[SLOW], pooled)]
    # each diagnostic against main on the seeds both have, never on a seed only one of them ran
    for diag in DIAGNOSTIC_SEEDED:
        both = [(a, b) for a, b in zip(seeds_of(diag), seeds_of("main")) if found.get(a) and found.get(b)]
        common = f" (seeds {', '.join(str(seed_of(b)) for _, b in both)})" if both else ""
        groups[diag + common], groups["main" + common] = [found[a] for a, _ in both], [found[b] for _, b in both]
        pairs.append((diag + common, "main" + common))
    # Table 3's comparisons at App. B's lr, each variant averaged over the seeds it has
    pairs += [(named[SLOW], named[SLOW_LEARNABLE]), (named[SLOW], named[SLOW_NOPREFIX]),
              (named[SLOW_NOPREFIX], named[SLOW_LEARNABLE])]
    return ["## Training seeds (MiniLM)", "",
            "Each seed draws its own training, validation and curve users, batch order and initialisation; every "
            "seed is fed the same seed-0 BERT4Rec and tests all test users. x100; std over seeds (sample). The "
            f"last row pools every run of main's config (per seed: first run / {RERUN}).", "",
            *head, *rows, "", "Paired t-tests on per-user test N@10, each variant averaged over the seeds it has:", "",
            "| a vs b | n | a vs b (x100) | t | p | verdict |", "|---|---:|---|---:|---:|---|",
            *paired_tests(groups, pairs), ""]


def diagnostics(run: Path | None, record: Path, shown: dict) -> dict | None:
    """:func:`diagnose` of the finished run whose metrics.json ``shown`` the report shows, saved into its record
    (keyed by that result's resume hash and finish time) and computed again only for another result; else the
    record's when it was computed for that result; else None. ``run`` None: the result is the record (a newer one,
    :func:`records.source`), so the local folder's older model is never diagnosed over it. A record's diagnostics
    from before the key existed are taken as they are unless the run folder's checkpoint is newer."""
    f = record / "diagnostics.json"
    of = {"resume_hash": shown.get("resume_hash"), "finished_at": shown.get("finished_at")}
    cached = json.loads(f.read_text()) if f.exists() else None
    here = run is not None and (run / "metrics.json").exists() and (run / "checkpoint.pt").exists()
    if cached is not None and "of" in cached:
        fresh = cached["of"] == of
    else:
        fresh = cached is not None and not (here and f.stat().st_mtime < (run / "checkpoint.pt").stat().st_mtime)
    if not fresh and here:
        cached = {**diagnose(run), "of": of}
        write_json(f, cached)
    elif not fresh:
        return None  # the record's diagnostics are of another model than the result shown
    return {k: v for k, v in cached.items() if k != "of"}


def parser() -> argparse.ArgumentParser:
    """This script's options: the real-data runs' budget defaults (also read by ``bench_prefix_steps.py``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "out" / "data" / "scientific", help="prepared Scientific")
    ap.add_argument("--idrec-run", type=Path, default=IDREC_RUN, help="trained BERT4Rec run folder (seed 0)")
    ap.add_argument("--runs", type=Path, default=HERE / "out" / "laser_scientific", help="Laser run folders")
    ap.add_argument("--cache", type=Path, default=HERE / "out" / "cache", help="backbone cache (smollm2 weights)")
    ap.add_argument("--variants", nargs="+", default=["main", "no-mformer", "no-prefix"], choices=list(VARIANTS))
    ap.add_argument("--train-users", type=int, default=1000, help="seeded training users (smollm2: a third)")
    ap.add_argument("--valid-users", type=int, default=1000, help="seeded validation cap (smollm2: half)")
    ap.add_argument("--curve-users", type=int, default=500, help="seeded test users per learning-curve point")
    ap.add_argument("--smollm2-test-users", type=int, default=None,
                    help="seeded test cap for smollm2 only (its full test takes ~1 h on 2 cores); default all")
    ap.add_argument("--test-users", type=int, default=None, help="seeded test cap (smoke checks of this script "
                    "only; the report's runs test all users)")
    ap.add_argument("--phase1-epochs", type=int, default=2)
    ap.add_argument("--phase2-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3, help="learning rate of the runs (App. B: 1e-4; 1e-3 makes "
                    "progress in the CPU budget's few epochs; a variant's BUDGETS entry may set its own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--same-budget-bert4rec", action="store_true",
                    help="also train (a'): BERT4Rec on as many seeded training users as --train-users")
    ap.add_argument("--retest", nargs="+", default=[], choices=list(VARIANTS), metavar="VARIANT",
                    help="instead of training: test these finished runs on every test user, from their recorded "
                         "configs (no retraining)")
    ap.add_argument("--report-only", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.retest and not args.report_only:
        retest(args)
    elif not args.report_only:
        train(args)
    write_text(REPORT, report(args))
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
