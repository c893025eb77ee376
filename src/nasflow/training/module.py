"""The one LightningModule that trains every candidate: the network is injected."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# Called with the optimizer and the total number of optimizer steps of the run.
SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of any image classifier.

    Args:
        network: The candidate network (images -> logits).
        num_classes: Number of classes, for the accuracy metrics.
        optimizer: Builds the optimizer from the parameters (a Hydra `_partial_`).
        scheduler: Builds a per-step learning-rate schedule from the optimizer and the
            run's total number of steps (a Hydra `_partial_`), or None for a constant rate.
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self.network(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self.network(x)
        self.val_acc(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True)
        self.log("val_acc", self.val_acc, on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        # Checked once an epoch rather than every step: a per-step check would force a
        # device sync each batch, and a diverged run only wastes the rest of one epoch.
        loss = self.trainer.callback_metrics.get("train_loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"training loss became {float(loss)} in epoch {self.current_epoch}"
            )

    def configure_optimizers(self):  # type: ignore[override]
        optimizer = self.optimizer_factory(self.network.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer, total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
