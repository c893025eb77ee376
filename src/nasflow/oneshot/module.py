"""The Lightning module every one-shot search trains its supernet with.

DARTS and ENAS differ in how they choose the op weights of each step and what they do
after an epoch's training; what they share is here: the supernet's SGD with DARTS'
cosine schedule (stepped once per epoch), gradient clipping that works under mixed
precision, the training metrics, the per-epoch record, and evaluation passes run by hand
outside Lightning's loops (for ENAS' rewards and DARTS-PT's perturbations). Optimisation
is manual, so that a method can take other steps (DARTS' architect) between the weights'
own; the trainer still supplies the device and the precision.

Resuming: a Lightning checkpoint holds the module's parameters and buffers (the supernet,
DARTS' alpha and masks), the weights' optimiser and schedule and the loops' progress; what
else a search needs to continue exactly, it adds under `RESUME_KEY` (`resume_state`): the
per-epoch records, every random generator's state and the method's own decisions.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from nasflow.oneshot.build import Supernet
from nasflow.oneshot.settings import WeightSettings
from nasflow.oneshot.supernet import supernet_logits

# The batch size of passes over the validation split that only evaluate.
EVAL_BATCH = 256
# Where a Lightning checkpoint of a search keeps what Lightning itself does not save.
RESUME_KEY = "nasflow"

log = logging.getLogger("nasflow.search")

# Called with each epoch's record (see `OneShotResult.epochs`).
EpochCallback = Callable[[dict[str, Any]], None]


class SupernetModule(pl.LightningModule):
    """What both methods share: the supernet's SGD with a cosine schedule, clipping,
    training metrics, the per-epoch record and manual evaluation passes."""

    def __init__(
        self,
        network: Supernet,
        num_classes: int,
        settings: WeightSettings,
        train: TensorDataset,
        val: TensorDataset,
        train_order: torch.Generator,
        on_record: EpochCallback,
        method: str = "one-shot",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.settings = settings
        self.train_set, self.val_set = train, val
        self.train_order = train_order
        self.on_record = on_record
        self.method = method  # the search's name, for the resume message
        self.history: list[dict[str, Any]] = []
        #: Seconds the epochs restored from a checkpoint took, in the process that ran them.
        self.resumed_seconds = 0.0
        # Every epoch the trainer runs (a perturbation selection adds tuning epochs).
        self.total_epochs = settings.epochs
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self._epoch_start = 0.0

    # -- data and optimisation -------------------------------------------------------

    def _train_loader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.settings.batch_size,
            shuffle=True,
            generator=self.train_order,
        )

    def _eval_loader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(self.settings.batch_size, EVAL_BATCH))

    def configure_optimizers(self):  # type: ignore[no-untyped-def]  # Lightning's union type
        s = self.settings
        optimizer = torch.optim.SGD(
            self.network.parameters(),
            lr=s.w_lr,
            momentum=s.w_momentum,
            weight_decay=s.w_weight_decay,
        )
        # Stepped once per epoch, by hand (manual optimisation), as in DARTS.
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=self.total_epochs, eta_min=s.w_lr_min
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _sgd(self) -> torch.optim.SGD:
        optimizer = self.optimizers()
        inner = getattr(optimizer, "optimizer", optimizer)
        assert isinstance(inner, torch.optim.SGD)
        return inner

    def _weight_step(self, weights: Mapping[str, Tensor], batch: Any) -> None:
        """One SGD step of the supernet's weights on `batch` with the op weights given."""
        x, y = batch
        logits = supernet_logits(self.network, x, weights)
        loss = F.cross_entropy(logits, y)
        optimizer = self.optimizers()
        assert isinstance(optimizer, LightningOptimizer)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.train_loss.update(loss.detach(), weight=len(y))
        self.train_acc.update(logits.detach(), y)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Here rather than after `manual_backward`: with "16-mixed" the precision plugin
        # unscales the gradients just before this hook, so the clip sees their true norm.
        if self.settings.grad_clip is not None:
            self.clip_gradients(
                optimizer,
                gradient_clip_val=self.settings.grad_clip,
                gradient_clip_algorithm="norm",
            )

    def complete(self) -> bool:
        """Whether the search ran to its end (every epoch, and what the method adds)."""
        return len(self.history) == self.total_epochs

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def _finish_epoch(self, record: dict[str, Any]) -> None:
        """Complete the epoch's record with the training metrics, keep and report it,
        and step the learning rate."""
        train_loss = float(self.train_loss.compute())
        train_acc = float(self.train_acc.compute())
        self.train_loss.reset()
        self.train_acc.reset()
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"supernet training loss became {train_loss} in epoch {self.current_epoch}"
            )
        record = {
            "epoch": self.current_epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "w_lr": float(self._sgd().param_groups[0]["lr"]),
            **record,
            "seconds": time.perf_counter() - self._epoch_start,
        }
        self.history.append(record)
        self.on_record(record)
        scheduler = self.lr_schedulers()
        if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
            scheduler.step()

    # -- resuming (a Lightning checkpoint after every epoch) ----------------------------

    def resume_state(self) -> dict[str, Any]:
        """What continuing the search needs besides Lightning's own checkpoint: the epoch
        records and the training order's generator (methods add theirs). Plain values and
        tensors only, so the checkpoint loads with ``weights_only``."""
        return {"history": copy.deepcopy(self.history), "train_order": self.train_order.get_state()}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Take back `resume_state`'s values, before the trainer goes on."""
        self.history = copy.deepcopy(state["history"])
        self.train_order.set_state(state["train_order"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RESUME_KEY] = self.resume_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called before the parameters load, the optimisers exist or the data loaders are
        # made: generators restored here give the next epoch the batches it would have had.
        self.load_resume_state(checkpoint[RESUME_KEY])
        self.resumed_seconds = sum(float(record["seconds"]) for record in self.history)
        done, total = len(self.history), self.total_epochs
        if done < total:
            log.info("resuming the %s search from epoch %d of %d", self.method, done + 1, total)
        else:  # killed after its last epoch, before its outputs were written
            log.info(
                "resuming the %s search after its last epoch (%d of %d)", self.method, done, total
            )

    # -- manual evaluation (outside Lightning's loops) ---------------------------------

    @contextmanager
    def _evaluating(self, batch_statistics: bool = False) -> Iterator[None]:
        """No gradients and the trainer's precision, in eval mode, or, with
        `batch_statistics`, in train mode with the network's buffers (batch-norm running
        statistics) restored afterwards; the mode is restored too."""
        was_training = self.network.training
        buffers = (
            {n: b.clone() for n, b in self.network.named_buffers()} if batch_statistics else {}
        )
        self.network.train(batch_statistics)
        try:
            with torch.no_grad(), self.trainer.precision_plugin.forward_context():
                yield
        finally:
            self.network.train(was_training)
            for name, buffer in self.network.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])

    def _device_batch(self, batch: Any) -> Any:
        batch = self.trainer.strategy.batch_to_device(batch)
        return self.trainer.precision_plugin.convert_input(batch)

    def _evaluate(self, weights: Mapping[str, Tensor], batches: Any) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over `batches` (call inside `_evaluating`)."""
        loss = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        count = 0
        for batch in batches:
            x, y = self._device_batch(batch)
            logits = supernet_logits(self.network, x, weights)
            loss += F.cross_entropy(logits.float(), y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
        return float(loss) / max(count, 1), int(correct) / max(count, 1)
