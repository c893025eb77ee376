"""Where raw data comes from: each source loads a whole dataset as uint8 NCHW tensors.

Constructors only store their arguments and all checking happens in ``load``. Hydra's
``instantiate`` wraps any exception raised by a constructor in an ``InstantiationException``,
which would turn a one-line ``NasflowError`` into a traceback.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.error import URLError

import numpy as np
import torch
from annotated_types import Interval

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt
from nasflow.registry import DATA_SOURCES, Component

if TYPE_CHECKING:  # torchvision loads only for its sources: the digits need none of it
    from torchvision.datasets import VisionDataset

TORCHVISION_NAMES = ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100")


@dataclass(frozen=True)
class Split:
    """Images and labels of one split.

    Attributes:
        images: uint8 tensor of shape (N, C, H, W).
        labels: int64 tensor of shape (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        # A wrong dtype or shape here is a bug in a source, not a user mistake: plain ValueError.
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 NCHW, got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.ndim != 1:
            raise ValueError(f"labels must be int64 (N,), got {labels.dtype} {tuple(labels.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class RawDataset:
    """A dataset as a source delivers it, before our own train/val/test split.

    Attributes:
        name: Short dataset name, recorded in meta.json.
        class_names: Name of each label index.
        pool: Everything we may train and validate on.
        test: The official test split if the source has one, else None.
    """

    name: str
    class_names: tuple[str, ...]
    pool: Split
    test: Split | None


class DataSource(Component, ABC):
    """Something that can load a :class:`RawDataset`.

    The class's ``name`` is its option in the config (``data.source``); an instance may
    replace it with the name of the dataset it loads (MNIST, the image folder's name).
    """

    registry = DATA_SOURCES

    @abstractmethod
    def load(self) -> RawDataset:
        """Loads the whole dataset into memory."""


class Digits(DataSource):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images); needs no files or network."""

    name = "digits"

    def load(self) -> RawDataset:
        """Loads the digits as (1797, 1, 8, 8) uint8 images, no official test split.

        Returns:
            The dataset, with class names "0".."9".
        """
        from sklearn.datasets import load_digits  # only here: readers of prepared data need none

        bunch = load_digits()
        # Pixel values are 0..16; stretch them to the 0..255 range every other source uses.
        scaled = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
        images = torch.from_numpy(scaled).unsqueeze(1)
        labels = torch.from_numpy(bunch.target.astype(np.int64))
        class_names = tuple(str(c) for c in bunch.target_names)
        return RawDataset(self.name, class_names, Split(images, labels), test=None)


class TorchvisionDataset(DataSource):
    """One of torchvision's standard datasets, read from a local copy under ``root``.

    Args:
        name: One of "MNIST", "FashionMNIST", "CIFAR10", "CIFAR100".
        root: Directory holding torchvision's layout, e.g. ``root/MNIST/raw/...``.
        download: Let torchvision download the files if they are missing.
    """

    name = "torchvision"

    def __init__(self, name: str, root: str = "data/raw", download: bool = False) -> None:
        self.name = name
        self.root = root
        self.download = download

    def load(self) -> RawDataset:
        """Loads the official train split as the pool and the official test split as test.

        Returns:
            The dataset as uint8 NCHW tensors with torchvision's class names.

        Raises:
            NasflowError: The name is unknown, or the files are missing or corrupt.
        """
        if self.name not in TORCHVISION_NAMES:
            allowed = ", ".join(TORCHVISION_NAMES)
            raise NasflowError(f"unknown torchvision dataset '{self.name}'; allowed: {allowed}")
        if not self.download and not Path(self.root).exists():
            raise NasflowError(
                f"data root '{self.root}' does not exist; put a torchvision {self.name} copy there "
                f"({self._layout_hint()}) or set data.source.download=true"
            )
        import torchvision.datasets

        dataset_cls = getattr(torchvision.datasets, self.name)
        pool_ds = self._open(dataset_cls, train=True)
        test_ds = self._open(dataset_cls, train=False)
        return RawDataset(
            name=self.name,
            class_names=tuple(str(c) for c in pool_ds.classes),
            pool=_torchvision_split(pool_ds),
            test=_torchvision_split(test_ds),
        )

    def _open(self, dataset_cls: type, train: bool) -> VisionDataset:
        try:
            return dataset_cls(self.root, train=train, download=self.download)
        except (RuntimeError, URLError) as err:
            # torchvision reports missing or corrupt files (and failed downloads) this way;
            # its message is multi-line, so keep only the first line.
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise NasflowError(
                f"cannot read {self.name} under data root '{self.root}' ({reason}); "
                f"expected {self._layout_hint()} or set data.source.download=true"
            ) from err

    def _layout_hint(self) -> str:
        if self.name.startswith("CIFAR"):
            folder = "cifar-10-batches-py" if self.name == "CIFAR10" else "cifar-100-python"
            return f"{folder}/..."
        return f"{self.name}/raw/..."


def _torchvision_split(ds: VisionDataset) -> Split:
    """Converts a loaded torchvision dataset to a Split without decoding items one by one."""
    data = ds.data
    if isinstance(data, np.ndarray):
        # CIFAR keeps a numpy array in HWC order.
        images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    else:
        # MNIST-like datasets keep a (N, H, W) uint8 tensor.
        images = data.unsqueeze(1).contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    return Split(images.to(torch.uint8), labels)


class ImageFolder(DataSource):
    """The user's own images: ``root/<class>/*`` or ``root/train/<class>/*`` + ``root/test/...``.

    Args:
        root: Directory in one of the two layouts above.
        image_size: Every image is resized to image_size x image_size.
        channels: 1 for grayscale, 3 for RGB.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str,
        image_size: PositiveInt = 32,
        channels: Annotated[int, Interval(ge=1, le=3)] = 3,  # 1 or 3, checked by `load`
    ) -> None:
        self.root = root
        self.image_size = image_size
        self.channels = channels
        self.name = Path(root).name or "images"

    def load(self) -> RawDataset:
        """Decodes, resizes and converts every image.

        Returns:
            The dataset; test is None for the flat layout.

        Raises:
            NasflowError: Bad size or channels, missing or empty folders, fewer than 2
                classes, train and test folders with different classes, or images that
                cannot be decoded (all of them are named, up to 20).
        """
        if self.channels not in (1, 3):
            raise NasflowError(f"image channels {self.channels!r} not allowed; use 1 or 3")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int):
            raise NasflowError(f"image_size {self.image_size!r} must be a positive integer")
        if self.image_size < 1:
            raise NasflowError(f"image_size {self.image_size!r} must be a positive integer")
        root = Path(self.root)
        if not root.is_dir():
            raise NasflowError(f"image folder '{root}' does not exist or is not a directory")

        train_dir, test_dir = root / "train", root / "test"
        if train_dir.is_dir() != test_dir.is_dir():
            # Read flat, the lone folder would silently become one class holding everything.
            lone = train_dir if train_dir.is_dir() else test_dir
            raise NasflowError(
                f"image folder '{root}' has '{lone.name}/' but not its partner; "
                "use both train/ and test/ or a flat <class>/ layout"
            )
        # Every check on folder names comes before decoding anything, so it fails in seconds.
        if not train_dir.is_dir():
            _check_several_classes(root, _class_folders(root))
            classes, pool, failed = self._read(root)
            _check_decoded(root, failed)
            return RawDataset(self.name, classes, pool, test=None)

        train_classes, test_classes = _class_folders(train_dir), _class_folders(test_dir)
        if train_classes != test_classes:
            raise NasflowError(
                f"class folders differ between '{train_dir}' {train_classes} "
                f"and '{test_dir}' {test_classes}; they must match"
            )
        _check_several_classes(train_dir, train_classes)
        classes, pool, failed = self._read(train_dir)
        _, test, failed_test = self._read(test_dir)
        # Both folders are decoded first, so one error lists every bad file at once.
        _check_decoded(root, failed + failed_test)
        return RawDataset(self.name, classes, pool, test)

    def _read(self, folder: Path) -> tuple[tuple[str, ...], Split, list[str]]:
        """Decodes every image under ``folder``.

        Returns:
            The class names, the split, and the paths of the images that could not be
            decoded (their rows of the split are left blank; the caller refuses them).
        """
        from torchvision import datasets
        from torchvision.datasets.folder import default_loader

        transform = image_transform(self.image_size, self.channels)
        try:
            # Only for its file discovery (extensions, class order); decoding is ours, so
            # that a bad file is recorded and the rest still read.
            ds = datasets.ImageFolder(str(folder))
        except FileNotFoundError as err:
            raise NasflowError(
                f"image folder '{folder}' holds no class folders with images ({err})"
            ) from err

        # One preallocated tensor filled in place; concatenating as we go would be O(N^2).
        size = self.image_size
        images = torch.zeros((len(ds.samples), self.channels, size, size), dtype=torch.uint8)
        labels = torch.tensor([label for _, label in ds.samples], dtype=torch.int64)
        failed: list[str] = []
        for i, (path, _) in enumerate(ds.samples):
            try:
                image = default_loader(path)
            except OSError:  # PIL's UnidentifiedImageError and truncated files are OSErrors
                failed.append(path)
                continue
            images[i] = transform(image)
        return tuple(ds.classes), Split(images, labels), failed


def image_transform(image_size: int, channels: int) -> Any:
    """What becomes of a decoded (RGB, torchvision's loader) image: resized to image_size
    x image_size, made grayscale for one channel, as a uint8 CxHxW tensor. The image
    folder source prepares with it and `pipelines/predict.py` reads new images with it."""
    from torchvision import transforms

    steps: list[torch.nn.Module] = [transforms.Resize((image_size, image_size))]
    if channels == 1:
        # torchvision's loader always yields RGB, so grayscale is a conversion step.
        steps.append(transforms.Grayscale(num_output_channels=1))
    steps.append(transforms.PILToTensor())
    return transforms.Compose(steps)


def _class_folders(folder: Path) -> list[str]:
    """Class names as torchvision.datasets.ImageFolder will see them (sorted subfolders)."""
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError as err:
        raise NasflowError(f"image folder '{folder}' holds no class folders ({err})") from err


def _check_several_classes(folder: Path, classes: list[str]) -> None:
    # One class would be learnt perfectly by every candidate: the search could not rank them.
    if len(classes) < 2:
        raise NasflowError(
            f"image folder '{folder}' has only one class folder '{classes[0]}'; "
            "a classifier needs at least 2 classes, one folder each"
        )


def _check_decoded(root: Path, failed: list[str]) -> None:
    if failed:
        raise NasflowError(
            f"cannot decode {len(failed)} image(s) under image folder '{root}': "
            f"{listing(failed)}; fix or remove them"
        )


def listing(items: Sequence[str], limit: int = 20) -> str:
    """``items`` quoted and comma-separated for an error line: the first ``limit``, then
    "and N more", so a long list still fits on one readable line."""
    shown = ", ".join(f"'{item}'" for item in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown
