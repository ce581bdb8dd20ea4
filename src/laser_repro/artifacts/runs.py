"""The one loader of finished run folders shared by every artifact.

A run folder (:func:`laser_repro.experiment.layout.run_dir`) holds ``metrics.json`` (schema:
:mod:`laser_repro.runinfo`) and ``ranks.npz`` (:func:`laser_repro.eval.evaluator.save_ranks`).
A :class:`RunGroup` gathers the seeds of one spec cell (dataset, method, variant) and
remembers every requested run that is missing, so tables can list it instead of dropping it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from laser_repro.eval.evaluator import EvalResult, load_ranks
from laser_repro.eval.metrics import per_user_metrics
from laser_repro.experiment import layout, registry
from laser_repro.experiment.specs import Cell
from laser_repro import runinfo
from laser_repro.io import read_json
from laser_repro.train.scaffold import outdated

from .significance import SeedSummary, summarize

METRICS = ("recall@10", "ndcg@10", "mrr")
METRIC_LABELS = {"recall@10": "R@10", "ndcg@10": "N@10", "mrr": "MRR", "mrr@10": "MRR@10"}
LONG_LABELS = {"recall@10": "Recall@10", "ndcg@10": "NDCG@10", "mrr": "MRR", "mrr@10": "MRR@10"}

@dataclass
class Run:
    """One finished run: its metrics.json record and (if present) its per-user ranks."""

    path: Path
    seed: int
    record: dict
    ranks: dict[str, EvalResult] | None

    def metric(self, split: str, name: str) -> float:
        """An aggregate metric from metrics.json; errors name the file and key."""
        try:
            value = self.record[split][name]
        except (KeyError, TypeError):
            raise ValueError(f"{self.path / 'metrics.json'}: no {split}.{name!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.path / 'metrics.json'}: {split}.{name} is {value!r}; expected a number")
        return float(value)

    def n_users(self, split: str) -> int | None:
        """How many users the run evaluated on ``split`` (metrics.json's ``n``), if recorded."""
        part = self.record.get(split)
        n = part.get("n") if isinstance(part, dict) else None
        return n if isinstance(n, int) and not isinstance(n, bool) else None

    @property
    def backbone(self) -> str | None:
        """The pretrained model the run used (its trainer's backbone key: backbone, text_encoder)."""
        return self.backbones()[0]

    def backbones(self) -> list[str | None]:
        """Every pretrained model the run used: its trainer's backbone key, then the method's other ones
        (KAR: the knowledge generator)."""
        cfg = self.record.get("config") or {}
        method = registry.METHODS.get(self.record.get("method", ""))
        keys = (method.trainer.backbone_key, *method.more_backbone_keys) if method else ("backbone",)
        return [cfg.get(k) for k in keys]

    def split_ranks(self, split: str) -> EvalResult:
        if self.ranks is None or split not in self.ranks:
            raise ValueError(f"{self.path / 'ranks.npz'}: no per-user ranks for split {split!r}")
        return self.ranks[split]


def load_run(path: Path, seed: int) -> Run:
    """Load one run folder (metrics.json required, ranks.npz optional)."""
    record = read_json(path / "metrics.json")
    if not isinstance(record, dict):
        raise ValueError(f"{path / 'metrics.json'}: expected a JSON object")
    if not isinstance(record.get("config", {}), dict):
        raise ValueError(f"{path / 'metrics.json'}: config is {type(record['config']).__name__}; expected an object")
    ranks_path = path / "ranks.npz"
    ranks = None
    if ranks_path.exists():
        try:
            ranks = load_ranks(ranks_path)
        except Exception as err:  # a damaged npz raises zipfile, pickle or key errors
            raise ValueError(f"{ranks_path}: unreadable per-user ranks ({type(err).__name__}: {err}); "
                             "rerun the run to rewrite it") from None
        check_ranks_match(record, ranks, ranks_path)
    return Run(path, seed, record, ranks)


def check_ranks_match(record: dict, ranks: dict, where: Path) -> None:
    """Tables take means from metrics.json and paired tests from ranks.npz: refuse the pair unless each split's
    ranks give the record's user count and metrics (a partial copy, or a retest caught between its writes). A record
    the suite's trainers did not write (no resume hash: hand-made) is not assumed to come from the shared evaluator."""
    if not runinfo.is_ours(record):
        return
    for split, res in ranks.items():
        mine = record.get(split)
        if not isinstance(mine, dict):
            continue
        differ = [k for k, v in res.metrics.items() if type(mine.get(k)) in (int, float)  # a bad value: refused later
                  and abs(mine[k] - v) > 1e-7 * max(1.0, abs(v))]
        if differ or mine.get("n", len(res.ranks)) != len(res.ranks):
            k = differ[0] if differ else "n"
            raise ValueError(f"{where}: its {split} ranks ({len(res.ranks)} users, {k} "
                             f"{res.metrics.get(k, len(res.ranks))}) do not match metrics.json ({mine.get('n')} users, "
                             f"{k} {mine.get(k)}): the two files come from different runs (a partial copy?); rerun "
                             "the run to rewrite both")


@dataclass(frozen=True)
class Gap:
    """A requested run an artifact cannot use: its ``metrics.json`` is absent, or ``stale`` says why the
    one there no longer answers the run's config."""

    path: Path
    stale: str = ""
    kind: str = "stale"  # what ``stale`` explains (a figure that cannot use a finished run: "unusable")

    def __str__(self) -> str:
        return f"{self.path} ({self.kind}: {self.stale})" if self.stale else str(self.path)

    @property
    def markdown(self) -> str:
        return f"`{self.path}`" + (f": {self.kind}, {self.stale}" if self.stale else "")


@dataclass
class RunGroup:
    """The seeds of one (dataset, method, variant): found runs and missing run paths."""

    dataset: str
    method: str
    variant: str
    seeds: tuple[int, ...]
    runs: list[Run] = field(default_factory=list)
    missing: list[Gap] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.runs)

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.method}/{self.variant}"

    def values(self, split: str, metric: str, subset: Callable[[EvalResult], np.ndarray] | None = None) -> np.ndarray:
        """Per-seed aggregate values (from metrics.json, or from ranks restricted to ``subset``)."""
        if subset is None:
            return np.array([r.metric(split, metric) for r in self.runs])
        out = []
        for r in self.runs:
            res = r.split_ranks(split)
            out.append(res.subset(subset(res)).metrics[metric])
        return np.array(out, dtype=np.float64)

    def summary(self, split: str, metric: str, subset: Callable[[EvalResult], np.ndarray] | None = None) -> SeedSummary:
        return summarize(self.values(split, metric, subset))

    def n_users(self, split: str) -> list[int]:
        """The distinct user counts the found seeds evaluated on ``split`` (recorded ones)."""
        return sorted({n for r in self.runs if (n := r.n_users(split)) is not None})

    def test_users_available(self) -> int | None:
        """How many test users the runs' data set has (its stats.json's ``eval_users``), where it is here to read."""
        from laser_repro.data.dataset import read_stats

        for r in self.runs:
            dataset = (r.record.get("config") or {}).get("dataset")
            if isinstance(dataset, str) and (Path(dataset) / "stats.json").is_file():
                try:
                    n = read_stats(dataset).get("eval_users")
                except ValueError:
                    continue
                if isinstance(n, int) and not isinstance(n, bool):
                    return n
        return None

    def fewer_users(self, split: str, full_n: int) -> list[int]:
        """The user counts of the found seeds that evaluated fewer than ``full_n`` users on ``split`` (Table 2's §)."""
        return [n for n in self.n_users(split) if n < full_n]

    def marks(self, split: str, full_n: int) -> str:
        """The marks a cell of this group carries: † stand-in backbone, ‡ not pre-trained, § fewer than ``full_n``
        users evaluated on ``split``."""
        return (("†" if self.stand_in() else "") + ("‡" if self.not_pretrained() else "")
                + ("§" if self.fewer_users(split, full_n) else ""))

    @property
    def has_ranks(self) -> bool:
        """Every found seed has per-user test ranks (paired tests and item subsets need them)."""
        return self.found and all(r.ranks is not None and "test" in r.ranks for r in self.runs)

    def per_user(self, split: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, per-user metric averaged over the seeds that evaluated each user): every user a seed tested. A
        user's target is the same in every seed (the split is fixed), so under a test-user cap, where each seed
        draws its own users, a user tested by one seed still counts (keeping only users every seed tested left
        7 of 1,000 per seed on Scientific)."""
        results = [r.split_ranks(split) for r in self.runs]
        users = np.unique(np.concatenate([res.users for res in results]))
        sums, counts = np.zeros(users.shape[0], dtype=np.float64), np.zeros(users.shape[0], dtype=np.int64)
        for res in results:
            at = _positions(users, res.users)
            sums[at] += per_user_metrics(res.ranks)[metric]
            counts[at] += 1
        return users, sums / counts

    def not_pretrained(self) -> bool:
        """The paper pre-trained this method, and some run here started from scratch: no ``init_from``,
        no pre-training data sets (ZESRec's ``pretrain_datasets``, RECFORMER's ``pretrain.steps``) and no
        released checkpoint (``init_checkpoint``)."""
        m = registry.METHODS.get(self.method)
        return bool(m and m.pretrained_on) and any(not pretrained(r.record.get("config") or {}) for r in self.runs)

    def stand_in(self) -> str | None:
        """The backbone actually used when it is not the paper's (methods with a backbone), else None."""
        used = sorted({b for r in self.runs for x in r.backbones() if (b := registry.stand_in(self.method, x))})
        return ", ".join(used) or None


def pretrained(config: dict) -> bool:
    """A run config that starts from pre-trained weights of this method (any of the suite's routes)."""
    pretrain = config.get("pretrain")
    steps = pretrain.get("steps", 0) if isinstance(pretrain, dict) else 0
    return bool(config.get("init_from") or config.get("init_checkpoint") or config.get("pretrain_datasets") or steps)


def stand_in_note(groups: Iterable[RunGroup]) -> str:
    """One line naming every stand-in backbone among ``groups`` (by method label), or "" if none:
    what a table, figure or claim built on them must say."""
    used: dict[str, set[str]] = {}
    for g in groups:
        if (si := g.stand_in()):
            paper = getattr(registry.METHODS.get(g.method), "paper_backbone", None) or "the paper's backbone"
            used.setdefault(label(g.method), set()).add(f"{si} instead of {paper}")
    if not used:
        return ""
    return ("† stand-in backbones, not the paper's models (not comparable to its numbers): "
            + "; ".join(f"{m}: {', '.join(sorted(b))}" for m, b in used.items()))


def ties_note(groups: Iterable[RunGroup]) -> str:
    """One line naming the cells whose runs ranked ties other than pessimistically (the suite's protocol; a run
    config's ``ties``), or "" if none: their values are not comparable with the other cells'."""
    other: dict[str, set[str]] = {}
    for g in groups:
        for r in g.runs:
            rule = r.record.get("ties") or "pessimistic"
            if rule != "pessimistic":
                other.setdefault(rule, set()).add(f"{label(g.method)} on {g.dataset}"
                                                  + (f" ({g.variant})" if g.variant != "main" else ""))
    if not other:
        return ""
    return ("Ties ranked other than pessimistically (the suite's protocol; not comparable with the other cells): "
            + "; ".join(f"{rule}: {', '.join(sorted(cells))}" for rule, cells in sorted(other.items())))


def run_notes(groups: Iterable[RunGroup]) -> list[str]:
    """The notes every artifact built on ``groups`` must carry: :func:`stand_in_note` and :func:`ties_note`, the
    empty ones left out."""
    groups = list(groups)
    return [n for n in (stand_in_note(groups), ties_note(groups)) if n]


def _positions(users: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    order = np.argsort(users, kind="stable")
    pos = np.searchsorted(users, wanted, sorter=order)
    return order[pos]


def load_group(root: str | Path, cell: Cell, seeds: Sequence[int], stale: dict[str, str] | None = None) -> RunGroup:
    """Load every requested seed of one spec cell; absent ones, those ``stale`` names (``RunKey.rel`` -> why),
    misplaced ones and those whose data or inputs changed since (``train.scaffold.outdated``) go to ``missing``."""
    group = RunGroup(cell.dataset, cell.method, cell.variant, tuple(int(s) for s in seeds))
    for key in cell.runs(group.seeds):
        path = Path(layout.run_dir(str(root), *dataclasses.astuple(key)))
        why = (stale or {}).get(key.rel, "")
        if (path / "metrics.json").exists() and not why:
            run = load_run(path, key.seed)
            why = misplaced(run.record, key) or outdated(run.record) or ""
            if not why:
                group.runs.append(run)
                continue
        group.missing.append(Gap(path / "metrics.json", why))
    return group


def misplaced(record: dict, key) -> str:
    """Why a metrics.json does not belong in ``key``'s folder (another data set, method, variant or seed: copied
    or moved), or "". The data set is the name of the run config's data folder (``{data}/{dataset}``, as the
    workflow lays it out); the variant shows only in the folder the trainer wrote to (``run_folder``, since 2026-12)."""
    written, data = record.get("run_folder"), (record.get("config") or {}).get("dataset")
    for field_name, got, want in (("data folder", Path(data).name if isinstance(data, str) else None, key.dataset),
                                  ("method", record.get("method"), key.method),
                                  ("seed", record.get("seed"), key.seed),
                                  ("run folder", "/".join(Path(written).parts[-4:]) if written else None, key.rel)):
        if got is not None and got != want:
            return f"it records {field_name} {got!r}, but its folder is for {want!r} (copied or moved?)"
    return ""


def load_cells(root: str | Path, cells: dict, seeds: Sequence[int], stale: dict[str, str] | None = None) -> dict:
    """Every cell of a spec (key -> :class:`Cell`) loaded as a :class:`RunGroup` under the same key."""
    return {key: load_group(root, cell, seeds, stale) for key, cell in cells.items()}


def label(method: str) -> str:
    """A method's label as the paper prints it (the registry's), or its name."""
    m = registry.METHODS.get(method)
    return m.label if m else method


def is_ours(method: str) -> bool:
    m = registry.METHODS.get(method)
    return bool(m and m.ours)


def paired_values(a: RunGroup, b: RunGroup, split: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values of two groups on their common users (seed-averaged), for a paired test."""
    ua, va = a.per_user(split, metric)
    ub, vb = b.per_user(split, metric)
    users = np.intersect1d(ua, ub)
    return va[_positions(ua, users)], vb[_positions(ub, users)]


def full_test_users(groups: list[RunGroup], split: str = "test") -> int:
    """How many users a complete run of the groups' data set evaluates on ``split``: its stats.json's count where a
    run's data set is found here, and never fewer than any run evaluated (the § of Tables 2-5 compares with it)."""
    available = next((n for g in groups if (n := g.test_users_available()) is not None), 0)
    return max([n for g in groups for n in g.n_users(split)] + [available])


def subset_footnote(subsets: dict[str, str]) -> str:
    """The § footnote of Tables 2-5: each row (or cell) that tested a seeded subset of the test users, with its n."""
    return ("§ evaluated on a seeded subset of the test users (a cap in its run config), not all of them: "
            + "; ".join(f"{k}: {v}" for k, v in subsets.items()))
