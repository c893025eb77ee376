"""Prepared splits held in memory as normalised tensors, served by a LightningDataModule.

The data sets nasflow targets first (digits, MNIST, CIFAR) fit in memory many times over;
keeping them as tensors avoids decoding and worker processes for every candidate.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from nasflow.data import DatasetInfo, load_info, load_split
from nasflow.data.prepare import check_split
from nasflow.training.augment import Augment, AugmentedCollate


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


class InMemoryDataModule(pl.LightningDataModule):
    """Batches of in-memory data; the training order comes from a seeded generator.

    Args:
        train: The training examples (one data set or several to concatenate).
        val: The validation examples, or None to train without validation.
        batch_size: Examples per batch.
        seed: Seeds the shuffling of the training examples, and their augmentation.
        augment: What to do to each training image (`nasflow.training.augment`); never
            to the validation examples. None: nothing.
    """

    def __init__(
        self,
        train: Dataset | list[Dataset],
        val: Dataset | None,
        batch_size: int,
        seed: int,
        augment: Augment | None = None,
    ) -> None:
        super().__init__()
        self.train = ConcatDataset(train) if isinstance(train, list) else train
        self.val = val
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        # Built once: its generator carries on from epoch to epoch.
        self.collate = AugmentedCollate(augment, seed) if augment and augment.active else None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train,
            batch_size=self.batch_size,
            shuffle=True,
            generator=self.generator,
            collate_fn=self.collate,
        )

    def val_dataloader(self) -> DataLoader:
        if self.val is None:
            return []  # type: ignore[return-value]
        return DataLoader(self.val, batch_size=max(self.batch_size, 256))
