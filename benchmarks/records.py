"""Committed records of benchmark runs, so a report survives a machine without its run folders.

Run folders (``benchmarks/out/``, git-ignored) hold checkpoints and weights and do not travel between
machines. A report script copies each finished run's ``metrics.json`` and ``ranks.npz`` (recompressed,
~100 KB for 11,039 test users) into ``benchmarks/records/<benchmark>/<run>/``, which is committed, and
reads a run from its folder where present, else from its record. For runs from before the records existed,
:func:`kept_lines` carries the previous report's lines over, and the report names them.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from laser_repro.io import atomic_path, write_json, write_text

RECORD_FILES = ("metrics.json", "ranks.npz")
REPO_PREFIX = str(Path(__file__).resolve().parents[1]) + "/"
WORKSPACE_PREFIX = str(Path(__file__).resolve().parents[2]) + "/"  # holds the repository and ../shared


def repo_relative(obj: Any) -> Any:
    """``obj`` with every string path under this repository, or next to it (``../shared/data``), made relative to
    it: a committed record names no machine's folders (the recorded config_hash still identifies the run as it was
    trained)."""
    if isinstance(obj, dict):
        return {k: repo_relative(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [repo_relative(v) for v in obj]
    if isinstance(obj, str) and obj.startswith(REPO_PREFIX):
        return obj[len(REPO_PREFIX):]
    if isinstance(obj, str) and obj.startswith(WORKSPACE_PREFIX) and len(WORKSPACE_PREFIX) > 1:
        return "../" + obj[len(WORKSPACE_PREFIX):]
    return obj


def trained_at(record: dict) -> datetime | None:
    """When the training behind a metrics.json ``record`` finished (UTC): its ``finished_at``, or for a retested run
    (``train.scaffold`` "Retest": the same model tested on more users later) the training's own; None when not
    recorded (results written before runs recorded it) or unreadable."""
    value = (record["retested"].get("trained_finished_at") if isinstance(record.get("retested"), dict)
             else record.get("finished_at"))
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc) if when is not None and when.tzinfo is None else when


def newer_record(run: Path, record: Path) -> bool:
    """Whether ``record`` holds another result than the finished run folder ``run`` and was trained after it (a
    record pulled from a machine that reran the run): then the record, not the older local run, is the result.
    "After" compares the training finish times both metrics.json carry (:func:`trained_at`; a checkout or a copy
    resets file times, and a retest of an older model is not a newer training); the files' modification times
    only for results written before runs recorded it."""
    mine, theirs = run / RECORD_FILES[0], record / RECORD_FILES[0]
    if not (mine.exists() and theirs.exists()):
        return False
    a, b = json.loads(mine.read_text()), json.loads(theirs.read_text())
    at_a, at_b = trained_at(a), trained_at(b)
    later = at_b > at_a if at_a and at_b else theirs.stat().st_mtime > mine.stat().st_mtime
    return later and b != repo_relative(a)


def keep_record(run: Path, record: Path, extra: tuple[str, ...] = ()) -> bool:
    """Copy a finished run's metrics.json (:func:`repo_relative`), its ranks.npz (recompressed: ~5x smaller; arrays
    and dtypes unchanged) and the small ``extra`` files it has (e.g. a cache of derived metrics) into its committed
    ``record``, atomically. False, and nothing copied, when the run is not finished (either file missing) or the
    record is a newer, other result (:func:`newer_record`; said on stderr)."""
    metrics, ranks = RECORD_FILES
    if not all((run / name).exists() for name in RECORD_FILES):
        return False
    if newer_record(run, record):
        print(f"{record}: a newer result than the run folder {run} (pulled?); kept, not overwritten (rerun the run, "
              "or move its folder aside, to replace it)", file=sys.stderr)
        return False
    # metrics.json, the mark of a finished record, goes last (as the trainers write a run): a failure on the way
    # leaves the previous record whole or an unfinished one, never new metrics next to old ranks
    (record / metrics).unlink(missing_ok=True)
    for name in extra:
        if (run / name).exists():
            with atomic_path(record / name) as tmp:
                tmp.write_bytes((run / name).read_bytes())
        else:  # derived from an earlier run: it must not outlive it
            (record / name).unlink(missing_ok=True)
    with np.load(run / ranks) as z, atomic_path(record / ranks, suffix=".npz") as tmp:
        arrays = {k: z[k] for k in z.files}
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    write_json(record / metrics, repo_relative(json.loads((run / metrics).read_text())))
    return True


def in_progress(run: Path) -> bool:
    """A run folder with a checkpoint and no metrics.json: a (re)run under way (or abandoned)."""
    return (run / "checkpoint.pt").exists() and not (run / "metrics.json").exists()


# Recorded digests of input models whose file is gone, each with the digest of the same model rebuilt later.
# Until 489c9b0 model.pt held the random name of the temporary file it was written through, so a bit-identical
# retraining had another digest. An entry is added only for a rebuild (same settings and data; the data folder's
# path may be spelled otherwise) whose metrics.json equals the recorded run's in every epoch's loss and validation
# metrics and in its test metrics.
SAME_MODEL = {
    # Scientific BERT4Rec, seed 0 (records/idrec_scientific/bert4rec/seed~0), rebuilt 2026-12-05: 62 epochs equal
    "b262d4b06552a16f": "ef651cc7afc74bb3",
}


def stale_inputs(metrics: dict, data: Path | None = None, runs: dict[str, Path] | None = None) -> list[str]:
    """Why a finished run's results no longer answer its inputs as they are here: the prepared ``data`` now has
    another fingerprint, or an input run (``runs``: its config key -> the run folder now, e.g. the BERT4Rec run
    Laser reads) has another model.pt than the one the run was trained from (or its rebuild: :data:`SAME_MODEL`).
    Inputs absent here are not judged."""
    from laser_repro.data.dataset import data_fingerprint
    from laser_repro.train.scaffold import MODEL_FILE, file_digest, recorded_fingerprints

    why = []
    theirs, recorded = recorded_fingerprints(metrics)
    now = data_fingerprint(data) if theirs and data is not None and (data / "stats.json").exists() else theirs
    if now != theirs:
        why.append(f"data re-prepared since (fingerprint {theirs} -> {now})")
    for key, folder in (runs or {}).items():
        same = {recorded.get(key), SAME_MODEL.get(recorded.get(key))}
        if key in recorded and (folder / MODEL_FILE).exists() and file_digest(folder / MODEL_FILE) not in same:
            why.append(f"{key} retrained since")
    return why


def mixed_settings(configs: dict[str, dict], ignore: tuple[str, ...] = ()) -> list[str]:
    """Settings on which the recorded ``configs`` of one method's runs (name -> config) disagree, besides
    ``ignore`` (the seed, execution keys): runs that a mean must not pool. A key that only some configs have is
    not counted (the suite adds keys at their no-op defaults)."""
    keys = set().union(*configs.values()) - set(ignore) if configs else set()
    return sorted(k for k in keys if len({json.dumps(c[k], sort_keys=True) for c in configs.values() if k in c}) > 1)


def source(run: Path, record: Path) -> Path | None:
    """Where a finished run's results are: its run folder if here (unless its record is a newer, other result:
    :func:`newer_record`), else its committed record, else None."""
    order = (record, run) if newer_record(run, record) else (run, record)
    return next((f for f in order if (f / "metrics.json").exists()), None)


NO_RESULT = ("not run", "missing run", "UNFINISHED", "no per-user ranks", "STALE", "MIXED settings")  # a report line with one of these carries no result


def kept_lines(old: str, starts: str, block: bool = False) -> list[str]:
    """Lines of the previous report for a run that is neither here nor recorded: the first line that starts with
    ``starts`` and carries a result (and, with ``block``, the lines after it up to the blank line after a table)."""
    lines = old.splitlines()
    i = next((k for k, line in enumerate(lines) if line.startswith(starts) and not any(m in line for m in NO_RESULT)),
             None)
    if i is None:
        return []
    if not block:
        return [lines[i]]
    j = i + 1
    while j < len(lines) and (not lines[j] or lines[j].startswith("|")) and not (
            j > i + 2 and not lines[j] and lines[j - 1].startswith("|")):
        j += 1
    return lines[i:j]


def sync(runs: Path, records: Path, pattern: str = "seed~*", extra: tuple[str, ...] = ()) -> None:
    """:func:`keep_record` of every run folder ``runs/<pattern>`` (the finished ones are recorded)."""
    for run in sorted(runs.glob(pattern)):
        keep_record(run, records / run.name, extra)


def finished(runs: Path, records: Path, pattern: str = "seed~*") -> list[Path]:
    """Finished runs by name: the run folder where it has metrics.json, else the record; sorted by name."""
    names = {p.parent.name for root in (runs, records) for p in root.glob(f"{pattern}/metrics.json")}
    return [source(runs / n, records / n) for n in sorted(names)]


# Table columns whose cells name what a row is about (its seed, metric, protocol), not a value it shows
IDENTITY_COLUMNS = frozenset({"model", "method", "metric", "seed", "evaluation protocol"})


def result_rows(text: str, key: str) -> Counter:
    """The result lines of ``text`` that start with ``key``, by identity: their cells in the columns that
    :data:`IDENTITY_COLUMNS` names in their table's header (() for a line outside a headed table)."""
    lines = text.splitlines()
    rows: Counter = Counter()
    header: list[str] = []
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = []
        elif i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: ") and "-" in lines[i + 1]:
            header = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        elif line.startswith(key) and not any(m in line for m in NO_RESULT):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[tuple((h, c) for h, c in zip(header, cells) if h in IDENTITY_COLUMNS)] += 1
    return rows


def lost_rows(old: str, new: str, keys: list[str]) -> list[str]:
    """The ``keys`` (row starts such as ``| fdsa |``) with a result line in ``old`` that ``new`` lacks, matched by
    :func:`result_rows`' identity (a seed, a metric) and counted: a blanked or dropped method, a lost seed (also
    when another seed's row came instead) or a lost table of it."""
    return [k for k in keys if result_rows(old, k) - result_rows(new, k)]


RUN_KEYS = ("device", "num_threads", "progress", "eval_batch_size", "text_batch_size", "item_batch_size", "cache_dir",
            "feature_cache")


def unpoolable(recs: list[dict], data: Path, execution_keys: tuple[str, ...] = RUN_KEYS) -> str | None:
    """Why one method's finished seeds (their metrics.json) cannot make one row: "STALE: ..." when a seed's data is
    not the ``data`` here (re-prepared since), "MIXED settings: ..." when the seeds ran under different settings
    (besides the seed, the data set's path, judged by its fingerprint, and ``execution_keys``); None when they fit."""
    for r in recs:
        why = stale_inputs(r, data)
        if why:
            return f"STALE: seed {r['seed']}: {'; '.join(why)}"
    ignore = ("seed", "dataset", *execution_keys)
    mixed = mixed_settings({r["seed"]: repo_relative(r["config"]) for r in recs}, ignore)
    return f"MIXED settings: the seeds differ in {', '.join(mixed)}; not pooled" if mixed else None


def write_report(path: Path, text: str, names: list[str], allow_gaps: bool, where: str, strict: bool = True) -> bool:
    """Write ``text`` to the report ``path`` atomically, unless it would lose results of one of ``names`` (rows
    starting ``| name |``) that the report has now (``where``: where their runs were sought). Then exit non-zero
    naming them, or with ``strict`` False (after training: the runs are safe) print that and return False."""
    old = path.read_text() if path.exists() else ""
    lost = lost_rows(old, text, [f"| {n} |" for n in names])
    if lost and not allow_gaps:
        why = (f"{path}: not rewritten: it has results for {', '.join(k.strip('| ') for k in lost)} that this call "
               f"would blank or drop ({where}); run them, or pass --allow-gaps")
        if strict:
            sys.exit(why)
        print(why)
        return False
    write_text(path, text)
    return True
