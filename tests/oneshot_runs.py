"""Tiny one-shot searches for the reproduction and resume tests: every one-shot option of
``conf/strategy/`` (the registry's one-shot classes, as each option file configures them),
shrunk to a few seconds on a synthetic problem.

Each search is composed from its real option file, so a change to an option's settings is
a change to what these tests run; `SHRINK` only makes it small.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from torch.utils.data import TensorDataset

from nasflow.data import DatasetInfo
from nasflow.oneshot.strategy import OneShotResult, SupernetSearch
from nasflow.registry import STRATEGIES
from nasflow.tracking.base import Tracker
from nasflow.training.data import InMemoryData
from tests.conftest import compose_config, option_files

CLASSES = 10
# One CPU process, no progress output: what makes a run reproduce bit for bit.
TRAINER = partial(
    pl.Trainer,
    accelerator="cpu",
    devices=1,
    enable_progress_bar=False,
    enable_model_summary=False,
)
# Every search: 4-channel NB201 supernet with one cell per stage, 2 epochs of 4 batches.
COMMON = [
    "search_space=nb201",
    "strategy.epochs=2",
    "strategy.channels=4",
    "strategy.cells=1",
    "strategy.batch_size=16",
]
# What an option needs besides `COMMON` to stay small and still do what makes it itself.
SHRINK: dict[str, list[str]] = {
    # Warm-up, a searched epoch, then shrinking (with its fresh warm-up) and one more.
    "drnas": ["strategy.epochs=4", "strategy.warmup_epochs=1", "strategy.prune_epoch=2"],
    # Three rewards an epoch in updates of two (one left over for the next epoch), and
    # three of the four validation batches: an epoch ends part-way through both.
    "enas": [
        "strategy.controller_steps=3",
        "strategy.controller_batch=2",
        "strategy.final_samples=3",
    ],
}


def one_shot_options() -> list[str]:
    """Every option file of ``conf/strategy/`` that builds a registered one-shot search."""
    classes = set(STRATEGIES.load().values())
    names = []
    for path in option_files("strategy"):
        target = get_class(compose_config([f"strategy={path.stem}"]).strategy._target_)
        if target in classes and issubclass(target, SupernetSearch):
            names.append(path.stem)
    return names


def tiny_strategy(name: str, seed: int = 0) -> SupernetSearch:
    """The option `name` as the search stage would build it, shrunk (see `SHRINK`)."""
    cfg = compose_config([f"strategy={name}", f"seed={seed}", *COMMON, *SHRINK.get(name, [])])
    strategy = instantiate(cfg.strategy, space=instantiate(cfg.search_space))
    assert isinstance(strategy, SupernetSearch)
    return strategy


def tiny_data(
    n: int = 64, seed: int = 0, shape: tuple[int, int, int] = (1, 8, 8), noise: float = 0.8
) -> InMemoryData:
    """`n` training and `n` validation images: a fixed template per class plus `noise`
    times Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn((CLASSES, *shape), generator=g)

    def split() -> TensorDataset:
        labels = torch.randint(CLASSES, (n,), generator=g)
        images = templates[labels] + noise * torch.randn((n, *shape), generator=g)
        return TensorDataset(images, labels)

    info = DatasetInfo(
        name="synthetic",
        class_names=tuple(str(i) for i in range(CLASSES)),
        input_shape=shape,
        num_classes=CLASSES,
        sizes={"train": n, "val": n},
        mean=(0.0,) * shape[0],
        std=(1.0,) * shape[0],
        content_hash="synthetic",
    )
    return InMemoryData(info, {"train": split(), "val": split()})


def without_seconds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without their wall times, the only part of a search that varies."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def run_tiny(name: str, seed: int = 0, **search: Any) -> OneShotResult:
    """One tiny search of option `name` on `tiny_data`, tracked nowhere (`search`: more
    arguments of `SupernetSearch.search`)."""
    return tiny_strategy(name, seed).search(tiny_data(), TRAINER, Tracker(), **search)
