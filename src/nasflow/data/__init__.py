"""Data layer: load a source, split it reproducibly, and read the prepared splits back."""

from nasflow.data.prepare import DatasetInfo, load_info, load_split, prepare, split_dataset
from nasflow.data.sources import (
    DataSource,
    Digits,
    ImageFolder,
    RawDataset,
    Split,
    TorchvisionDataset,
)

__all__ = [
    "DataSource",
    "DatasetInfo",
    "Digits",
    "ImageFolder",
    "RawDataset",
    "Split",
    "TorchvisionDataset",
    "load_info",
    "load_split",
    "prepare",
    "split_dataset",
]
