"""Data augmentation of training batches: random crop with padding, horizontal flip.

The standard CIFAR recipe (He et al. 2016): pad each image by a few pixels, crop a window
of its own size at a random place, and flip it left to right with probability one half.
The transforms are torchvision's (``transforms.v2``) on tensors, applied image by image
as a batch is collated, so each image of a batch gets its own crop and flip.

Seeded: the batches' randomness comes from a generator of their own, seeded by the
training's seed, and is drawn under a forked torch random state, so the same seed gives
the same augmented batches and augmenting draws nothing from (and depends on nothing in)
the generator that initialises the network. Only the training batches are augmented:
`nasflow.training.datamodule.InMemoryDataModule` never passes validation (or test) batches
through it.

The images are already normalised (`InMemoryData`), so padding with zeros pads with the
training set's mean colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import default_collate
from torchvision.transforms import v2


@dataclass(frozen=True)
class Augment:
    """What to do to each training image (``data.augment`` in the config).

    Args:
        crop_padding: Pad by this many pixels on every side, then crop the image's own size
            at a random place; 0: no crop.
        hflip: Flip left to right with probability 0.5 (not for digits or text).
    """

    crop_padding: int = 0
    hflip: bool = False

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    def transform(self, size: Sequence[int]) -> v2.Compose:
        """The per-image transform for images of `size` (height, width)."""
        steps: list[Any] = []
        if self.crop_padding > 0:
            steps.append(v2.RandomCrop(tuple(size), padding=self.crop_padding))
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip())
        return v2.Compose(steps)

    def __str__(self) -> str:
        parts = [f"random crop (padding {self.crop_padding})"] if self.crop_padding else []
        parts += ["horizontal flip"] if self.hflip else []
        return ", ".join(parts) or "none"


def configured(settings: Any, candidates: bool = False) -> Augment | None:
    """The augmentation ``data.augment`` asks for: of the final training (`candidates`
    False), or of the search's candidates, which get it only with
    ``data.augment.candidates: true``. None where it asks for nothing."""
    if settings is None or (candidates and not settings.get("candidates", False)):
        return None
    augment = Augment(int(settings.get("crop_padding", 0)), bool(settings.get("hflip", False)))
    return augment if augment.active else None


class AugmentedCollate:
    """A DataLoader's ``collate_fn`` that augments each batch it stacks.

    Args:
        augment: What to do to each image.
        seed: Seeds the batches' own generator.
    """

    def __init__(self, augment: Augment, seed: int) -> None:
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        self._transforms: dict[tuple[int, int], v2.Compose] = {}

    def __call__(self, batch: Any) -> Any:
        images, labels = default_collate(batch)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        transform = self._transforms.setdefault(size, self.augment.transform(size))
        draw = int(torch.randint(2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw)
            images = torch.stack([transform(image) for image in images])
        return images, labels
