"""Prepare what the GPU machine needs for the full-protocol Laser run (it has no network and no PyPI).

    python benchmarks/gpu_carry.py [--out benchmarks/out/gpu_carry]

Writes into ``--out`` (under 64 MiB, the carry limit): the prepared Scientific data set, the
seed-0 BERT4Rec run (model.pt + metrics.json; ``bench_laser_scientific.py`` trains it), and
MiniLM-L6 saved in fp16 with its tokenizer (a plain Hugging Face folder: ``backbone:
local:PATH``). Then name ``benchmarks/out/gpu_carry`` in the device run's carry list and run the command in
``gpu_backbones.py``'s docstring (from the repository root with PYTHONPATH=src, nothing installed there).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CARRY_MIB = 64  # what a device run may carry in all: the working tree's files and the carried folders


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def tree_mib(repo: Path = HERE.parent) -> float:
    """The working tree that travels with every device run (tracked and untracked, not ignored), in MiB; 6 if git
    cannot say."""
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                               capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return 6.0
    return sum((repo / n).stat().st_size for n in names if n and (repo / n).is_file()) / 2**20


def limit_mib() -> float:
    """Room for the carried folder: the carry limit less the working tree."""
    return CARRY_MIB - tree_mib()


def prepare(data: Path, idrec_run: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from laser_repro.idrec.text_features import resolve_encoder

    for need in (data / "stats.json", idrec_run / "model.pt", idrec_run / "metrics.json"):
        if not need.exists():
            raise SystemExit(f"{need}: missing (run benchmarks/bench_laser_scientific.py first: it prepares both)")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(data, out / "data" / "scientific")
    (out / "bert4rec").mkdir(parents=True)
    for name in ("model.pt", "metrics.json"):
        shutil.copy2(idrec_run / name, out / "bert4rec" / name)
    path, _ = resolve_encoder("minilm")
    model = AutoModel.from_pretrained(path).to(torch.float16)
    model.save_pretrained(out / "minilm-fp16")
    AutoTokenizer.from_pretrained(path).save_pretrained(out / "minilm-fp16")
    size, room = folder_mib(out), limit_mib()
    if size > room:
        raise SystemExit(f"{out}: {size:.1f} MiB, over the {room:.1f} MiB the {CARRY_MIB} MiB carry limit leaves "
                         "beside the working tree")
    print(f"{out}: {size:.1f} MiB of {room:.1f} MiB left beside the working tree (name it in the device run's carry list)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE / "out" / "data" / "scientific")
    ap.add_argument("--idrec-run", type=Path, default=HERE / "out" / "idrec_scientific" / "bert4rec" / "seed~0")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "gpu_carry")
    args = ap.parse_args(argv)
    prepare(args.data, args.idrec_run, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
