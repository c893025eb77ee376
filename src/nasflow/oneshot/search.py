"""One-shot (weight-sharing) searches: DARTS, GDAS, DrNAS and ENAS as search strategies.

Unlike the ask/tell strategies of `nasflow.search_strategies`, a one-shot search trains
one supernet (`nasflow.oneshot.supernet`) whose weights every architecture of the space
shares, and reads the architecture off it at the end. The search stage calls
`OneShotStrategy.search` once, with the data, a Lightning trainer factory and the tracker.

* `DartsSearch` (``name = "darts"``): continuous architecture parameters alpha, optimised
  by DARTS' architect (`nasflow.oneshot.architect`) on validation batches, alternating
  with SGD steps on the supernet's weights on training batches. The relaxation chooses
  the method: ``softmax`` (DARTS, Liu et al. 2019), ``gumbel`` (GDAS, Dong & Yang 2019;
  tau annealed linearly from 10 to 0.1 over the epochs) or ``dirichlet`` (DrNAS, Chen et
  al. 2021; with its warm-up, regularisers and progressive shrinking). The architecture is
  derived from the relaxation's derivation weights (`nasflow.oneshot.derive`), or, with
  ``selection="perturbation"`` (DARTS-PT, Wang et al. 2021), edge by edge from the
  validation accuracy the supernet loses without each op.
* `EnasSearch` (``name = "enas"``, Pham et al. 2018): the same supernet, driven by
  one-hot weights of architectures that `Reinforce`'s LSTM controller samples. Each
  epoch first trains the shared weights (a freshly sampled architecture per training
  batch), then samples `controller_steps` architectures, each rewarded with its accuracy
  on one validation batch (REINFORCE, through `Reinforce.tell`). The result is the best,
  by accuracy on the whole validation split, of `final_samples` sampled architectures.

Both run as Lightning modules with manual optimisation under the configured trainer (so a
GPU and mixed precision come from the trainer config), record one dict per epoch (see
`OneShotResult`), log numeric metrics per epoch and, at the end, a heat map of the op
weights over the epochs (``alphas.png``) and the whole result (``oneshot.json``).

Randomness: every stream comes from `seed`, through explicit generators (the initial
alpha, the order of the training and validation batches, Gumbel and Dirichlet samples,
the controller's samples) and, for the supernet's initial weights, torch's global
generator seeded under ``torch.random.fork_rng`` (so the caller's global state is left as
it was). On a CPU the same seed gives the same search, bit for bit.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities import CombinedLoader
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from nasflow.errors import NasflowError, check_int, check_number, check_optional_int
from nasflow.estimators.base import Evaluation
from nasflow.oneshot.architect import Architect
from nasflow.oneshot.derive import derive, parameter_free_count
from nasflow.oneshot.relaxation import (
    RELAXATIONS,
    ArchParameters,
    Gumbel,
    Relaxation,
    entropy,
    linear_tau,
    make_relaxation,
)
from nasflow.oneshot.supernet import DARTS_EDGES, DartsSupernet, NB201Supernet, supernet_logits
from nasflow.search_spaces.base import Architecture, Decision, SearchSpace
from nasflow.search_spaces.darts import DartsGenotype, DartsSpace
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Space
from nasflow.search_strategies.reinforce import Reinforce
from nasflow.tracking.base import Tracker
from nasflow.training.data import InMemoryData
from nasflow.training.fit import TrainerFactory, quiet_lightning

# The spaces a supernet exists for.
SPACES = ("nb201", "darts")
# What every per-epoch record holds (`OneShotResult.epochs`).
RECORD_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "entropy",
    "parameter_free",
    "arch",
    "arch_description",
    "alphas",
    "seconds",
)
# How the discrete architecture is read off the supernet: the largest op weight per edge
# (DARTS), or each edge's op whose removal costs the most validation accuracy (DARTS-PT).
SELECTIONS = ("magnitude", "perturbation")
# GDAS' temperature schedule over the epochs.
TAU_MAX, TAU_MIN = 10.0, 0.1
# The batch size of passes over the validation split that only evaluate.
EVAL_BATCH = 256
# Architectures ENAS' controller samples in one batched call while training the weights.
SAMPLE_CHUNK = 32

EpochCallback = Callable[[dict[str, Any]], None]


@dataclass
class OneShotResult:
    """What a one-shot search found.

    Attributes:
        arch: The derived discrete architecture (an `NB201Architecture` or a
            `DartsGenotype`), valid in the searched space.
        score: The supernet's validation accuracy with the architecture's one-hot op
            weights, at the end of the search.
        epochs: One record per epoch (`RECORD_KEYS` and a few more): ``epoch``,
            ``train_loss`` and ``train_acc`` (of the supernet, over the epoch's training
            steps), ``val_loss`` and ``val_acc`` (of the supernet on the validation split:
            under the derivation weights for DARTS, with the controller's most likely
            architecture for ENAS), ``score`` (the epoch's derived architecture through
            the supernet with one-hot weights), ``entropy`` (of the derivation weights,
            mean over edges, for DARTS; of the controller's sequences for ENAS, in nats),
            ``parameter_free`` (parameter-free ops in the derived architecture), ``arch``
            (its JSON), ``arch_description``, ``alphas`` (per cell type, [edge][op] op
            weights: the derivation weights for DARTS, the op frequencies of the epoch's
            controller samples for ENAS), ``w_lr`` and ``seconds``.
        seconds: Wall time of the whole search.
        details: Method-specific extras for the JSON (the ops of the weight columns, the
            final architecture parameters, ENAS' final candidates).
    """

    arch: Architecture
    score: float
    epochs: list[dict[str, Any]]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_json(),
            "arch_description": self.arch.describe(),
            "score": self.score,
            "seconds": self.seconds,
            "epochs": self.epochs,
            **self.details,
        }


class OneShotStrategy(ABC):
    """A weight-sharing search over `space`, run once by `search`.

    Args:
        space: The search space; a supernet exists for `SPACES` only.
        seed: Seeds every random stream of the search.
        settings: The method's settings (see the subclasses).
    """

    name: ClassVar[str]
    one_shot: ClassVar[bool] = True

    def __init__(self, space: SearchSpace, seed: int = 0, **settings: Any) -> None:
        if not isinstance(space, NB201Space | DartsSpace):
            raise NasflowError(
                f"strategy '{self.name}' is a one-shot search and needs a supernet; "
                f"search_space '{getattr(space, 'name', type(space).__name__)}' has none "
                f"(allowed: {', '.join(SPACES)})"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise NasflowError(f"seed must be an integer >= 0, got {seed!r}")
        self.space = space
        self.seed = seed
        self.settings = settings

    @abstractmethod
    def search(
        self,
        data: InMemoryData,
        trainer_factory: TrainerFactory,
        tracker: Tracker,
        on_epoch: EpochCallback = lambda record: None,
    ) -> OneShotResult:
        """Run the search on `data` ("train" and "val" splits).

        Args:
            data: The prepared splits; the supernet is built for ``data.info``.
            trainer_factory: Builds the Lightning Trainer (a Hydra `_partial_` of
                ``pl.Trainer`` with the accelerator and precision).
            tracker: Gets the metrics of every epoch and the final artifacts.
            on_epoch: Called with each epoch's record once it is logged.
        """


# -- settings ------------------------------------------------------------------------------


def _int(key: str, value: Any, minimum: int = 1) -> int:
    return check_int(f"strategy.{key}", value, minimum)


def _optional_int(key: str, value: Any) -> int | None:
    return check_optional_int(f"strategy.{key}", value)


def _number(key: str, value: Any, low: float = 0.0, open_low: bool = False) -> float:
    return check_number(f"strategy.{key}", value, low, open_low=open_low)


@dataclass(frozen=True)
class WeightSettings:
    """The supernet's weights and data, common to every one-shot method (the keyword
    arguments of `DartsSearch` and `EnasSearch` besides their own).

    Attributes:
        epochs: Passes over the training split.
        batch_size: Training (and architecture-step validation) batch size.
        w_lr, w_lr_min: The weights' SGD learning rate, cosine-annealed per epoch from
            w_lr to w_lr_min.
        w_momentum, w_weight_decay: The weights' SGD momentum and weight decay.
        grad_clip: The weights' gradient-norm clip (None: no clipping).
        channels, cells: The supernet's size (NB201: channels and cells per stage;
            DARTS: channels and layers); the space's own if None. The space's values stay
            those of the retraining.
        train_limit, val_limit: Use at most this many training / validation examples, a
            seeded random subset (for CPU runs on large data); all if None.
    """

    epochs: int = 10
    batch_size: int = 64
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: float | None = 5.0
    channels: int | None = None
    cells: int | None = None
    train_limit: int | None = None
    val_limit: int | None = None

    @classmethod
    def check(cls, **values: Any) -> WeightSettings:
        """The settings from `values` (the defaults for those missing), each checked."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NasflowError(
                f"unknown one-shot setting strategy.{unknown[0]}; "
                f"allowed besides the method's own: {', '.join(sorted(known))}"
            )
        v = {**{f.name: f.default for f in fields(cls)}, **values}
        grad_clip = v["grad_clip"]
        settings = cls(
            epochs=_int("epochs", v["epochs"]),
            batch_size=_int("batch_size", v["batch_size"]),
            w_lr=_number("w_lr", v["w_lr"], open_low=True),
            w_lr_min=_number("w_lr_min", v["w_lr_min"]),
            w_momentum=_number("w_momentum", v["w_momentum"]),
            w_weight_decay=_number("w_weight_decay", v["w_weight_decay"]),
            grad_clip=None if grad_clip is None else _number("grad_clip", grad_clip, open_low=True),
            channels=_optional_int("channels", v["channels"]),
            cells=_optional_int("cells", v["cells"]),
            train_limit=_optional_int("train_limit", v["train_limit"]),
            val_limit=_optional_int("val_limit", v["val_limit"]),
        )
        if settings.w_lr_min > settings.w_lr:
            raise NasflowError(
                f"strategy.w_lr_min must be at most w_lr ({settings.w_lr}), got {settings.w_lr_min}"
            )
        if settings.w_momentum >= 1:
            raise NasflowError(f"strategy.w_momentum must be below 1, got {settings.w_momentum}")
        return settings


# -- supernets and one-hot weights -----------------------------------------------------------


def build_supernet(
    space: SearchSpace,
    input_shape: Sequence[int],
    num_classes: int,
    channels: int | None = None,
    cells: int | None = None,
    affine: bool = False,
) -> NB201Supernet | DartsSupernet:
    """The supernet of `space` for images of `input_shape` (C, H, W).

    `channels` and `cells` (NB201: cells per stage; DARTS: layers) size the supernet, the
    space's own values if None. The candidate ops are the space's; a DARTS supernet adds
    ``none``, which DARTS' derivation needs and never picks. `affine` is the NB201 edge
    convolutions' batch norm's (DARTS' supernet is always non-affine).
    """
    if len(input_shape) != 3:
        raise NasflowError(f"a supernet takes images (C, H, W), got input shape {input_shape}")
    in_channels = int(input_shape[0])
    if isinstance(space, NB201Space):
        return NB201Supernet(
            in_channels,
            num_classes,
            channels=channels or space.channels,
            cells_per_stage=cells or space.cells_per_stage,
            ops=space.ops,
            affine=affine,
        )
    if isinstance(space, DartsSpace):
        if cells is not None and cells < 3:
            raise NasflowError(
                f"strategy.cells must be at least 3 for a DARTS supernet, got {cells}"
            )
        return DartsSupernet(
            in_channels,
            num_classes,
            channels=channels or space.channels,
            layers=cells or space.layers,
            stem_multiplier=space.stem_multiplier,
            ops=("none", *space.ops),
        )
    raise NasflowError(f"no supernet for search_space '{space.name}'; allowed: {', '.join(SPACES)}")


def one_hot_weights(
    network: nn.Module, arch: Architecture, device: torch.device | None = None
) -> dict[str, Tensor]:
    """The op weights that make `network` (a supernet) compute `arch` alone.

    NB201: one 1 per edge, at the edge's op. DARTS: per cell type, a 1 at the chosen op of
    each of the genotype's eight edges and at ``none`` on the other six, so every unused
    edge adds nothing and costs (almost) nothing.
    """
    if isinstance(network, NB201Supernet) and isinstance(arch, NB201Architecture):
        weights = torch.zeros(len(arch.edges), len(network.ops), device=device)
        for edge, op in enumerate(arch.edges):
            weights[edge, network.ops.index(op)] = 1.0
        return {"cell": weights}
    if isinstance(network, DartsSupernet) and isinstance(arch, DartsGenotype):
        if "none" not in network.ops:
            raise NasflowError("a DARTS supernet needs the 'none' op to compute one genotype")
        result = {}
        for cell in ("normal", "reduce"):
            weights = torch.zeros(len(DARTS_EDGES), len(network.ops), device=device)
            weights[:, network.ops.index("none")] = 1.0
            for i, (op, source) in enumerate(getattr(arch, cell)):
                row = DARTS_EDGES.index((source, 2 + i // 2))
                weights[row] = 0.0
                weights[row, network.ops.index(op)] = 1.0
            result[cell] = weights
        return result
    raise NasflowError(
        f"cannot put a {type(arch).__name__} on a {type(network).__name__}; "
        "NB201 architectures go on an NB201Supernet, DARTS genotypes on a DartsSupernet"
    )


def _init_network(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` with torch's global generator seeded, leaving the caller's state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _generators(seed: int, count: int) -> list[torch.Generator]:
    """`count` independent CPU generators derived from `seed`."""
    states = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint64)
    return [torch.Generator().manual_seed(int(s) >> 1) for s in states]


def _subset(dataset: Any, limit: int | None, generator: torch.Generator) -> TensorDataset:
    """The split as a TensorDataset, cut to a random `limit` examples if it has more."""
    if not isinstance(dataset, TensorDataset):
        raise NasflowError(
            f"one-shot search needs in-memory splits, got a {type(dataset).__name__}"
        )
    if limit is None or limit >= len(dataset):
        return dataset
    keep = torch.randperm(len(dataset), generator=generator)[:limit]
    return TensorDataset(*(tensor[keep] for tensor in dataset.tensors))


def _splits(
    data: InMemoryData, settings: WeightSettings, generator: torch.Generator
) -> tuple[TensorDataset, TensorDataset]:
    missing = [name for name in ("train", "val") if name not in data.splits]
    if missing:
        raise NasflowError(f"one-shot search needs the splits train and val; missing {missing}")
    train = _subset(data.splits["train"], settings.train_limit, generator)
    val = _subset(data.splits["val"], settings.val_limit, generator)
    if len(train) == 0 or len(val) == 0:
        raise NasflowError("one-shot search needs a non-empty train and val split")
    return train, val


def _cell_weights_json(weights: Mapping[str, Tensor]) -> dict[str, list[list[float]]]:
    return {name: w.detach().float().cpu().tolist() for name, w in weights.items()}


def _alpha_metrics(alphas: Mapping[str, list[list[float]]], ops: Sequence[str]) -> dict[str, float]:
    """One metric per cell type, edge and op: ``alpha.<cell>.e<edge>.<op>``."""
    return {
        f"alpha.{cell}.e{edge}.{op}": float(value)
        for cell, rows in alphas.items()
        for edge, row in enumerate(rows)
        for op, value in zip(ops, row, strict=True)
    }


# -- the heat map ------------------------------------------------------------------------


def render_alpha_heatmap(records: Sequence[Mapping[str, Any]], ops: Sequence[str]) -> bytes:
    """A PNG of each epoch's op weights: one panel per cell type, a row per (edge, op),
    a column per epoch.

    The colour scale spans the weights' own range (shared by the panels), not [0, 1]: a
    short DARTS search moves the softmax weights only a little away from uniform.
    """
    if not records:
        raise NasflowError("no epochs to draw a heat map of")
    cells = list(records[0]["alphas"])
    edges = {cell: len(records[0]["alphas"][cell]) for cell in cells}
    rows = max(edges.values()) * len(ops)
    epochs = len(records)
    figure = Figure(
        figsize=(max(3.0, 1.2 + 0.35 * epochs) * len(cells) + 2.0, 1.2 + 0.13 * rows),
        dpi=100,
        layout="constrained",  # room for the row labels and the colour bar
    )
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(cells), squeeze=False)[0]
    # Per cell type, rows edge-major (edge, op) and a column per epoch.
    matrices = {
        cell: np.array(
            [[value for row in record["alphas"][cell] for value in row] for record in records]
        ).T
        for cell in cells
    }
    low = min(float(m.min()) for m in matrices.values())
    high = max(float(m.max()) for m in matrices.values())
    high = max(high, low + 1e-6)
    image = None
    for ax, cell in zip(axes, cells, strict=True):
        image = ax.imshow(matrices[cell], aspect="auto", cmap="viridis", vmin=low, vmax=high)
        ax.set_title(f"{cell} op weights")
        ax.set_xlabel("epoch")
        ax.set_xticks(range(epochs))
        ax.set_xticklabels([str(record["epoch"]) for record in records], fontsize=6)
        labels = [f"e{edge} {op}" for edge in range(edges[cell]) for op in ops]
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=5)
        for edge in range(1, edges[cell]):
            ax.axhline(edge * len(ops) - 0.5, color="white", linewidth=0.5)
    assert image is not None
    figure.colorbar(image, ax=list(axes), fraction=0.04, label="op weight")
    out = io.BytesIO()
    canvas.print_png(out)
    return out.getvalue()


def _log_artifacts(tracker: Tracker, result: OneShotResult, ops: Sequence[str]) -> None:
    """The heat map (``alphas.png``) and the result (``oneshot.json``)."""
    with tempfile.TemporaryDirectory(prefix="nasflow-oneshot-") as folder:
        path = os.path.join(folder, "alphas.png")
        with open(path, "wb") as handle:
            handle.write(render_alpha_heatmap(result.epochs, ops))
        tracker.log_artifact(path)
    tracker.log_dict(result.to_json(), "oneshot.json")


def _numeric(record: Mapping[str, Any], ops: Sequence[str]) -> dict[str, float]:
    """The record's metrics for the tracker: its numbers and one metric per op weight."""
    metrics = {
        key: float(value)
        for key, value in record.items()
        if key not in ("epoch", "seconds")
        and not isinstance(value, bool)
        and isinstance(value, int | float)
    }
    metrics["epoch_seconds"] = float(record["seconds"])
    metrics.update(_alpha_metrics(record["alphas"], ops))
    return metrics


# -- the Lightning modules -------------------------------------------------------------------


class _SupernetModule(pl.LightningModule):
    """What both methods share: the supernet's SGD with a cosine schedule, clipping,
    training metrics, the per-epoch record and manual evaluation passes."""

    def __init__(
        self,
        network: NB201Supernet | DartsSupernet,
        num_classes: int,
        settings: WeightSettings,
        train: TensorDataset,
        val: TensorDataset,
        train_order: torch.Generator,
        on_record: EpochCallback,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.network = network
        self.settings = settings
        self.train_set, self.val_set = train, val
        self.train_order = train_order
        self.on_record = on_record
        self.history: list[dict[str, Any]] = []
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


class _DartsModule(_SupernetModule):
    """DARTS' bilevel search with manual optimisation.

    Each training step takes a training and a validation batch (a `CombinedLoader` whose
    validation half is drawn, with its own seeded order, as many times as there are
    training examples, so an epoch is one pass over the training split as in DARTS):
    first an architect step on alpha (validation loss; unrolled over one SGD step of the
    weights at order 2), then an SGD step on the weights with the relaxed op weights on
    the training batch. Lightning's validation loop then evaluates the supernet under the
    derivation weights and the derived architecture with one-hot weights.
    """

    def __init__(
        self,
        arch_params: ArchParameters,
        relaxation: Relaxation,
        order: int,
        arch_lr: float,
        arch_weight_decay: float,
        sampler: torch.Generator,
        val_order: torch.Generator,
        warmup_epochs: int = 0,
        prune_epoch: int | None = None,
        keep_ops: int = 3,
        selection: str = "magnitude",
        tune_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.selection = selection
        self.tune_epochs = tune_epochs
        # Perturbation-based selection decides the edges in a seeded random order.
        self.undecided: list[int] = []
        self.decisions: list[dict[str, Any]] = []
        if selection == "perturbation":
            edges = sum(shape[0] for shape in self.network.arch_shapes().values())
            self.undecided = [int(i) for i in torch.randperm(edges, generator=val_order)]
            self.total_epochs = self.settings.epochs + edges * tune_epochs
        # A submodule of this module (so Lightning moves it to the device), not of the
        # network: the architect optimises it on its own.
        self.arch_params = arch_params
        self.relaxation = relaxation
        self.order = order
        self.arch_lr = arch_lr
        self.arch_weight_decay = arch_weight_decay
        self.warmup_epochs = warmup_epochs
        self.prune_epoch = prune_epoch
        self.keep_ops = keep_ops
        self.sampler = sampler
        self.val_order = val_order
        self.architect: Architect | None = None
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_acc = MeanMetric(nan_strategy="disable")
        self.score_acc = MeanMetric(nan_strategy="disable")
        self._derived: Architecture | None = None
        self._val_weights: dict[str, Tensor] = {}
        self._one_hot: dict[str, Tensor] = {}

    def on_fit_start(self) -> None:
        # Here, once the parameters are on their device, so Adam's state is there too.
        self.architect = Architect(
            self.network,
            self.arch_params,
            self.relaxation,
            lr=self.arch_lr,
            weight_decay=self.arch_weight_decay,
            order=self.order,
            generator=self.sampler,
        )

    def train_dataloader(self) -> CombinedLoader:
        search = DataLoader(
            self.val_set,
            batch_size=self.settings.batch_size,
            sampler=RandomSampler(
                self.val_set, num_samples=len(self.train_set), generator=self.val_order
            ),
        )
        return CombinedLoader({"train": self._train_loader(), "val": search}, "max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def complete(self) -> bool:
        return super().complete() and not self.undecided

    def searching(self, epoch: int) -> bool:
        """Whether alpha is optimised in `epoch` (not in a warm-up: the first
        `warmup_epochs`, and as many after pruning; not while a perturbation-based
        selection tunes the weights)."""
        if epoch < self.warmup_epochs or epoch >= self.settings.epochs:
            return False
        pruned_at = self.prune_epoch
        return pruned_at is None or not pruned_at <= epoch < pruned_at + self.warmup_epochs

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.current_epoch == self.prune_epoch:
            self.arch_params.prune(self.relaxation, self.keep_ops)
        tuning = self.current_epoch - self.settings.epochs
        if self.selection == "perturbation" and tuning >= 0 and tuning % self.tune_epochs == 0:
            self.decide_edge()
        if isinstance(self.relaxation, Gumbel):
            self.relaxation.tau = linear_tau(
                self.current_epoch, self.settings.epochs, TAU_MAX, TAU_MIN
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        assert self.architect is not None
        train, val = batch["train"], batch["val"]
        # The architect reads the weights' SGD (learning rate, momentum buffers) to unroll
        # its step at order 2; it never changes the network.
        if self.searching(self.current_epoch):
            self.architect.step(
                train, val, w_lr=self._sgd().param_groups[0]["lr"], w_optimizer=self._sgd()
            )
        with torch.no_grad():  # no gradient to alpha from the weight step
            weights = self.arch_params.weights(self.relaxation, self.sampler)
        self._weight_step(weights, train)

    # -- perturbation-based selection (DARTS-PT, Wang et al. 2021) --------------------

    def _rows(self) -> list[tuple[str, int]]:
        """(parameter name, row) of every edge, in the order edges are numbered."""
        return [
            (name, row) for name in self.arch_params for row in range(len(self.arch_params[name]))
        ]

    def decide_edge(self) -> None:
        """Fix the next undecided edge to the op whose removal costs the supernet the most
        validation accuracy (DARTS-PT's selection; alpha is not consulted)."""
        if not self.undecided:
            return
        edge = self.undecided.pop(0)
        name, row = self._rows()[edge]
        candidates = [int(k) for k in self.arch_params.mask(name)[row].nonzero().flatten()]
        baseline = self._selection_accuracy()
        without: dict[str, float] = {}
        if len(candidates) > 1:
            for k in candidates:
                with self.arch_params.without(name, row, k):
                    without[self.network.ops[k]] = self._selection_accuracy()
        # The op whose removal hurts most; the first candidate on ties (and if alone).
        chosen = min(candidates, key=lambda k: without.get(self.network.ops[k], baseline))
        self.arch_params.fix(name, row, chosen)
        self.decisions.append(
            {
                "epoch": self.current_epoch,
                "cell": name,
                "edge": row,
                "op": self.network.ops[chosen],
                "val_acc": baseline,
                "val_acc_without": without,
            }
        )

    def _selection_accuracy(self) -> float:
        """The supernet's validation accuracy under the current derivation weights, with
        batch statistics (the running ones belong to the unperturbed supernet)."""
        weights = self.arch_params.derivation_weights(self.relaxation)
        with self._evaluating(batch_statistics=True):
            return self._evaluate(weights, self._eval_loader())[1]

    def derived(self) -> tuple[dict[str, Tensor], Architecture]:
        """The current derivation weights and the architecture derived from them."""
        weights = self.arch_params.derivation_weights(self.relaxation)
        return weights, derive(self.network, weights)

    def on_validation_epoch_start(self) -> None:
        self._val_weights, self._derived = self.derived()
        self._one_hot = one_hot_weights(self.network, self._derived, self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = supernet_logits(self.network, x, self._val_weights)
        self.val_loss.update(F.cross_entropy(logits.float(), y), weight=len(y))
        self.val_acc.update((logits.argmax(1) == y).float().mean(), weight=len(y))
        one_hot = supernet_logits(self.network, x, self._one_hot)
        self.score_acc.update((one_hot.argmax(1) == y).float().mean(), weight=len(y))

    def on_train_epoch_end(self) -> None:
        # Lightning has validated inside the epoch, after its last step: the derived
        # architecture and the validation metrics are this epoch's.
        if self._derived is None:  # validation did not run (cannot happen as configured)
            self.on_validation_epoch_start()
        assert self._derived is not None
        record: dict[str, Any] = {
            "val_loss": _pop(self.val_loss),
            "val_acc": _pop(self.val_acc),
            "score": _pop(self.score_acc),
            "entropy": _entropy(self._val_weights),
            "parameter_free": parameter_free_count(self._derived),
            "arch": self._derived.to_json(),
            "arch_description": self._derived.describe(),
            "alphas": _cell_weights_json(self._val_weights),
            "searching": self.searching(self.current_epoch),
            "decided_edges": len(self.decisions),
            "candidate_ops": sum(
                int(self.arch_params.mask(name).sum()) for name in self.arch_params
            ),
        }
        if isinstance(self.relaxation, Gumbel):
            record["tau"] = self.relaxation.tau
        self._derived = None
        self._finish_epoch(record)


def _entropy(weights: Mapping[str, Tensor]) -> float:
    """The mean over every edge of every cell type of its op weights' entropy."""
    with torch.no_grad():
        return float(entropy(torch.cat([w.float() for w in weights.values()])))


def _pop(metric: MeanMetric) -> float:
    """The metric's value over the epoch (NaN if it saw nothing), then reset."""
    value = float(metric.compute()) if metric.update_count else math.nan
    metric.reset()
    return value


# -- ENAS' controller ------------------------------------------------------------------------


@dataclass(frozen=True)
class ControllerSample:
    """One architecture drawn from the controller, its log-probability and the summed
    entropy of the controller's distributions along the way (nats)."""

    arch: Architecture
    log_prob: float
    entropy: float


class ControllerSampler:
    """Draws architectures from a `Reinforce` strategy's LSTM controller, repeats allowed.

    `Reinforce.ask` never proposes an architecture twice (a repeat would cost an
    evaluation for nothing), which is right for a search loop but not for ENAS, whose
    shared weights are trained on the controller's own distribution, repeats and all,
    thousands of times. This reads that distribution through the controller's public
    interface (``Controller.step``, token ``n_tokens`` the start token, one token per
    (decision, label) of the space's catalogue in its order, as `Reinforce` numbers them)
    and samples it as `Reinforce` does, from a generator of its own. The strategy still
    does the learning, through `Reinforce.tell` (which replays an architecture it did not
    propose from its labels).

    Args:
        strategy: The strategy whose controller to sample.
        generator: Draws the samples.
    """

    def __init__(self, strategy: Reinforce, generator: torch.Generator) -> None:
        self.space = strategy.space
        self.controller = strategy.controller
        self.generator = generator
        self.tokens: dict[str, dict[str, int]] = {}
        self.labels: list[str] = []  # the label of each token
        count = 0
        for decision in self.space.catalogue():
            self.tokens[decision.name] = {
                label: count + i for i, label in enumerate(decision.choices)
            }
            self.labels += decision.choices
            count += len(decision.choices)
        if count != self.controller.n_tokens:
            raise NasflowError(
                f"the controller has {self.controller.n_tokens} tokens, the catalogue of "
                f"search_space '{self.space.name}' {count}: not this space's controller"
            )
        self.start = count
        self._blocked: dict[Decision, Tensor] = {}
        self._done = torch.ones(count, dtype=torch.bool)
        self._done[0] = False  # finished sequences step on token 0; ignored

    def blocked(self, decision: Decision) -> Tensor:
        """A mask over every token, True where `decision` does not offer it."""
        mask = self._blocked.get(decision)
        if mask is None:
            names = self.tokens.get(decision.name, {})
            if any(label not in names for label in decision.choices):
                raise NasflowError(
                    f"search_space '{self.space.name}' asked {decision.name} with "
                    f"{decision.choices}, which its catalogue does not list"
                )
            mask = torch.ones(self.start, dtype=torch.bool)
            mask[[names[label] for label in decision.choices]] = False
            self._blocked[decision] = mask
        return mask

    def sample(self, count: int, greedy: bool = False) -> list[ControllerSample]:
        """`count` architectures, side by side (one batched LSTM step per decision).

        With `greedy`, each decision takes the controller's most likely label instead (all
        `count` are then the same architecture).
        """
        grammars = [self.space.grammar() for _ in range(count)]
        decisions: list[Decision | None] = [next(grammar) for grammar in grammars]
        archs: list[Any] = [None] * count
        log_probs = [0.0] * count
        entropies = [0.0] * count
        token = torch.full((count,), self.start)
        state: tuple[Tensor, Tensor] | None = None
        with _single_thread(), torch.no_grad():
            while any(decision is not None for decision in decisions):
                logits, state = self.controller.step(token, state)
                blocked = torch.stack([self.blocked(d) if d else self._done for d in decisions])
                masked = logits.float().masked_fill(blocked, -math.inf)
                log_p = torch.log_softmax(masked, dim=1)
                safe = log_p.masked_fill(blocked, 0.0)  # 0 * -inf would be NaN
                step_entropy = -(safe.exp() * safe).sum(1)
                if greedy:
                    drawn = masked.argmax(1)
                else:  # Gumbel-max: argmax(logits + Gumbel noise) is a softmax draw
                    noise = torch.empty_like(masked).exponential_(generator=self.generator).log_()
                    drawn = (masked - noise).argmax(1)
                chosen = drawn.tolist()
                for b, decision in enumerate(decisions):
                    if decision is None:
                        continue
                    log_probs[b] += float(log_p[b, chosen[b]])
                    entropies[b] += float(step_entropy[b])
                    try:
                        decisions[b] = grammars[b].send(self.labels[chosen[b]])
                    except StopIteration as done:
                        decisions[b], archs[b] = None, done.value
                token = drawn
        return [
            ControllerSample(arch, lp, h)
            for arch, lp, h in zip(archs, log_probs, entropies, strict=True)
        ]


@contextmanager
def _single_thread() -> Iterator[None]:
    """One intra-op thread for the controller's tiny tensors (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _op_frequencies(
    network: nn.Module, archs: Sequence[Architecture]
) -> dict[str, list[list[float]]]:
    """The mean one-hot op weights of `archs`: how often each edge took each op."""
    total: dict[str, Tensor] = {}
    for arch in archs:
        for cell, weights in one_hot_weights(network, arch).items():
            total[cell] = total[cell] + weights if cell in total else weights.clone()
    return {cell: (w / max(len(archs), 1)).tolist() for cell, w in total.items()}


class _EnasModule(_SupernetModule):
    """ENAS: shared weights trained on sampled architectures, the controller on rewards.

    Training steps use a fresh controller sample per batch. After the training batches
    of an epoch (`on_train_epoch_end`, by hand, with Lightning's validation loop off):
    `controller_steps` samples, each told its accuracy on the next validation batch; then
    the controller's most likely architecture on the whole validation split; and in the
    last epoch the best of `final_samples` samples on the whole validation split.
    """

    def __init__(
        self,
        strategy: Reinforce,
        sampler: ControllerSampler,
        controller_steps: int,
        final_samples: int,
        val_order: torch.Generator,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.controller_strategy = strategy  # not a module: the controller stays on the CPU
        self.sampler = sampler
        self.controller_steps = controller_steps
        self.final_samples = final_samples
        self.val_order = val_order
        self._queue: list[Architecture] = []
        self._val_batches: Iterator[Any] | None = None
        self.final: list[dict[str, Any]] = []
        self.best: tuple[Architecture, float] | None = None

    def train_dataloader(self) -> DataLoader:
        return self._train_loader()

    def complete(self) -> bool:
        return super().complete() and self.best is not None

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._queue = []

    def _next_arch(self) -> Architecture:
        if not self._queue:  # the controller does not change while the weights train
            self._queue = [sample.arch for sample in self.sampler.sample(SAMPLE_CHUNK)][::-1]
        return self._queue.pop()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        weights = one_hot_weights(self.network, self._next_arch(), self.device)
        self._weight_step(weights, batch)

    def _val_batch(self) -> Any:
        """The next validation batch, in a seeded order that starts over when used up."""
        while True:
            if self._val_batches is None:
                self._val_batches = iter(
                    DataLoader(
                        self.val_set,
                        batch_size=self.settings.batch_size,
                        shuffle=True,
                        generator=self.val_order,
                    )
                )
            try:
                return next(self._val_batches)
            except StopIteration:
                self._val_batches = None

    def on_train_epoch_end(self) -> None:
        samples = self.sampler.sample(self.controller_steps)
        with self._evaluating():
            rewards = [
                self._evaluate(
                    one_hot_weights(self.network, s.arch, self.device), [self._val_batch()]
                )[1]
                for s in samples
            ]
        for sample, reward in zip(samples, rewards, strict=True):
            self.controller_strategy.tell(sample.arch, Evaluation(status="ok", score=reward))

        greedy = self.sampler.sample(1, greedy=True)[0].arch
        greedy_weights = one_hot_weights(self.network, greedy, self.device)
        with self._evaluating():
            val_loss, val_acc = self._evaluate(greedy_weights, self._eval_loader())
        record: dict[str, Any] = {
            "val_loss": val_loss,
            "val_acc": val_acc,
            "score": val_acc,
            "entropy": float(np.mean([s.entropy for s in samples])),
            "parameter_free": parameter_free_count(greedy),
            "arch": greedy.to_json(),
            "arch_description": greedy.describe(),
            "alphas": _op_frequencies(self.network, [s.arch for s in samples]),
            "reward": float(np.mean(rewards)),
        }
        record.update({f"controller.{k}": v for k, v in self.controller_strategy.metrics().items()})
        if self.current_epoch == self.settings.epochs - 1:
            self._choose_final()
        self._finish_epoch(record)

    def _choose_final(self) -> None:
        """ENAS' derivation: the best of `final_samples` controller samples on the whole
        validation split (each architecture evaluated once; ties go to the first drawn)."""
        candidates: dict[str, Architecture] = {}
        for sample in self.sampler.sample(self.final_samples):
            candidates.setdefault(sample.arch.id, sample.arch)
        self.final = []
        with self._evaluating():
            for arch in candidates.values():
                weights = one_hot_weights(self.network, arch, self.device)
                loss, acc = self._evaluate(weights, self._eval_loader())
                self.final.append({"arch": arch.to_json(), "val_loss": loss, "val_acc": acc})
                if self.best is None or acc > self.best[1]:
                    self.best = (arch, acc)


# -- the strategies ------------------------------------------------------------------------


def _trainer(factory: TrainerFactory, epochs: int, validate: bool) -> pl.Trainer:
    """A trainer for one search: no logger, checkpoints or sanity check, every batch,
    and (manual optimisation) no automatic gradient clipping."""
    return factory(
        max_epochs=epochs,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_train_batches=1.0,
        limit_val_batches=1.0 if validate else 0,
        check_val_every_n_epoch=1,
        gradient_clip_val=None,
        accumulate_grad_batches=1,
    )


class _SupernetSearch(OneShotStrategy):
    """The shared part of both searches: settings, data, the supernet and the logging."""

    # Whether the NB201 supernet's edge batch norms are affine: not where ops are mixed
    # by weights (a learnt scale would undo them, as DARTS argues), yes where one sampled
    # op runs at a time (ENAS' shared ops keep their own scale and shift).
    affine: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, seed: int, weights: dict[str, Any]) -> None:
        super().__init__(space, seed)
        self.weights = WeightSettings.check(**weights)
        if isinstance(space, DartsSpace) and self.weights.cells is not None:
            _int("cells", self.weights.cells, minimum=3)

    def _network(self, data: InMemoryData) -> NB201Supernet | DartsSupernet:
        s = self.weights
        network = _init_network(
            self.seed,
            lambda: build_supernet(
                self.space,
                data.info.input_shape,
                data.info.num_classes,
                s.channels,
                s.cells,
                affine=self.affine,
            ),
        )
        assert isinstance(network, NB201Supernet | DartsSupernet)
        return network

    def _module_inputs(
        self,
        data: InMemoryData,
        network: NB201Supernet | DartsSupernet,
        splits: tuple[TensorDataset, TensorDataset],
        train_order: torch.Generator,
        tracker: Tracker,
        on_epoch: EpochCallback,
    ) -> dict[str, Any]:
        """The arguments every supernet module takes (see `_SupernetModule`)."""
        ops = network.ops

        def report(record: dict[str, Any]) -> None:
            tracker.log_metrics(_numeric(record, ops), step=int(record["epoch"]))
            on_epoch(record)

        return {
            "network": network,
            "num_classes": data.info.num_classes,
            "settings": self.weights,
            "train": splits[0],
            "val": splits[1],
            "train_order": train_order,
            "on_record": report,
        }

    def _fit(
        self, module: _SupernetModule, trainer_factory: TrainerFactory, validate: bool
    ) -> None:
        """Train `module` for all its epochs; an error if the search did not complete."""
        _trainer(trainer_factory, module.total_epochs, validate).fit(module)
        if not module.complete():
            raise NasflowError(
                f"the {self.name} search stopped after {len(module.history)} of "
                f"{module.total_epochs} epochs"
            )


class DartsSearch(_SupernetSearch):
    """DARTS, GDAS or DrNAS on an NB201 or DARTS supernet (see the module docstring).

    Args:
        space: An `NB201Space` or a `DartsSpace`.
        seed: Seeds alpha's initial values, the data order, the relaxation's samples and
            the supernet's initial weights.
        relaxation: ``softmax`` (DARTS), ``gumbel`` (GDAS; tau from 10 to 0.1, linearly
            over the epochs) or ``dirichlet`` (DrNAS).
        order: The architect's order: 1 (first order) or 2 (unrolled).
        arch_lr, arch_weight_decay: Adam's learning rate and weight decay for alpha (the
            weight decay is DrNAS' l2 regulariser).
        warmup_epochs: The first epochs train the weights only, alpha stays at its
            initial (uniform) value: untrained convolutions otherwise lose to
            parameter-free ops from the first steps (DrNAS and PC-DARTS warm up too).
        kl_weight: DrNAS' KL regulariser towards Dirichlet(1) (``dirichlet`` only; 0:
            none).
        prune_epoch, keep_ops: DrNAS' progressive shrinking: at the start of epoch
            `prune_epoch` (counted from 0), every edge keeps its `keep_ops` strongest ops
            and the others are removed (their weight is 0 from then on, so they are no
            longer computed); a fresh `warmup_epochs` follow. None: no pruning.
        selection: ``magnitude`` (the op of largest weight per edge, as DARTS) or
            ``perturbation`` (DARTS-PT, Wang et al. 2021; NB201 only): after the
            `epochs`, the edges are decided one at a time in a seeded random order, each
            fixed to the op whose removal lowers the supernet's validation accuracy most,
            and the weights tuned for `tune_epochs` after each decision (alpha frozen).
            With ``warmup_epochs == epochs`` alpha never moves: DARTS-PT's fixed-alpha
            variant, which the paper finds the most robust.
        tune_epochs: Epochs of weight tuning after each perturbation decision (>= 1).
        **weights: The supernet's weights and data (`WeightSettings`: epochs, batch_size,
            w_lr, ...).
    """

    name = "darts"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        relaxation: str = "softmax",
        order: int = 1,
        arch_lr: float = 3e-4,
        arch_weight_decay: float = 1e-3,
        warmup_epochs: int = 0,
        kl_weight: float = 0.0,
        prune_epoch: int | None = None,
        keep_ops: int = 3,
        selection: str = "magnitude",
        tune_epochs: int = 1,
        **weights: Any,
    ) -> None:
        super().__init__(space, seed, weights)
        if selection not in SELECTIONS:
            raise NasflowError(
                f"strategy.selection must be one of {', '.join(SELECTIONS)}, got {selection!r}"
            )
        if selection == "perturbation" and not isinstance(space, NB201Space):
            raise NasflowError(
                "strategy.selection=perturbation is implemented for search_space nb201 only "
                f"(not yet its topology step for darts), got '{space.name}'"
            )
        self.selection = selection
        self.tune_epochs = _int("tune_epochs", tune_epochs)
        if relaxation not in RELAXATIONS:
            raise NasflowError(
                f"strategy.relaxation must be one of {', '.join(RELAXATIONS)}, got {relaxation!r}"
            )
        if isinstance(order, bool) or order not in (1, 2):
            raise NasflowError(f"strategy.order must be 1 or 2, got {order!r}")
        self.relaxation = relaxation
        self.order = order
        self.arch_lr = _number("arch_lr", arch_lr, open_low=True)
        self.arch_weight_decay = _number("arch_weight_decay", arch_weight_decay)
        self.warmup_epochs = _int("warmup_epochs", warmup_epochs, minimum=0)
        self.kl_weight = _number("kl_weight", kl_weight)
        if self.kl_weight and relaxation != "dirichlet":
            raise NasflowError(
                f"strategy.kl_weight is DrNAS' (relaxation dirichlet); got {kl_weight!r} "
                f"with relaxation {relaxation!r}: set it to 0"
            )
        self.prune_epoch = _optional_int("prune_epoch", prune_epoch)
        self.keep_ops = _int("keep_ops", keep_ops)
        if self.prune_epoch is not None and self.prune_epoch >= self.weights.epochs:
            raise NasflowError(
                f"strategy.prune_epoch must be below epochs ({self.weights.epochs}) or null, "
                f"got {prune_epoch!r}"
            )

    def search(
        self,
        data: InMemoryData,
        trainer_factory: TrainerFactory,
        tracker: Tracker,
        on_epoch: EpochCallback = lambda record: None,
    ) -> OneShotResult:
        quiet_lightning()
        start = time.perf_counter()
        alpha_init, train_order, val_order, sampler, subset = _generators(self.seed, 5)
        splits = _splits(data, self.weights, subset)
        network = self._network(data)
        arch_params = ArchParameters.for_network(network, alpha_init)
        options = {"kl_weight": self.kl_weight} if self.relaxation == "dirichlet" else {}
        relaxation = make_relaxation(self.relaxation, **options)
        if isinstance(relaxation, Gumbel):
            relaxation.tau = TAU_MAX
        module = _DartsModule(
            arch_params=arch_params,
            relaxation=relaxation,
            order=self.order,
            arch_lr=self.arch_lr,
            arch_weight_decay=self.arch_weight_decay,
            warmup_epochs=self.warmup_epochs,
            prune_epoch=self.prune_epoch,
            keep_ops=self.keep_ops,
            selection=self.selection,
            tune_epochs=self.tune_epochs,
            sampler=sampler,
            val_order=val_order,
            **self._module_inputs(data, network, splits, train_order, tracker, on_epoch),
        )
        self._fit(module, trainer_factory, validate=True)
        last = module.history[-1]
        result = OneShotResult(
            arch=self.space.from_json(last["arch"]),
            score=float(last["score"]),
            epochs=module.history,
            seconds=time.perf_counter() - start,
            details={
                "strategy": self.name,
                "relaxation": self.relaxation,
                "order": self.order,
                "warmup_epochs": self.warmup_epochs,
                "prune_epoch": self.prune_epoch,
                "keep_ops": self.keep_ops,
                "selection": self.selection,
                "decisions": module.decisions,
                "ops": list(network.ops),
                "alpha_logits": _cell_weights_json(dict(arch_params.items())),
            },
        )
        _log_artifacts(tracker, result, network.ops)
        return result


class EnasSearch(_SupernetSearch):
    """ENAS (Pham et al. 2018) on an NB201 or DARTS supernet, with `Reinforce`'s controller.

    Args:
        space, seed: As for `DartsSearch`.
        controller_steps: Architectures sampled and rewarded after each epoch's weight
            training, each with its accuracy on one validation batch.
        controller_batch: Rewards per controller update (`Reinforce`'s batch_size).
        controller_lr: The controller's Adam learning rate.
        entropy_weight: `Reinforce`'s entropy bonus.
        baseline_decay: `Reinforce`'s moving-average baseline decay.
        controller_hidden: The controller's LSTM width.
        final_samples: Architectures sampled at the end; the best on the validation split
            is the result.
        **weights: The supernet's weights and data (`WeightSettings`).
    """

    name = "enas"
    affine = True

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        controller_steps: int = 20,
        controller_batch: int = 10,
        controller_lr: float = 0.05,
        entropy_weight: float = 0.1,
        baseline_decay: float = 0.5,
        controller_hidden: int = 32,
        final_samples: int = 10,
        **weights: Any,
    ) -> None:
        super().__init__(space, seed, weights)
        self.controller_steps = _int("controller_steps", controller_steps)
        self.controller_batch = _int("controller_batch", controller_batch)
        self.controller_lr = _number("controller_lr", controller_lr, open_low=True)
        self.entropy_weight = _number("entropy_weight", entropy_weight)
        self.baseline_decay = _number("baseline_decay", baseline_decay)
        if self.baseline_decay >= 1:
            raise NasflowError(f"strategy.baseline_decay must be below 1, got {baseline_decay!r}")
        self.controller_hidden = _int("controller_hidden", controller_hidden)
        self.final_samples = _int("final_samples", final_samples)

    def search(
        self,
        data: InMemoryData,
        trainer_factory: TrainerFactory,
        tracker: Tracker,
        on_epoch: EpochCallback = lambda record: None,
    ) -> OneShotResult:
        quiet_lightning()
        start = time.perf_counter()
        train_order, val_order, sampling, subset, controller_seed = _generators(self.seed, 5)
        splits = _splits(data, self.weights, subset)
        network = self._network(data)
        strategy = Reinforce(
            self.space,
            budget=max(1, self.weights.epochs * self.controller_steps),
            seed=int(torch.randint(2**62, (1,), generator=controller_seed)),
            batch_size=self.controller_batch,
            learning_rate=self.controller_lr,
            entropy_weight=self.entropy_weight,
            baseline_decay=self.baseline_decay,
            hidden_size=self.controller_hidden,
        )
        module = _EnasModule(
            strategy=strategy,
            sampler=ControllerSampler(strategy, sampling),
            controller_steps=self.controller_steps,
            final_samples=self.final_samples,
            val_order=val_order,
            **self._module_inputs(data, network, splits, train_order, tracker, on_epoch),
        )
        self._fit(module, trainer_factory, validate=False)
        assert module.best is not None  # `complete` checks it
        arch, score = module.best
        result = OneShotResult(
            arch=self.space.from_json(arch.to_json()),
            score=score,
            epochs=module.history,
            seconds=time.perf_counter() - start,
            details={
                "strategy": self.name,
                "ops": list(network.ops),
                "final_candidates": module.final,
            },
        )
        _log_artifacts(tracker, result, network.ops)
        return result


ONE_SHOT_STRATEGIES: dict[str, type[OneShotStrategy]] = {
    cls.name: cls for cls in (DartsSearch, EnasSearch)
}
