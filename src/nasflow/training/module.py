"""The one LightningModule that trains every candidate: the network is injected."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from nasflow.progress import report_epoch

if TYPE_CHECKING:
    from nasflow.records import StopRule

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# Called with the optimizer and the total number of optimizer steps of the run.
SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of any image classifier.

    Metrics are accumulated over an epoch and logged once at its end: a per-step
    `self.log` costs about a millisecond, as much as a whole step of a small candidate
    (see benchmarks/lightning_overhead.py). Each epoch's metrics are also kept in
    `history`, one dict per epoch.

    Args:
        network: The candidate network (images -> logits).
        num_classes: Number of classes, for the accuracy metrics.
        optimizer: Builds the optimizer from the parameters (a Hydra `_partial_`).
        scheduler: Builds a per-step learning-rate schedule from the optimizer and the
            run's total number of steps (a Hydra `_partial_`), or None for a constant rate.
        stop: Asked after every epoch whether to end training early (a learning-curve
            rule); its reason is kept in `stopped`.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        stop: StopRule | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.stop = stop
        self.stopped: str | None = None  # why `stop` ended training early
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Labels come from our own prepared splits; checking them every batch is wasted work.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        # nan_strategy="disable": a NaN loss must reach the mean (and fail the candidate),
        # not be dropped with a warning as torchmetrics does by default.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.history: list[dict[str, float]] = []
        self._val_metrics: dict[str, float] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self.network(x)
        loss = F.cross_entropy(logits, y)
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update(logits.detach(), y)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self.network(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_acc.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        self._val_metrics = {"val_loss": _pop(self.val_loss), "val_acc": _pop(self.val_acc)}
        self.log_dict(self._val_metrics, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        # Lightning validates inside the training epoch, so this epoch's val metrics are in.
        metrics = {"train_loss": _pop(self.train_loss), "train_acc": _pop(self.train_acc)}
        # Checked once an epoch rather than every step: a per-step check would force a
        # device sync each batch, and a diverged run only wastes the rest of one epoch.
        if not math.isfinite(metrics["train_loss"]):
            raise FloatingPointError(
                f"training loss became {metrics['train_loss']} in epoch {self.current_epoch}"
            )
        # The values are over all processes of a distributed training already (torchmetrics
        # syncs on compute): sync_dist only says so to Lightning.
        self.log_dict(metrics, sync_dist=True)
        self.history.append({"epoch": self.current_epoch, **metrics, **self._val_metrics})
        self._val_metrics = {}
        report_epoch(self.history[-1])  # to the search, wherever this trains
        # Here rather than in a Callback: Lightning calls callbacks' on_train_epoch_end
        # before the module's, when this epoch is not in `history` yet.
        if self.stop is not None and (reason := self.stop(self.history)):
            self.stopped = reason
            self.trainer.should_stop = True

    def configure_optimizers(self):  # type: ignore[no-untyped-def]  # Lightning's union type
        optimizer = self.optimizer_factory(self.network.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer, total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def _pop(metric: MeanMetric | MulticlassAccuracy) -> float:
    """The metric's value over the epoch, then reset for the next one."""
    value = float(metric.compute())
    metric.reset()
    return value
