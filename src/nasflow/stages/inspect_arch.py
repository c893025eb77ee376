"""Inspect one architecture: its parameters, FLOPs and a diagram. Not a DVC stage.

``python pipelines/inspect_arch.py search_space=nb201 inspect.arch='...'`` takes the
architecture as a file (an architecture record such as ``results/search/best_architecture.json``,
or the bare architecture JSON) or as text (JSON, or the official string for NAS-Bench-201).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from nasflow import diagram
from nasflow.artifacts import architecture_from_record, read_json
from nasflow.data import load_info
from nasflow.errors import NasflowError
from nasflow.measure import count_flops, count_params
from nasflow.search_spaces.base import Architecture, SearchSpace

log = logging.getLogger("nasflow.inspect")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Print what the architecture costs and write its diagram; returns the figures."""
    space: SearchSpace = instantiate(cfg.search_space)
    arch = load_architecture(space, cfg.inspect.arch)
    input_shape, num_classes = _network_io(cfg)
    network = space.build(arch, input_shape, num_classes)
    figures = {
        "space": space.name,
        "id": arch.id,
        "architecture": arch.describe(),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "params": count_params(network),
        "flops": count_flops(network, input_shape),
        "diagram": str(diagram.save(space.graphs(arch), cfg.inspect.diagram)),
    }
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        print(f"{key:<{width}}  {shown}")
    return figures


def load_architecture(space: SearchSpace, given: str) -> Architecture:
    """An architecture from a file path or from text, checked against `space`."""
    if not given:
        raise NasflowError("give the architecture: inspect.arch=<file or text>")
    path = Path(given)
    if given.lower().endswith(".json") or path.is_file():
        if not path.is_file():
            raise NasflowError(f"inspect.arch: no such file {given}")
        data = read_json(path, produced_by="search or by hand")
        # An architecture record (what search writes) wraps the architecture itself.
        if isinstance(data, dict) and "architecture" in data:
            return architecture_from_record(data, space, given)
        try:
            return space.from_json(data)
        except NasflowError as error:
            raise NasflowError(f"{given}: {error}") from None
    return space.parse(given)


def _network_io(cfg: DictConfig) -> tuple[tuple[int, ...], int]:
    """The input shape and class count: given, or those of the prepared data."""
    shape, classes = cfg.inspect.input_shape, cfg.inspect.num_classes
    if shape is None or classes is None:
        prepared = Path(cfg.paths.prepared)
        if not (prepared / "meta.json").is_file():
            raise NasflowError(
                f"no prepared data in {prepared} to take the input shape from; run "
                "`dvc repro prepare` or give inspect.input_shape=[3,32,32] inspect.num_classes=10"
            )
        info = load_info(prepared)
        shape = info.input_shape if shape is None else shape
        classes = info.num_classes if classes is None else classes
    if len(shape) != 3 or min(shape) < 1 or classes < 1:
        raise NasflowError(
            f"inspect.input_shape must be [channels, height, width] and num_classes >= 1, "
            f"got {json.dumps(list(shape))} and {classes}"
        )
    return tuple(int(s) for s in shape), int(classes)
