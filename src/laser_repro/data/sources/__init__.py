"""Data sources: each turns one raw format into a :class:`~laser_repro.data.dataset.SeqDataset`.

``SOURCES`` maps a ``--source`` name to ``prepare(input_path, name, **options)``;
:func:`detect` names the source of a folder from the files it holds.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Callable

from laser_repro.data.dataset import SeqDataset

# --source name -> (module, what its folder holds)
FORMATS: dict[str, tuple[str, str]] = {
    "amazon2018": ("amazon2018", "{Category}_5.json(.gz) + meta_{Category}.json(.gz) (Amazon Review 2018)"),
    "recformer": ("recformer", "train.json, val.json, test.json, umap.json, smap.json + meta(_data).json (RecFormer)"),
    "recbole": ("recbole", "NAME.inter (+ NAME.item), or UniSRec's NAME.{train,valid,test}.inter + NAME.text (RecBole atomic files)"),
    "movielens": ("recbole", "RecBole's ml-100k atomic files (same reader as recbole)"),
    "synthetic": ("synthetic", "nothing: generates Amazon-2018-format raw files into the folder"),
}


def _loader(module: str, source: str) -> Callable[..., SeqDataset]:
    def prepare(input_path, name, **kw) -> SeqDataset:
        mod = importlib.import_module(f"laser_repro.data.sources.{module}")
        ds = mod.prepare(input_path, name, **kw)
        return ds if ds.source == source else dataclasses.replace(ds, source=source)  # movielens: recbole's reader

    return prepare


SOURCES: dict[str, Callable[..., SeqDataset]] = {name: _loader(mod, name) for name, (mod, _) in FORMATS.items()}


def detect(folder: str | Path) -> str:
    """The source whose files ``folder`` holds; the error lists every format looked for."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder not found")
    names = {p.name for p in folder.iterdir()}
    found = []
    if any(n.endswith(("_5.json", "_5.json.gz")) for n in names):
        found.append("amazon2018")
    if {"train.json", "val.json", "test.json"} <= names:
        found.append("recformer")
    if any(n.endswith(".inter") for n in names):
        found.append("recbole")
    if len(found) == 1:
        return found[0]
    looked = "; ".join(f"{k}: {v[1]}" for k, v in FORMATS.items() if k not in ("movielens", "synthetic"))
    if not found:
        raise ValueError(f"{folder}: no known data format found (looked for {looked}); pass --source")
    raise ValueError(f"{folder}: files of several formats ({', '.join(found)}); pass --source to choose")
