"""Prepared splits held in memory as normalised tensors (`nasflow.training.datamodule`
serves them to Lightning).

The data sets nasflow targets first (digits, MNIST, CIFAR) fit in memory many times over;
keeping them as tensors avoids decoding and worker processes for every candidate.

Light on purpose: what only reads the data (evaluate, export, predict) loads neither
Lightning nor torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import TensorDataset

from nasflow.data import DatasetInfo, load_info, load_split
from nasflow.data.prepare import check_split

if TYPE_CHECKING:
    from nasflow.training.augment import Augment


class InMemoryData:
    """Normalised splits and what describes them.

    A plain class, not a dataclass: Hydra's `instantiate` would turn a dataclass passed
    as an argument into a config node.
    """

    def __init__(
        self, info: DatasetInfo, splits: dict[str, TensorDataset], augment: Augment | None = None
    ) -> None:
        self.info = info
        self.splits = splits
        # What is done to the training batches of every network trained on this data
        # (`data.augment`); None: nothing. The stages set it, the trainings read it.
        self.augment = augment

    @classmethod
    def load(cls, data_dir: str | Path, splits: tuple[str, ...]) -> InMemoryData:
        """Load `splits` of a prepared data set; only these are read from disk.

        Search and retrain ask for ("train", "val") so that the test split is never read.
        Each split is checked against the size and hash in meta.json before use.

        Raises:
            NasflowError: A file is missing or unreadable, or a split is not the one
                meta.json describes (see :func:`nasflow.data.prepare.check_split`).
        """
        info = load_info(data_dir)
        mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        std = torch.tensor(info.std).view(1, -1, 1, 1)
        loaded = {}
        for name in splits:
            split = load_split(data_dir, name)
            check_split(data_dir, name, split, info)
            images = (split.images.float() / 255.0 - mean) / std
            loaded[name] = TensorDataset(images, split.labels)
        return cls(info=info, splits=loaded)
