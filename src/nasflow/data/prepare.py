"""Stratified, seeded train/val/test splits, written to disk with their metadata.

A prepared directory holds ``train.pt``, ``val.pt``, ``test.pt`` (each a ``torch.save`` of
``{"images": uint8 NCHW, "labels": int64}``) and ``meta.json`` (a :class:`DatasetInfo`).
The same source, fractions and seed always give byte-identical files. meta.json records
each split's size and hash, so a stage that reads some of the splits can tell whether they
are the ones that were prepared together (:func:`check_split`).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow.data.sources import DataSource, RawDataset, Split, listing
from nasflow.errors import NasflowError
from nasflow.outputs import OutputSet

SPLIT_NAMES = ("train", "val", "test")
PREPARE_HINT = "run the prepare stage (`dvc repro prepare` or `python pipelines/prepare.py`)"


@dataclass(frozen=True)
class DatasetInfo:
    """What later stages need to know about a prepared dataset.

    Attributes:
        name: Dataset name from the source.
        class_names: Name of each label index.
        input_shape: (C, H, W) of every image.
        num_classes: len(class_names).
        sizes: Number of samples per split, keyed "train", "val", "test".
        mean: Per-channel mean of the train split, in [0, 1] units.
        std: Per-channel (population) standard deviation of the train split, in [0, 1] units.
        content_hash: sha256 over all split tensors and the class names; identifies the
            prepared data in checkpoints and run tags.
        split_hashes: sha256 of each split's tensors, keyed like ``sizes``, so that a stage
            loading only some splits can check them. Empty when meta.json predates it.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    sizes: dict[str, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    content_hash: str
    split_hashes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict (tuples become lists)."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "sizes": dict(self.sizes),
            "mean": list(self.mean),
            "std": list(self.std),
            "content_hash": self.content_hash,
            "split_hashes": dict(self.split_hashes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetInfo:
        """Rebuilds a DatasetInfo from :meth:`to_json` output.

        Raises:
            NasflowError: A key is missing.
        """
        try:
            c, h, w = (int(v) for v in d["input_shape"])
            return cls(
                name=str(d["name"]),
                class_names=tuple(str(n) for n in d["class_names"]),
                input_shape=(c, h, w),
                num_classes=int(d["num_classes"]),
                sizes={str(k): int(v) for k, v in d["sizes"].items()},
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                content_hash=str(d["content_hash"]),
                # Optional: a meta.json written before it existed still loads, and
                # check_split says to re-run prepare when it needs the hashes.
                split_hashes={str(k): str(v) for k, v in d.get("split_hashes", {}).items()},
            )
        except KeyError as err:
            raise NasflowError(f"dataset metadata lacks key {err}; {PREPARE_HINT} again") from err


def _check_fraction(label: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
        raise NasflowError(f"{label} {value!r} must be a number strictly between 0 and 1")


def _stratified(
    labels: np.ndarray, indices: np.ndarray, fraction: float, seed: int, setting: str
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``indices`` into (rest, carved) with ``fraction`` of them carved, per class.

    ``setting`` names the user's value (e.g. "val_fraction 0.1") for the error message.
    """
    # Here, not at the top: the stages that only read prepared splits (this module's
    # `load_split`, `check_split`) need no scikit-learn.
    from sklearn.model_selection import train_test_split

    try:
        rest, carved = train_test_split(
            indices, test_size=fraction, stratify=labels[indices], random_state=seed
        )
    except ValueError as err:
        # sklearn refuses when a class has < 2 samples or the carved part has fewer
        # samples than there are classes: the dataset is too small for this fraction.
        raise NasflowError(
            f"cannot split {len(indices)} samples by class with {setting}: {err}"
        ) from err
    # Sorted indices keep each split in source order, so its file depends only on membership.
    return np.sort(rest), np.sort(carved)


def _subset(
    labels: np.ndarray, indices: np.ndarray, size: int | None, seed: int, setting: str
) -> np.ndarray:
    """At most `size` of `indices`, stratified by label; all of them when None or fewer."""
    if size is None or size >= len(indices):
        return indices
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise NasflowError(f"{setting}={size!r} must be a positive integer or null (all)")
    kept, _ = _stratified(labels, indices, len(indices) - size, seed, f"{setting}={size}")
    return kept


def split_dataset(
    raw: RawDataset,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train_size: int | None = None,
    val_size: int | None = None,
) -> dict[str, Split]:
    """Splits a raw dataset into train, val and test, stratified by label.

    With an official test split, test is that split and val is carved from the pool
    (``test_fraction`` is then unused and not checked). Otherwise test is carved from the
    pool first, then val from the rest. Either way val_fraction is a share of the non-test
    examples, so it means the same for every source.

    Args:
        raw: The loaded dataset.
        val_fraction: Share of the non-test examples that becomes val, in (0, 1).
        test_fraction: Share of the pool that becomes test, in (0, 1), when there is no
            official test split; val_fraction + test_fraction must be < 1.
        seed: Seed for sklearn's shuffling.
        train_size: Keep at most this many training examples, a random subset stratified
            by label (None: all); for a quick run on a large data set. Test is never cut.
        val_size: The same for val.

    Returns:
        {"train": ..., "val": ..., "test": ...}.

    Raises:
        NasflowError: A fraction or the seed is out of range, or the data is too small.
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise NasflowError(f"seed {seed!r} must be an integer")
    _check_fraction("val_fraction", val_fraction)
    _check_several_classes(raw)
    val_setting = f"val_fraction {val_fraction!r}"
    labels = raw.pool.labels.numpy()
    everything = np.arange(len(labels))

    if raw.test is not None:
        train_idx, val_idx = _stratified(labels, everything, val_fraction, int(seed), val_setting)
        test = raw.test
    else:
        _check_fraction("test_fraction", test_fraction)
        # Each fraction alone always leaves some training data; holding out as much as the
        # whole pool between them is taken as a mistake in the config, not a wish.
        if val_fraction + test_fraction >= 1:
            raise NasflowError(
                f"val_fraction + test_fraction = {val_fraction + test_fraction!r} must be below 1"
            )
        rest, test_idx = _stratified(
            labels, everything, test_fraction, int(seed), f"test_fraction {test_fraction!r}"
        )
        train_idx, val_idx = _stratified(labels, rest, val_fraction, int(seed), val_setting)
        test = _take(raw.pool, test_idx)
    train_idx = _subset(labels, train_idx, train_size, int(seed), "data.train_size")
    val_idx = _subset(labels, val_idx, val_size, int(seed), "data.val_size")
    splits = {"train": _take(raw.pool, train_idx), "val": _take(raw.pool, val_idx), "test": test}
    _check_every_class_in_every_split(raw, splits)
    return splits


def _check_several_classes(raw: RawDataset) -> None:
    # With one class every candidate scores 100%, so a search could not rank anything.
    if len(raw.class_names) < 2:
        only = f" '{raw.class_names[0]}'" if raw.class_names else "es"
        raise NasflowError(
            f"dataset '{raw.name}' has only one class{only}; a classifier needs at least 2"
        )


def _check_every_class_in_every_split(raw: RawDataset, splits: dict[str, Split]) -> None:
    """A class absent from train cannot be learnt, and one absent from val or test is never
    scored; stratification can still leave a rare class out of a small split."""
    for name in SPLIT_NAMES:
        counts = torch.bincount(splits[name].labels, minlength=len(raw.class_names))
        missing = [raw.class_names[i] for i in range(len(raw.class_names)) if counts[i] == 0]
        if missing:
            raise NasflowError(
                f"the {name} split of dataset '{raw.name}' has no image of class "
                f"{listing(missing)}; every split (train, val, test) needs at least one "
                "image of each class: add images or change val_fraction/test_fraction"
            )


def _take(split: Split, indices: np.ndarray) -> Split:
    # Fancy indexing copies, so a saved split never drags the whole pool's storage along.
    index = torch.from_numpy(indices.astype(np.int64))
    return Split(split.images[index].contiguous(), split.labels[index].contiguous())


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std in [0, 1] units.

    Sums are exact integers (accumulated in chunks to bound memory), so the result does
    not depend on thread count or summation order and meta.json stays byte-identical.
    """
    channels = images.shape[1]
    total = [0] * channels
    squares = [0] * channels
    for chunk in torch.split(images, 1024):
        wide = chunk.to(torch.int64)
        for c in range(channels):
            total[c] += int(wide[:, c].sum())
            squares[c] += int((wide[:, c] * wide[:, c]).sum())
    n = images.shape[0] * images.shape[2] * images.shape[3]
    means = tuple(t / (n * 255) for t in total)
    # Variance = (n*SS - S^2) / n^2, computed in exact integers before the one division.
    stds = tuple((n * sq - t * t) ** 0.5 / (n * 255) for t, sq in zip(total, squares, strict=True))
    return means, stds


def _content_hash(splits: dict[str, Split], class_names: tuple[str, ...]) -> str:
    # Checkpoint fingerprints and dvc.lock depend on this value: never change how it is made.
    digest = hashlib.sha256()
    digest.update(json.dumps(list(class_names)).encode())
    for name in SPLIT_NAMES:
        _hash_split(digest, name, splits[name])
    return digest.hexdigest()


def split_hash(name: str, split: Split) -> str:
    """sha256 of one split's tensors (shape, dtype and bytes), as meta.json records it."""
    digest = hashlib.sha256()
    _hash_split(digest, name, split)
    return digest.hexdigest()


def _hash_split(digest: Any, name: str, split: Split) -> None:
    for tensor in (split.images, split.labels):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        # The numpy buffer is hashed in place: ~0.1 s for CIFAR-10's 150 MB train split.
        digest.update(tensor.contiguous().numpy().data)


def compute_info(raw: RawDataset, splits: dict[str, Split]) -> DatasetInfo:
    """Builds the DatasetInfo of a split dataset.

    Args:
        raw: The dataset the splits came from (for its name and class names).
        splits: Output of :func:`split_dataset`.

    Returns:
        The metadata, with statistics taken from the train split.
    """
    c, h, w = (int(v) for v in splits["train"].images.shape[1:])
    mean, std = _channel_stats(splits["train"].images)
    return DatasetInfo(
        name=raw.name,
        class_names=raw.class_names,
        input_shape=(c, h, w),
        num_classes=len(raw.class_names),
        sizes={name: len(splits[name]) for name in SPLIT_NAMES},
        mean=mean,
        std=std,
        content_hash=_content_hash(splits, raw.class_names),
        split_hashes={name: split_hash(name, splits[name]) for name in SPLIT_NAMES},
    )


def write_splits(splits: dict[str, Split], info: DatasetInfo, out_dir: Path | OutputSet) -> None:
    """Writes the split files and meta.json, replacing any previous set.

    They are written aside and then renamed into place (`nasflow.outputs.OutputSet`,
    meta.json last), so a failure while writing leaves the previous set untouched and never
    a half-written file under a real name.

    Args:
        splits: {"train", "val", "test"} splits.
        info: Their metadata.
        out_dir: Target directory (created if missing), or the stage's output set.
    """
    outputs = out_dir if isinstance(out_dir, OutputSet) else _outputs(out_dir)
    with outputs:
        for name in SPLIT_NAMES:
            payload = {"images": splits[name].images, "labels": splits[name].labels}
            # Saving through a file object, not a path: torch.save names the zip's inner
            # folder after the path, which would make bytes depend on the file name.
            with outputs.path(f"{name}.pt").open("wb") as handle:
                torch.save(payload, handle)
        outputs.write_bytes("meta.json", (json.dumps(info.to_json(), indent=2) + "\n").encode())


def _outputs(out_dir: str | Path) -> OutputSet:
    return OutputSet(out_dir, "paths.prepared", last="meta.json")


def prepare(
    source: DataSource,
    out_dir: str | Path,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    train_size: int | None = None,
    val_size: int | None = None,
) -> DatasetInfo:
    """Loads a source, splits it and writes the prepared directory.

    Args:
        source: Where the data comes from.
        out_dir: Directory for train.pt, val.pt, test.pt and meta.json.
        val_fraction: See :func:`split_dataset`.
        test_fraction: See :func:`split_dataset`.
        seed: See :func:`split_dataset`.
        train_size: See :func:`split_dataset`.
        val_size: See :func:`split_dataset`.

    Returns:
        The metadata written to meta.json.
    """
    if not isinstance(source, DataSource):
        raise NasflowError(f"data source {source!r} is not a nasflow DataSource")
    outputs = _outputs(out_dir)  # checked writable before the (maybe long) load
    raw = source.load()
    splits = split_dataset(raw, val_fraction, test_fraction, seed, train_size, val_size)
    info = compute_info(raw, splits)
    write_splits(splits, info, outputs)
    return info


def _prepared_file(data_dir: str | Path, filename: str) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NasflowError(f"prepared data directory '{data_dir}' does not exist; {PREPARE_HINT}")
    path = data_dir / filename
    if not path.is_file():
        raise NasflowError(f"prepared data file '{path}' does not exist; {PREPARE_HINT}")
    return path


def load_info(data_dir: str | Path) -> DatasetInfo:
    """Reads meta.json of a prepared directory.

    Raises:
        NasflowError: The directory or file is missing or unreadable.
    """
    path = _prepared_file(data_dir, "meta.json")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NasflowError(f"'{path}' is not valid JSON ({err}); {PREPARE_HINT} again") from err
    return DatasetInfo.from_json(data)


def load_split(data_dir: str | Path, name: str) -> Split:
    """Reads one split of a prepared directory.

    Args:
        data_dir: The prepared directory.
        name: "train", "val" or "test".

    Raises:
        NasflowError: Unknown name, or the directory or file is missing or unreadable.
    """
    if name not in SPLIT_NAMES:
        raise NasflowError(f"unknown split '{name}'; allowed: {', '.join(SPLIT_NAMES)}")
    path = _prepared_file(data_dir, f"{name}.pt")
    # torch.save always writes a zip; checking first spares us the weights-only unpickler's
    # grab bag of exceptions (IndexError, EOFError, ...) on arbitrary garbage.
    if not zipfile.is_zipfile(path):
        raise NasflowError(f"'{path}' is not a valid split file (not a zip); {PREPARE_HINT} again")
    try:
        # weights_only: the files hold plain tensors, so refuse anything that would run code.
        payload = torch.load(path, weights_only=True)
        return Split(payload["images"], payload["labels"])
    except (RuntimeError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        # torch's messages run over many lines; the first one says what went wrong.
        reason = str(err).strip().split("\n", 1)[0]
        raise NasflowError(
            f"'{path}' is not a valid split file ({reason}); {PREPARE_HINT} again"
        ) from err


def check_split(data_dir: str | Path, name: str, split: Split, info: DatasetInfo) -> None:
    """Checks that a loaded split is the one meta.json describes: its size and its hash.

    A split file copied over from another preparation (or another split) would otherwise
    be trained or scored on silently.

    Args:
        data_dir: The prepared directory ``split`` was read from.
        name: "train", "val" or "test".
        split: What :func:`load_split` returned.
        info: What :func:`load_info` returned for the same directory.

    Raises:
        NasflowError: The size or hash differs, or meta.json does not record them (it was
            written by an older nasflow); the message says to re-run prepare.
    """
    meta = Path(data_dir) / "meta.json"
    path = Path(data_dir) / f"{name}.pt"
    expected = info.sizes.get(name)
    if expected is None:
        raise NasflowError(f"'{meta}' records no size for split '{name}'; {PREPARE_HINT} again")
    if len(split) != expected:
        raise NasflowError(
            f"'{path}' holds {len(split)} samples but '{meta}' records {expected} for {name}; "
            f"the files are not from one preparation; {PREPARE_HINT} again"
        )
    recorded = info.split_hashes.get(name)
    if recorded is None:
        raise NasflowError(
            f"'{meta}' records no hash of the {name} split (written by an older nasflow); "
            f"{PREPARE_HINT} again"
        )
    if split_hash(name, split) != recorded:
        raise NasflowError(
            f"'{path}' does not match the {name} hash recorded in '{meta}' "
            f"(changed or replaced after preparing); {PREPARE_HINT} again"
        )
