"""Data-layer speed: prepare Scientific from the RecFormer files (target < 10 s) and load a
Pet-sized processed data set (420k interactions; target well under 1 s).

Usage: python benchmarks/bench_data.py [--shared ../shared/data] [--report benchmarks/data.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from laser_repro.data.dataset import load_dataset, save_dataset
from laser_repro.data.sources import SOURCES

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--report", type=Path, default=REPO / "benchmarks" / "data.md")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sci = args.shared / "amazon-scientific-recformer"
        if sci.is_dir():
            t, ds = timed(lambda: save_dataset(SOURCES["recformer"](sci, "scientific"), tmp / "sci"))
            rows.append(("prepare Scientific (RecFormer files -> processed folder)", f"{t:.2f} s", "< 10 s"))
            t, _ = timed(lambda: load_dataset(tmp / "sci"), repeat=5)
            rows.append(("load Scientific (76,896 interactions)", f"{t * 1000:.0f} ms", "-"))
        else:
            rows.append(("prepare Scientific", f"skipped: {sci} absent", "< 10 s"))
        t, pet = timed(lambda: SOURCES["synthetic"](tmp / "raw", "pet-sized", users=47569, items=37970, categories=16), repeat=1)
        save_dataset(pet, tmp / "pet")
        t, loaded = timed(lambda: load_dataset(tmp / "pet"), repeat=5)
        rows.append((f"load a Pet-sized set ({loaded.n_users:,} users, {loaded.n_items:,} items, "
                     f"{loaded.n_interactions:,} interactions)", f"{t * 1000:.0f} ms", "< 1 s"))
    lines = ["# Data-layer benchmark", "",
             f"Machine: {platform.machine()}, {platform.python_version()}; median of repeats. "
             "Taken on the 2-core dev machine (possibly under load from other work).", "",
             "| step | time | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
