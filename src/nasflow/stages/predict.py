"""Classes for new images: the exported ONNX model (or the retrained checkpoint) on files
read exactly as the training images were prepared.

Each image is decoded to RGB, resized and made grayscale as the image folder source does
(`nasflow.data.sources.image_transform`), to the model's input shape, then scaled to
[0, 1] and normalised with the training split's mean and std, as the prepare stage
recorded them. A file that is not an image, or an image with an alpha channel or four
colour channels (which training would have flattened to RGB), gets one line saying why
and is skipped; the others are still predicted. ``predictions.csv`` has one row per
image read: the file, the class and its softmax probability.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from nasflow.artifacts import read_json
from nasflow.errors import NasflowError
from nasflow.outputs import csv_text

log = logging.getLogger("nasflow.predict")

MODELS = ("onnx", "ckpt")
BATCH = 256


def run(cfg: DictConfig) -> dict[str, Any]:
    """Predict every image of ``predict.inputs``; write ``predict.output``."""
    settings = cfg.predict
    if settings.model not in MODELS:
        raise NasflowError(f"predict.model={settings.model} is not a model; choose from onnx, ckpt")
    if not settings.inputs:
        raise NasflowError("predict.inputs is not set; give an image file or a folder of images")
    files = _inputs(Path(settings.inputs))
    preprocessing = _preprocessing(cfg)
    _, height, width = preprocessing["input_shape"]
    if height != width:
        raise NasflowError(f"the model's input is {height}x{width}; only square inputs are read")
    classify = _onnx(cfg) if settings.model == "onnx" else _checkpoint(cfg, preprocessing)

    rows, skipped = [], 0
    images, names = [], []
    for path in files:
        try:
            images.append(read_image(path, preprocessing))
            names.append(path)
        except NasflowError as error:
            log.warning("%s", error)
            skipped += 1
    if not images:
        raise NasflowError(f"none of the {len(files)} files in {settings.inputs} could be read")
    for start in range(0, len(images), BATCH):
        batch = np.stack(images[start : start + BATCH])
        logits = classify(batch)
        probabilities = _softmax(logits)
        for path, row in zip(names[start : start + BATCH], probabilities, strict=True):
            index = int(np.argmax(row))
            rows.append(
                [str(path), preprocessing["class_names"][index], round(float(row[index]), 6)]
            )
    output = Path(settings.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(csv_text(["file", "class", "probability"], rows))
    log.info("%d images predicted (%d skipped) -> %s", len(rows), skipped, output)
    return {"predicted": len(rows), "skipped": skipped, "output": str(output)}


def read_image(path: Path, preprocessing: dict[str, Any]) -> np.ndarray:
    """`path` as the model's normalised float32 CxHxW input; a NasflowError naming the
    file and the reason when it cannot be."""
    from PIL import Image, UnidentifiedImageError

    from nasflow.data.sources import image_transform

    channels, height, _ = preprocessing["input_shape"]
    try:
        with Image.open(path) as opened:
            bands = opened.getbands()
            if len(bands) not in (1, 3):
                raise NasflowError(
                    f"{path}: has {len(bands)} channels ({''.join(bands)}); images of 1 or 3 "
                    f"channels are read (the model takes {channels})"
                )
            image = opened.convert("RGB")  # what torchvision's loader does
    except (UnidentifiedImageError, OSError) as error:
        raise NasflowError(f"{path}: not an image ({type(error).__name__})") from None
    pixels = image_transform(height, channels)(image)
    mean = torch.tensor(preprocessing["mean"]).view(-1, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(-1, 1, 1)
    return ((pixels.float() / 255.0 - mean) / std).numpy().astype(np.float32)


def _inputs(inputs: Path) -> list[Path]:
    if inputs.is_file():
        return [inputs]
    if not inputs.is_dir():
        raise NasflowError(f"predict.inputs={inputs} is neither a file nor a folder")
    files = sorted(p for p in inputs.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise NasflowError(f"predict.inputs={inputs} is an empty folder")
    return files


def _preprocessing(cfg: DictConfig) -> dict[str, Any]:
    """The export's record of the preprocessing, or for a checkpoint the prepare stage's."""
    if cfg.predict.model == "onnx":
        return dict(read_json(Path(cfg.paths.export) / "preprocessing.json", "export"))
    meta = read_json(Path(cfg.paths.prepared) / "meta.json", "prepare")
    return {key: meta[key] for key in ("input_shape", "mean", "std", "class_names", "num_classes")}


def _onnx(cfg: DictConfig) -> Any:
    from nasflow.stages.export import INPUT, ONNX, onnx_session

    path = Path(cfg.paths.export) / ONNX
    if not path.is_file():
        raise NasflowError(f"{path} not found; run the export stage first")
    session = onnx_session(path)
    return lambda batch: session.run(None, {INPUT: batch})[0]


def _checkpoint(cfg: DictConfig, preprocessing: dict[str, Any]) -> Any:
    from nasflow.stages.evaluate import retrained_network

    network, _, _ = retrained_network(
        cfg, preprocessing["input_shape"], preprocessing["num_classes"]
    )

    def classify(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(batch)).numpy()  # type: ignore[no-any-return]

    return classify


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]
