"""Data that cannot be right is refused with one line: too few classes, a class missing from
a split, split files that do not match meta.json, images that cannot be decoded."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision import transforms

from nasflow.data import Digits, ImageFolder, RawDataset, Split, load_info, prepare, split_dataset
from nasflow.data.prepare import split_hash
from nasflow.errors import NasflowError
from nasflow.training import InMemoryData
from tests import launch

# ---------------------------------------------------------------- small real image files


def noise_image(seed: int, size: tuple[int, int] = (12, 10)) -> Image.Image:
    # Noise, not a flat colour, so that a truncated file really lacks pixel data.
    return Image.effect_noise(size, 40 + seed).convert("RGB")


def encoded(fmt: str, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    noise_image(seed, (48, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


def write_images(folder: Path, count: int, first_seed: int = 0) -> None:
    """``count`` real images in ``folder``, alternating PNG and JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        fmt, ext = ("PNG", "png") if i % 2 == 0 else ("JPEG", "jpg")
        noise_image(first_seed + i).save(folder / f"img{i:03d}.{ext}", format=fmt)


def write_corrupt(folder: Path, names: list[str]) -> list[Path]:
    """Truncated JPEGs, truncated PNGs and garbage, in turn; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, png = encoded("JPEG"), encoded("PNG")
    kinds = [jpeg[: len(jpeg) // 2], png[: len(png) // 2], b"not an image at all"]
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.write_bytes(kinds[i % len(kinds)])
        paths.append(path)
    return paths


def one_line(err: pytest.ExceptionInfo[NasflowError]) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def raw_dataset(labels: list[int], class_names: tuple[str, ...], test: list[int] | None = None):
    def split(values: list[int]) -> Split:
        n = len(values)
        images = torch.arange(n * 4, dtype=torch.int64).remainder(256).to(torch.uint8)
        return Split(images.view(n, 1, 2, 2), torch.tensor(values, dtype=torch.int64))

    return RawDataset("toy", class_names, split(labels), None if test is None else split(test))


# ---------------------------------------------------------------- classes


def test_one_class_image_folder_is_refused_before_decoding(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "cat", 6)
    # A corrupt file too: the class check must come first, without decoding anything.
    write_corrupt(tmp_path / "pets" / "cat", ["bad.jpg"])
    with pytest.raises(NasflowError) as err:
        ImageFolder(root=str(tmp_path / "pets")).load()
    message = one_line(err)
    assert "only one class" in message and "'cat'" in message
    assert str(tmp_path / "pets") in message and "bad.jpg" not in message


def test_one_class_train_test_layout_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "train" / "cat", 4)
    write_images(tmp_path / "pets" / "test" / "cat", 2)
    with pytest.raises(NasflowError, match=r"only one class folder 'cat'") as err:
        ImageFolder(root=str(tmp_path / "pets")).load()
    assert str(tmp_path / "pets" / "train") in one_line(err)


def test_one_class_in_memory_source_is_refused() -> None:
    with pytest.raises(NasflowError, match=r"dataset 'toy' has only one class '0'"):
        split_dataset(raw_dataset([0] * 20, ("0",)), 0.2, 0.2, seed=0)


def test_class_without_any_image_is_named() -> None:
    # Three class names, but no example of "c": train cannot learn it.
    raw = raw_dataset([0, 1] * 10, ("a", "b", "c"))
    with pytest.raises(NasflowError) as err:
        split_dataset(raw, 0.2, 0.2, seed=0)
    assert "train split of dataset 'toy' has no image of class 'c'" in one_line(err)


def test_class_missing_from_official_test_split_is_named() -> None:
    raw = raw_dataset([0, 1] * 10, ("a", "b"), test=[0, 0, 0])
    with pytest.raises(
        NasflowError, match=r"test split of dataset 'toy' has no image of class 'b'"
    ):
        split_dataset(raw, 0.2, 0.2, seed=0)


def test_rare_class_left_out_of_a_split_is_refused_and_nothing_is_overwritten(
    tmp_path: Path,
) -> None:
    out = tmp_path / "prepared"
    prepare(Digits(), out, 0.1, 0.1, seed=0)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # 8 cats, 2 dogs, test_fraction 0.2: stratified rounding gives test 2 cats and no dog.
    write_images(tmp_path / "pets" / "cat", 8)
    write_images(tmp_path / "pets" / "dog", 2, first_seed=50)
    source = ImageFolder(root=str(tmp_path / "pets"), image_size=8)
    with pytest.raises(NasflowError) as err:
        prepare(source, out, val_fraction=0.5, test_fraction=0.2, seed=0)
    message = one_line(err)
    assert "test split of dataset 'pets' has no image of class 'dog'" in message
    assert "val_fraction/test_fraction" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_missing_classes_are_listed_up_to_twenty() -> None:
    names = tuple(f"c{i:02d}" for i in range(30))
    raw = raw_dataset([0, 1] * 10, names)
    with pytest.raises(NasflowError) as err:
        split_dataset(raw, 0.2, 0.2, seed=0)
    message = one_line(err)
    assert "'c02', 'c03'" in message and "'c21' and 8 more" in message
    assert "'c22'" not in message


def test_enough_images_of_every_class_prepares(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "cat", 5)
    write_images(tmp_path / "pets" / "dog", 5, first_seed=50)
    source = ImageFolder(root=str(tmp_path / "pets"), image_size=8)
    info = prepare(source, tmp_path / "out", val_fraction=0.25, test_fraction=0.2, seed=0)
    assert info.sizes == {"train": 6, "val": 2, "test": 2}


# ---------------------------------------------------------------- splits against meta.json


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    out = tmp_path / "prepared"
    prepare(Digits(), out, val_fraction=0.15, test_fraction=0.2, seed=0)
    return out


def test_untouched_splits_load(prepared: Path) -> None:
    data = InMemoryData.load(prepared, ("train", "val", "test"))
    assert {k: len(v) for k, v in data.splits.items()} == data.info.sizes


def test_content_hash_is_computed_as_before(prepared: Path) -> None:
    # The value data/prepared/meta.json (and so dvc.lock and checkpoint fingerprints) hold
    # for params.yaml's split; per-split hashes were added beside it, not mixed into it.
    info = load_info(prepared)
    assert info.content_hash == "f96864890c73e8a371b5db1e184137a6b7d426251203cf8b10d7b314105787fe"
    assert set(info.split_hashes) == {"train", "val", "test"}
    assert len(set(info.split_hashes.values())) == 3


def test_split_copied_over_another_is_refused(prepared: Path) -> None:
    shutil.copy(prepared / "val.pt", prepared / "train.pt")
    with pytest.raises(NasflowError) as err:
        InMemoryData.load(prepared, ("train", "val"))
    message = one_line(err)
    assert str(prepared / "train.pt") in message and str(prepared / "meta.json") in message
    assert "holds 216 samples" in message and "records 1221 for train" in message
    assert "dvc repro prepare" in message and "pipelines/prepare.py" in message


def test_same_size_split_from_another_preparation_is_refused(
    prepared: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    prepare(Digits(), other, val_fraction=0.15, test_fraction=0.2, seed=1)
    assert load_info(other).sizes == load_info(prepared).sizes
    # evaluate reads only the test split, so its own hash must be checkable alone.
    shutil.copy(other / "test.pt", prepared / "test.pt")
    with pytest.raises(NasflowError) as err:
        InMemoryData.load(prepared, ("test",))
    message = one_line(err)
    assert f"'{prepared / 'test.pt'}' does not match the test hash" in message
    assert "dvc repro prepare" in message
    # The splits that were not touched still load.
    InMemoryData.load(prepared, ("train", "val"))


def test_meta_without_split_hashes_asks_to_prepare_again(prepared: Path) -> None:
    meta = prepared / "meta.json"
    data = json.loads(meta.read_text())
    del data["split_hashes"]
    meta.write_text(json.dumps(data))
    assert load_info(prepared).content_hash == data["content_hash"]  # still readable
    with pytest.raises(NasflowError) as err:
        InMemoryData.load(prepared, ("train", "val"))
    message = one_line(err)
    assert "records no hash of the train split" in message and "older nasflow" in message
    assert "dvc repro prepare" in message


def test_split_hash_covers_shape_and_content() -> None:
    labels = torch.zeros(4, dtype=torch.int64)
    flat = Split(torch.zeros((4, 1, 2, 2), dtype=torch.uint8), labels)
    wide = Split(torch.zeros((4, 1, 1, 4), dtype=torch.uint8), labels)
    changed = Split(flat.images.clone(), labels.clone())
    changed.images[3, 0, 1, 1] = 1
    assert len({split_hash("train", s) for s in (flat, wide, changed)}) == 3
    assert split_hash("train", flat) == split_hash("train", Split(flat.images.clone(), labels))


# ---------------------------------------------------------------- undecodable images


def test_every_undecodable_image_is_named(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "cat", 3)
    write_images(tmp_path / "pets" / "dog", 3, first_seed=50)
    bad = write_corrupt(tmp_path / "pets" / "cat", ["half.jpg", "half.png"])
    bad += write_corrupt(tmp_path / "pets" / "dog", ["cut.jpg", "cut.png", "junk.jpg"])
    with pytest.raises(NasflowError) as err:
        ImageFolder(root=str(tmp_path / "pets")).load()
    message = one_line(err)
    assert message.startswith(f"cannot decode 5 image(s) under image folder '{tmp_path / 'pets'}'")
    for path in bad:
        assert f"'{path}'" in message
    assert "img000" not in message and "more" not in message


def test_undecodable_images_in_train_and_test_are_named_together(tmp_path: Path) -> None:
    for part in ("train", "test"):
        write_images(tmp_path / "pets" / part / "cat", 2)
        write_images(tmp_path / "pets" / part / "dog", 2, first_seed=50)
    bad = write_corrupt(tmp_path / "pets" / "train" / "dog", ["a.jpg"])
    bad += write_corrupt(tmp_path / "pets" / "test" / "cat", ["b.jpg"])
    with pytest.raises(NasflowError, match=r"cannot decode 2 image\(s\)") as err:
        ImageFolder(root=str(tmp_path / "pets")).load()
    assert all(f"'{path}'" in one_line(err) for path in bad)


def test_many_undecodable_images_list_twenty_then_a_count(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "cat", 2)
    write_images(tmp_path / "pets" / "dog", 2, first_seed=50)
    bad = write_corrupt(tmp_path / "pets" / "dog", [f"bad{i:02d}.jpg" for i in range(25)])
    with pytest.raises(NasflowError) as err:
        ImageFolder(root=str(tmp_path / "pets")).load()
    message = one_line(err)
    assert message.startswith("cannot decode 25 image(s)")
    assert all(f"'{path}'" in message for path in bad[:20])
    assert f"'{bad[19]}' and 5 more;" in message and "bad20" not in message


def test_good_images_decode_as_before(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "cat", 2)
    write_images(tmp_path / "pets" / "dog", 2, first_seed=50)
    raw = ImageFolder(root=str(tmp_path / "pets"), image_size=12, channels=3).load()
    assert raw.pool.labels.tolist() == [0, 0, 1, 1]
    # Each row is its own file, decoded and resized as torchvision does it, in sorted order.
    files = sorted((tmp_path / "pets").glob("*/*"))
    resize = transforms.Compose([transforms.Resize((12, 12)), transforms.PILToTensor()])
    for row, path in zip(raw.pool.images, files, strict=True):
        assert torch.equal(row, resize(Image.open(path).convert("RGB"))), path


# ---------------------------------------------------------------- from the command line


@pytest.mark.slow
def test_prepare_stage_reports_one_class_folder_in_one_line(tmp_path: Path) -> None:
    write_images(tmp_path / "pets" / "cat", 4)
    result = launch.run(
        launch.stage(
            "prepare",
            "data=image_folder",
            f"data.source.root={tmp_path / 'pets'}",
            f"paths.prepared={tmp_path / 'out'}",
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout
    assert "only one class folder 'cat'" in lines[0] and str(tmp_path / "pets") in lines[0]
    assert not (tmp_path / "out").exists()
