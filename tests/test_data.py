"""Tests of the data layer; every dataset here is a tiny fake written into tmp_path."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from nasflow.data import (
    DatasetInfo,
    Digits,
    ImageFolder,
    RawDataset,
    Split,
    TorchvisionDataset,
    load_info,
    load_split,
    prepare,
    split_dataset,
)
from nasflow.errors import NasflowError

# ---------------------------------------------------------------- fake dataset writers


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes an uncompressed IDX file: magic 0x0000 08 <ndim>, big-endian uint32 dims, bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, name: str, n_train: int = 40, n_test: int = 20) -> dict:
    """Writes torchvision's on-disk layout for MNIST or FashionMNIST; returns the arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / name / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / name / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def cifar_batch(rng: np.random.Generator, n: int, num_classes: int, key: str) -> dict:
    # Rows are 3072 bytes: the red plane, then green, then blue, as in the real files.
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {"data": data, key: [i % num_classes for i in range(n)]}


@pytest.fixture
def cifar_without_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision checks each file's md5 against the real release, which fake files cannot
    # match. _check_integrity and _load_meta both call this module-level check_integrity,
    # so it is replaced by an existence check; all parsing stays torchvision's own code.
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


def write_png(path: Path, size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def write_image_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog")) -> None:
    """Two images per class, of different sizes and formats; cat is red, dog is blue."""
    colors = {"cat": (255, 0, 0), "dog": (0, 0, 255), "eel": (0, 255, 0)}
    for name in classes:
        write_png(root / name / "a.png", (10, 12), colors[name], "PNG")
        write_png(root / name / "b.jpg", (40, 30), colors[name], "JPEG")


def index_encoded(raw: RawDataset) -> RawDataset:
    """Replaces each pool image by one whose first two pixels spell its index."""
    n = len(raw.pool)
    images = torch.zeros((n, 1, 2, 2), dtype=torch.uint8)
    ids = torch.arange(n)
    images[:, 0, 0, 0] = (ids // 256).to(torch.uint8)
    images[:, 0, 0, 1] = (ids % 256).to(torch.uint8)
    return RawDataset(raw.name, raw.class_names, Split(images, raw.pool.labels), raw.test)


def decode_ids(split: Split) -> set[int]:
    return set((split.images[:, 0, 0, 0].long() * 256 + split.images[:, 0, 0, 1].long()).tolist())


# ---------------------------------------------------------------- digits and prepare


def test_digits_prepare(tmp_path: Path) -> None:
    info = prepare(Digits(), tmp_path, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert info.input_shape == (1, 8, 8)
    assert info.num_classes == 10 and info.class_names == tuple("0123456789")
    assert sum(info.sizes.values()) == 1797
    assert info.sizes["test"] == pytest.approx(0.2 * 1797, abs=2)
    # val_fraction is a share of the non-test examples: 0.1 * (1797 - test).
    assert info.sizes["val"] == pytest.approx(0.1 * (1797 - info.sizes["test"]), abs=2)
    for name, size in info.sizes.items():
        split = load_split(tmp_path, name)
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape == (size, 1, 8, 8)
    train = load_split(tmp_path, "train").images
    assert train.max() == 255  # 0..16 was stretched to 0..255
    assert info.mean[0] == pytest.approx(train.double().mean().item() / 255)
    assert info.std[0] == pytest.approx(train.double().std(unbiased=False).item() / 255)
    assert load_info(tmp_path) == info
    assert DatasetInfo.from_json(info.to_json()) == info


def test_train_and_val_subsets_are_stratified_and_leave_test_whole(tmp_path: Path) -> None:
    whole = prepare(Digits(), tmp_path / "whole", 0.15, 0.2, seed=0)
    info = prepare(Digits(), tmp_path / "cut", 0.15, 0.2, seed=0, train_size=300, val_size=50)
    assert info.sizes == {"train": 300, "val": 50, "test": whole.sizes["test"]}
    assert torch.equal(
        load_split(tmp_path / "cut", "test").images, load_split(tmp_path / "whole", "test").images
    )
    labels = load_split(tmp_path / "cut", "train").labels
    assert torch.bincount(labels).min() >= 28  # 30 a class, give or take rounding
    full = {bytes(x.numpy()) for x in load_split(tmp_path / "whole", "train").images}
    assert all(bytes(x.numpy()) in full for x in load_split(tmp_path / "cut", "train").images)
    again = prepare(Digits(), tmp_path / "again", 0.15, 0.2, seed=0, train_size=300, val_size=50)
    assert again == info
    with pytest.raises(NasflowError, match=r"data.train_size=0 must be a positive integer"):
        prepare(Digits(), tmp_path / "bad", 0.15, 0.2, seed=0, train_size=0)


def test_splits_are_disjoint_and_cover_pool() -> None:
    raw = index_encoded(Digits().load())
    splits = split_dataset(raw, val_fraction=0.15, test_fraction=0.15, seed=3)
    ids = [decode_ids(splits[name]) for name in ("train", "val", "test")]
    assert sum(len(i) for i in ids) == 1797
    assert set.union(*ids) == set(range(1797))


def test_splits_are_stratified() -> None:
    raw = Digits().load()
    splits = split_dataset(raw, val_fraction=0.2, test_fraction=0.2, seed=1)
    pool_share = torch.bincount(raw.pool.labels, minlength=10) / len(raw.pool)
    for name in ("train", "val", "test"):
        share = torch.bincount(splits[name].labels, minlength=10) / len(splits[name])
        assert torch.allclose(share, pool_share, atol=0.01), name


def test_prepare_is_deterministic(tmp_path: Path) -> None:
    first = prepare(Digits(), tmp_path / "a", 0.1, 0.1, seed=7)
    again = prepare(Digits(), tmp_path / "b", 0.1, 0.1, seed=7)
    other = prepare(Digits(), tmp_path / "c", 0.1, 0.1, seed=8)
    assert first.content_hash == again.content_hash
    assert other.content_hash != first.content_hash
    for filename in ("meta.json", "train.pt", "val.pt", "test.pt"):
        assert (tmp_path / "a" / filename).read_bytes() == (tmp_path / "b" / filename).read_bytes()


def test_failed_write_keeps_previous_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare(Digits(), tmp_path, 0.1, 0.1, seed=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_save = torch.save
    calls = []

    def flaky_save(obj: object, f: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        prepare(Digits(), tmp_path, 0.1, 0.1, seed=99)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------- torchvision sources


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_mnist_like(tmp_path: Path, name: str) -> None:
    arrays = write_mnist_like(tmp_path, name)
    raw = TorchvisionDataset(name=name, root=str(tmp_path), download=False).load()
    assert raw.name == name
    assert raw.class_names == tuple(getattr(torchvision.datasets, name).classes)
    assert raw.pool.images.shape == (40, 1, 28, 28) and raw.pool.images.dtype == torch.uint8
    assert raw.test is not None and raw.test.images.shape == (20, 1, 28, 28)
    assert np.array_equal(raw.pool.images[:, 0].numpy(), arrays["train"][0])
    assert raw.pool.labels.tolist() == arrays["train"][1].tolist()
    assert raw.test.labels.tolist() == arrays["t10k"][1].tolist()

    source = TorchvisionDataset(name=name, root=str(tmp_path))
    info = prepare(source, tmp_path / "out", val_fraction=0.25, test_fraction=0.5, seed=0)
    # The official test split is kept whole; val comes out of the 40 training images.
    assert info.sizes == {"train": 30, "val": 10, "test": 20}
    assert torch.equal(load_split(tmp_path / "out", "test").labels, raw.test.labels)


def test_cifar10(tmp_path: Path, cifar_without_md5: None) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    batches = [cifar_batch(rng, 4, 10, "labels") for _ in range(5)]
    for i, batch in enumerate(batches, start=1):
        write_pickle(folder / f"data_batch_{i}", batch)
    write_pickle(folder / "test_batch", cifar_batch(rng, 6, 10, "labels"))
    names = [f"class{i}" for i in range(10)]
    write_pickle(folder / "batches.meta", {"label_names": names})

    raw = TorchvisionDataset(name="CIFAR10", root=str(tmp_path)).load()
    assert raw.class_names == tuple(names)
    assert raw.pool.images.shape == (20, 3, 32, 32)
    assert raw.test is not None and raw.test.images.shape == (6, 3, 32, 32)
    first = torch.from_numpy(batches[0]["data"][0].reshape(3, 32, 32))
    assert torch.equal(raw.pool.images[0], first)  # channel planes land in NCHW order
    assert raw.pool.labels[:4].tolist() == [0, 1, 2, 3]


def test_cifar100(tmp_path: Path, cifar_without_md5: None) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    write_pickle(folder / "train", cifar_batch(rng, 12, 100, "fine_labels"))
    write_pickle(folder / "test", cifar_batch(rng, 5, 100, "fine_labels"))
    write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})

    raw = TorchvisionDataset(name="CIFAR100", root=str(tmp_path)).load()
    assert len(raw.class_names) == 100 and raw.class_names[7] == "f7"
    assert raw.pool.images.shape == (12, 3, 32, 32)
    assert raw.pool.labels.tolist() == list(range(12))
    assert raw.test is not None and len(raw.test) == 5


# ---------------------------------------------------------------- image folders


@pytest.mark.parametrize(("channels", "cat_pixel"), [(3, [255, 0, 0]), (1, [76])])
def test_image_folder_flat(tmp_path: Path, channels: int, cat_pixel: list[int]) -> None:
    write_image_tree(tmp_path / "pets")
    raw = ImageFolder(root=str(tmp_path / "pets"), image_size=16, channels=channels).load()
    assert raw.name == "pets" and raw.class_names == ("cat", "dog") and raw.test is None
    assert raw.pool.images.shape == (4, channels, 16, 16)
    assert raw.pool.labels.tolist() == [0, 0, 1, 1]
    # The PNG is lossless, so its resized pixels keep the exact colour (grey 76 for red).
    assert raw.pool.images[0, :, 5, 5].tolist() == cat_pixel


def test_image_folder_train_test(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "train")
    write_image_tree(tmp_path / "test")
    raw = ImageFolder(root=str(tmp_path), image_size=8).load()
    assert raw.class_names == ("cat", "dog")
    assert raw.pool.images.shape == (4, 3, 8, 8)
    assert raw.test is not None and raw.test.images.shape == (4, 3, 8, 8)


def test_image_folder_class_mismatch(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "train", ("cat", "dog"))
    write_image_tree(tmp_path / "test", ("cat", "eel"))
    with pytest.raises(NasflowError, match="eel"):
        ImageFolder(root=str(tmp_path)).load()


# ---------------------------------------------------------------- errors


def test_unknown_torchvision_name(tmp_path: Path) -> None:
    with pytest.raises(NasflowError, match=r"SVHN.*MNIST, FashionMNIST, CIFAR10, CIFAR100"):
        TorchvisionDataset(name="SVHN", root=str(tmp_path)).load()


def test_missing_torchvision_root(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(NasflowError, match=r"nowhere.*MNIST/raw.*download=true"):
        TorchvisionDataset(name="MNIST", root=str(missing)).load()


def test_torchvision_files_missing(tmp_path: Path) -> None:
    # The root exists but holds nothing: torchvision's RuntimeError becomes one line.
    with pytest.raises(NasflowError, match="CIFAR10") as caught:
        TorchvisionDataset(name="CIFAR10", root=str(tmp_path)).load()
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(NasflowError, match="absent"):
        ImageFolder(root=str(tmp_path / "absent")).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(NasflowError, match="empty"):
        ImageFolder(root=str(tmp_path / "empty")).load()
    write_image_tree(tmp_path / "pets")
    with pytest.raises(NasflowError, match="channels 2"):
        ImageFolder(root=str(tmp_path / "pets"), channels=2).load()
    write_image_tree(tmp_path / "half" / "train")
    with pytest.raises(NasflowError, match="train"):
        ImageFolder(root=str(tmp_path / "half")).load()
    (tmp_path / "no_images" / "cat").mkdir(parents=True)
    (tmp_path / "no_images" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(NasflowError, match="no_images"):
        ImageFolder(root=str(tmp_path / "no_images")).load()
    (tmp_path / "pets" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(NasflowError, match=r"broken\.png"):
        ImageFolder(root=str(tmp_path / "pets")).load()


@pytest.mark.parametrize(
    ("val", "test", "bad"),
    [
        (0.0, 0.1, "val_fraction 0.0"),
        (1.0, 0.1, "val_fraction 1.0"),
        (-0.2, 0.1, "val_fraction -0.2"),
        (0.1, 1.5, "test_fraction 1.5"),
        (0.5, 0.5, "= 1.0"),
    ],
)
def test_bad_fractions(val: float, test: float, bad: str) -> None:
    raw = Digits().load()
    with pytest.raises(NasflowError, match=bad.replace(".", r"\.")):
        split_dataset(raw, val_fraction=val, test_fraction=test, seed=0)


def test_missing_prepared_data(tmp_path: Path) -> None:
    with pytest.raises(NasflowError, match=r"never_prepared.*dvc repro prepare"):
        load_info(tmp_path / "never_prepared")
    with pytest.raises(NasflowError, match=r"never_prepared.*dvc repro prepare"):
        load_split(tmp_path / "never_prepared", "train")
    with pytest.raises(NasflowError, match=r"val\.pt.*dvc repro prepare"):
        load_split(tmp_path, "val")
    with pytest.raises(NasflowError, match="validation"):
        load_split(tmp_path, "validation")
    (tmp_path / "train.pt").write_bytes(b"truncated")
    with pytest.raises(NasflowError, match=r"train\.pt.*not a valid split file") as caught:
        load_split(tmp_path, "train")
    assert "\n" not in str(caught.value)
