"""Stage 1: load the configured data set and write seeded, stratified splits."""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from nasflow.data import prepare

log = logging.getLogger("nasflow.prepare")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Write train/val/test splits and their description to ``paths.prepared``."""
    source = instantiate(cfg.data.source)
    info = prepare(
        source,
        cfg.paths.prepared,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        seed=cfg.data.split_seed,
        train_size=cfg.data.train_size,
        val_size=cfg.data.val_size,
    )
    log.info(
        "%s: %s, input %s, %d classes -> %s",
        info.name,
        ", ".join(f"{k} {v}" for k, v in info.sizes.items()),
        "x".join(map(str, info.input_shape)),
        info.num_classes,
        cfg.paths.prepared,
    )
    return info.sizes
