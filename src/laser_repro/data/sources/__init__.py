"""Data sources: each turns one raw format into a :class:`~laser_repro.data.dataset.SeqDataset`.

``SOURCES`` maps a ``--source`` name to ``prepare(input_path, name, **options)``.
"""

from __future__ import annotations

from typing import Callable

from laser_repro.data.dataset import SeqDataset


def _amazon2018(input_path, name, **kw) -> SeqDataset:
    from laser_repro.data.sources.amazon2018 import prepare

    return prepare(input_path, name, **kw)


def _recformer(input_path, name, **kw) -> SeqDataset:
    from laser_repro.data.sources.recformer import prepare

    return prepare(input_path, name, **kw)


def _movielens(input_path, name, **kw) -> SeqDataset:
    from laser_repro.data.sources.movielens import prepare

    return prepare(input_path, name, **kw)


def _synthetic(input_path, name, **kw) -> SeqDataset:
    from laser_repro.data.sources.synthetic import prepare

    return prepare(input_path, name, **kw)


SOURCES: dict[str, Callable[..., SeqDataset]] = {
    "amazon2018": _amazon2018,
    "recformer": _recformer,
    "movielens": _movielens,
    "synthetic": _synthetic,
}
