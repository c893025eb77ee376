"""In-memory data served to Lightning: the training order and the augmentation come from
seeded generators."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from nasflow.training.augment import Augment, AugmentedCollate


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
