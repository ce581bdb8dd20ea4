"""``laser-repro data``: download, prepare and describe data sets."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from laser_repro.data.sources import FORMATS

log = logging.getLogger("laser_repro.data")


def check_out(out: Path, inputs: list[Path], force: bool = False) -> None:
    """Refuse an --out that would destroy data this suite did not make (see ``--out`` in --help)."""
    from laser_repro.data.dataset import foreign_files, is_prepared

    target = out.resolve()
    for src in inputs:
        src = src.resolve()
        if target == src or target in src.parents:
            raise ValueError(f"--out {out}: is (or contains) the input folder {src}; preparing there would "
                             "destroy the raw files. Choose another --out")
    if not (out.exists() or out.is_symlink()):
        return
    if out.is_dir() and not out.is_symlink():
        prepared = is_prepared(out)
        extra = foreign_files(out) if prepared else []
        if not any(out.iterdir()) or (prepared and not extra):
            return
        what = (f"a prepared folder that also holds files `laser-repro data prepare` did not write ({extra}), "
                "which replacing it would delete" if extra else
                "a folder that `laser-repro data prepare` did not write (no stats.json / marker)")
    else:
        what = "a file" if out.is_file() else "not a folder"
    if not force:
        raise ValueError(f"--out {out}: exists and is {what}; refusing to replace it. Choose another --out, "
                         "or pass --force to replace it")
    log.warning("--force: replacing %s (%s)", out, what)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = sub.add_parser("prepare", help="turn a raw source into the processed format",
                       description="Turn a raw source into the processed format (a folder; see laser_repro.data.dataset).")
    p.add_argument("--source", choices=sorted(FORMATS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in FORMATS.items())
                        + " (default: detected from the files in --input)")
    p.add_argument("--input", required=True, type=Path, help="input folder (synthetic: where raw files are written)")
    p.add_argument("--name", required=True, help="data set name recorded in stats.json (e.g. scientific)")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder, written atomically; an existing one is replaced only if this suite "
                        "prepared it (never the input folder)")
    p.add_argument("--force", action="store_true",
                   help="replace --out even when it holds something this suite did not prepare")
    p.add_argument("--category", help="amazon2018: which {Category} when the folder holds several")
    p.add_argument("--keep-html", action="store_true", help="keep HTML entities in item text (default: decode them)")
    g = p.add_argument_group("synthetic")
    g.add_argument("--seed", type=int, help="generator seed (default 0)")
    g.add_argument("--users", type=int, help="number of users (default 300)")
    g.add_argument("--items", type=int, help="number of items (default 120)")
    g.add_argument("--categories", type=int, help="number of latent categories (default 6)")

    d = sub.add_parser("download", help="download the raw Amazon 2018 files of a category (resumable)",
                       description="Download the raw Amazon 2018 review and metadata files of one of the paper's "
                                   "four categories into --out (resumable; downloads.json records what was fetched).")
    d.add_argument("--category", required=True, help="scientific|arts|pet|games, or its Amazon name "
                                                      "(Industrial_and_Scientific, ...): the paper's four only")
    d.add_argument("--out", required=True, type=Path, help="folder for the raw files and downloads.json")
    d.add_argument("--base-url", help="mirror to use instead of the UCSD data repository")

    s = sub.add_parser("stats", help="Table 1's statistics of a prepared data set",
                       description="Print Table 1's statistics (users, items, interactions, avg n, density) of a "
                                   "prepared data set folder, from its stats.json.")
    s.add_argument("dir", type=Path, help="prepared data set folder")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "prepare":
        from laser_repro.data.dataset import save_dataset
        from laser_repro.data.sources import SOURCES, detect

        start = time.perf_counter()
        source = args.source or detect(args.input)
        if args.source is None:
            log.info("%s: detected source %s", args.input, source)
        check_out(args.out, [] if source == "synthetic" else [args.input], args.force)
        options = {"category": args.category, "seed": args.seed, "users": args.users,
                   "items": args.items, "categories": args.categories}
        ds = SOURCES[source](args.input, args.name, unescape_html=not args.keep_html, **options)
        save_dataset(ds, args.out)
        s = ds.stats()
        log.info("%s: %d users, %d items, %d interactions -> %s (%.1fs)", args.name, s["users"], s["items"],
                 s["interactions"], args.out, time.perf_counter() - start)
        return 0
    if args.data_command == "download":
        from laser_repro.data.download import download_category

        download_category(args.category, args.out, base=args.base_url)
        return 0
    if args.data_command == "stats":
        from laser_repro.data.dataset import TABLE1_STATS, read_stats

        stats = read_stats(args.dir, [] if args.json else ["name", *TABLE1_STATS])
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print(format_stats(stats))
        return 0
    raise ValueError(f"unknown data action {args.data_command!r}")


def format_stats(s: dict) -> str:
    """One data set's Table 1 row as text."""
    return (f"{'Dataset':<12} {'#Users':>9} {'#Items':>8} {'#Inters.':>10} {'Avg. n':>7} {'Density':>8}\n"
            f"{s['name']:<12} {s['users']:>9,} {s['items']:>8,} {s['interactions']:>10,} "
            f"{s['avg_n']:>7.2f} {s['density']:>8.1e}")
