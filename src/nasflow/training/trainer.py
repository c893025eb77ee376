"""Train one network with Lightning and keep its per-epoch metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
from torch import nn

from nasflow.training.datamodule import InMemoryDataModule
from nasflow.training.module import ClassifierModule, OptimizerFactory, SchedulerFactory

if TYPE_CHECKING:
    from nasflow.records import StopRule

TrainerFactory = Callable[..., pl.Trainer]


def fit(
    network: nn.Module,
    data: InMemoryDataModule,
    num_classes: int,
    epochs: int,
    trainer: TrainerFactory,
    optimizer: OptimizerFactory,
    scheduler: SchedulerFactory | None = None,
    logger: Any = False,
    callbacks: Sequence[pl.Callback] = (),
    stop: StopRule | None = None,
) -> tuple[ClassifierModule, pl.Trainer, list[dict[str, float]]]:
    """Train `network` for `epochs` epochs, validating after each if `data` has a val split.

    Args:
        network: The network to train (modified in place).
        data: Training (and optional validation) batches.
        num_classes: Number of classes.
        epochs: Epochs to train.
        trainer: Builds the Lightning Trainer (a Hydra `_partial_` of `pl.Trainer`).
        optimizer: Builds the optimizer from the network's parameters.
        scheduler: Builds the learning-rate schedule, or None.
        logger: A Lightning logger for live metrics, or False.
        callbacks: Extra Lightning callbacks.
        stop: Asked after every epoch whether to end early (`ClassifierModule.stopped`
            then says why).

    Returns:
        The trained module, the trainer and the per-epoch metrics.
    """
    module = ClassifierModule(network, num_classes, optimizer, scheduler, stop)
    run = trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=list(callbacks),
        limit_val_batches=1.0 if data.val is not None else 0,
    )
    run.fit(module, datamodule=data)
    return module, run, module.history
