"""Augmentation of the training batches: seeded, per image, never of val or test."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from nasflow.training import InMemoryDataModule
from nasflow.training.augment import Augment, AugmentedCollate, configured
from tests.conftest import compose_config

IMAGES = torch.randn(40, 3, 8, 8)
LABELS = torch.arange(40) % 4


def batches(augment: Augment | None, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    data = InMemoryDataModule(
        TensorDataset(IMAGES, LABELS), TensorDataset(IMAGES, LABELS), 16, seed, augment
    )
    train = [x for x, _ in data.train_dataloader()]
    val = [x for x, _ in data.val_dataloader()]
    return train, val


def test_the_same_seed_gives_the_same_batches_another_seed_others() -> None:
    augment = Augment(crop_padding=2, hflip=True)
    first, _ = batches(augment, seed=3)
    again, _ = batches(augment, seed=3)
    other, _ = batches(augment, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_only_the_training_batches_change_and_each_image_on_its_own() -> None:
    augment = Augment(crop_padding=2, hflip=True)
    train, val = batches(augment, seed=0)
    plain_train, plain_val = batches(None, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(val, plain_val, strict=True))
    assert torch.equal(torch.cat(val), IMAGES)  # validation is never augmented
    changed = torch.cat(train) != torch.cat(plain_train)  # the same order: the same shuffle
    per_image = changed.flatten(1).any(1)
    assert per_image.float().mean() > 0.5
    assert torch.cat(train).shape == IMAGES.shape


def test_a_flip_alone_gives_each_image_or_its_mirror() -> None:
    collate = AugmentedCollate(Augment(hflip=True), seed=0)
    images, labels = collate(list(zip(IMAGES, LABELS, strict=True)))
    flipped = [not torch.equal(x, original) for x, original in zip(images, IMAGES, strict=True)]
    for x, original, was in zip(images, IMAGES, flipped, strict=True):
        assert torch.equal(x, original.flip(-1) if was else original)
    assert 0 < sum(flipped) < len(flipped)
    assert torch.equal(labels, LABELS)


def test_augmenting_draws_nothing_from_the_global_generator() -> None:
    collate = AugmentedCollate(Augment(crop_padding=1, hflip=True), seed=0)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    collate(list(zip(IMAGES, LABELS, strict=True)))
    assert torch.equal(torch.rand(3), expected)


def test_the_config_asks_for_it_per_data_set_and_for_candidates_only_if_told() -> None:
    cifar = compose_config(["data=cifar10"]).data.augment
    assert configured(cifar) == Augment(crop_padding=4, hflip=True)
    assert configured(cifar, candidates=True) is None
    assert configured(compose_config(["data=mnist"]).data.augment) == Augment(crop_padding=2)
    assert configured(compose_config([]).data.augment) is None  # digits: none
    told = OmegaConf.create({"crop_padding": 4, "hflip": False, "candidates": True})
    assert configured(told, candidates=True) == Augment(crop_padding=4)
