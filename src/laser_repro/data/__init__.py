"""Data layer: one processed format per data set, the sources that produce it, and splits."""

from laser_repro.data.dataset import SeqDataset, load_dataset

__all__ = ["SeqDataset", "load_dataset"]
