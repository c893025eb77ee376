"""The contract of a one-shot search, and what DARTS and ENAS share in running one.

Unlike the ask/tell strategies of `nasflow.search_strategies`, a one-shot search trains
one supernet (`nasflow.oneshot.supernet`) whose weights every architecture of the space
shares, and reads the architecture off it at the end. The search stage calls
`OneShotStrategy.search` once, with the data, a Lightning trainer factory and the
tracker, and gets a `OneShotResult`.

`SupernetSearch` runs the part every method has in common: checking the weights'
settings, deriving the random streams from the seed, cutting the splits, building and
seeding the supernet, fitting the method's Lightning module under the configured trainer
(so a GPU and mixed precision come from the trainer config), logging each epoch's
numbers and, at the end, the heat map of the op weights (``alphas.png``) and the whole
result (``oneshot.json``).

Resuming: run by the search stage, a search saves a Lightning checkpoint after every
epoch beside the stage's checkpoint (`SearchContext.checkpoint`: the same path with
``.ckpt``), through a `ModelCheckpoint` callback; the module adds what Lightning does not
keep (`SupernetModule.resume_state`). The stage's own checkpoint file then only says that
a search is under way and which tracking run it logs to, so that `search.resume` and the
reopening of the run work as for an ask/tell search. A rerun of the same configuration
continues from the last finished epoch (``trainer.fit(ckpt_path=...)``) and derives what
an uninterrupted search derives; both files go once the search completes.

Randomness: every stream comes from `seed`, through explicit generators, and, for the
supernet's initial weights, torch's global generator seeded under
``torch.random.fork_rng`` (so the caller's global state is left as it was). On a CPU the
same seed gives the same search, bit for bit.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.model_helpers import is_overridden
from torch.utils.data import TensorDataset

from nasflow.errors import NasflowError
from nasflow.measure import count_flops, count_params
from nasflow.oneshot.build import SPACES, Supernet, build_supernet, init_network
from nasflow.oneshot.module import EpochCallback, SupernetModule
from nasflow.oneshot.settings import WeightSettings, int_setting
from nasflow.plots import render_alpha_heatmap
from nasflow.registry import STRATEGIES, Component
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_spaces.darts import DartsSpace
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.searching import SearchContext, SearchOutcome
from nasflow.tracking.base import Tracker
from nasflow.training.data import InMemoryData
from nasflow.training.trainer import TrainerFactory

# The search's random generators by name (`SupernetSearch.random_streams`).
Streams = Mapping[str, torch.Generator]
# What every per-epoch record holds (`OneShotResult.epochs`).
log = logging.getLogger("nasflow.search")

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
        seconds: Wall time of the whole search (of a resumed one: this process's, plus
            the epochs restored from its checkpoint).
        details: Method-specific extras for the JSON (the ops of the weight columns, the
            final architecture parameters, ENAS' final candidates).
    """

    arch: Architecture
    score: float
    epochs: list[dict[str, Any]]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The result as JSON: the architecture, its score, the epochs and the details."""
        return {
            "arch": self.arch.to_json(),
            "arch_description": self.arch.describe(),
            "score": self.score,
            "seconds": self.seconds,
            "epochs": self.epochs,
            **self.details,
        }


class OneShotStrategy(Component, ABC):
    """A weight-sharing search over `space`, run once by `search`.

    A subclass that sets ``name`` registers itself among the strategies (it is a config
    option of ``strategy``, as the ask/tell strategies are).

    Args:
        space: The search space; a supernet exists for `SPACES` only.
        seed: Seeds every random stream of the search.
        settings: The method's settings (see the subclasses).
    """

    registry = STRATEGIES

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

    def run(self, context: SearchContext) -> SearchOutcome:
        """The search stage's entry (`nasflow.searching`): one search, its derived
        architecture as the outcome, one history record per supernet epoch."""
        data = context.data
        log.info(
            "%s one-shot search over the %s space on %s", self.name, self.space.name, data.info.name
        )
        saved = context.checkpoint.path.with_suffix(".ckpt")
        if context.resumed is None:  # nothing to continue (or search.resume=false)
            saved.unlink(missing_ok=True)
        # The stage's checkpoint marks the search as under way, with its tracking run (the
        # stage's `meta`), so that a rerun resumes at all and reopens that run.
        context.checkpoint.save(cast(Any, _LightningState(saved)), [])
        result = self.search(data, context.trainer, context.tracker, context.on_epoch, saved)
        saved.unlink(missing_ok=True)  # complete: the stage removes its own file next
        final = result.epochs[-1]
        network = self.space.build(result.arch, data.info.input_shape, data.info.num_classes)
        summary = {
            "best_score": result.score,  # the derived network's val accuracy in the supernet
            "best_params": count_params(network),
            "best_flops": count_flops(network, data.info.input_shape),
            "supernet_val_acc": final["val_acc"],
            "parameter_free": final["parameter_free"],
            "epochs": len(result.epochs),
            "seconds": round(result.seconds, 2),
        }
        log.info("derived %s (val_acc %.4f)", result.arch.describe(), result.score)
        columns = ["iteration", "score", "best_score", "val_acc", "entropy", "parameter_free"]
        return SearchOutcome(
            arch=result.arch,
            score=result.score,
            summary=summary,
            history=result.epochs,
            progress_columns=columns,
            progress=[
                [
                    r["epoch"],
                    r["score"],
                    r["score"],
                    r["val_acc"],
                    r["entropy"],
                    r["parameter_free"],
                ]
                for r in result.epochs
            ],
        )

    @abstractmethod
    def search(
        self,
        data: InMemoryData,
        trainer_factory: TrainerFactory,
        tracker: Tracker,
        on_epoch: EpochCallback = lambda record: None,
        checkpoint: Path | None = None,
    ) -> OneShotResult:
        """Run the search on `data` ("train" and "val" splits).

        Args:
            data: The prepared splits; the supernet is built for ``data.info``.
            trainer_factory: Builds the Lightning Trainer (a Hydra `_partial_` of
                ``pl.Trainer`` with the accelerator and precision).
            tracker: Gets the metrics of every epoch and the final artifacts.
            on_epoch: Called with each epoch's record once it is logged.
            checkpoint: A Lightning checkpoint file, written after every epoch; if it
                exists, the search continues from it (the same search, configured alike,
                must have written it). None: nothing is saved.
        """


class SupernetSearch(OneShotStrategy):
    """The shared part of both searches: settings, data, the supernet, the run and the
    logging.

    A method names its random streams (`random_streams`), builds its Lightning module
    (`_module`) and reads what it found off the module once the trainer is done
    (`_outcome`).

    Args:
        space: An `NB201Space` or a `DartsSpace`.
        seed: Seeds every random stream of the search.
        weights: The supernet's weights and data (`WeightSettings`).
    """

    # Whether the NB201 supernet's edge batch norms are affine: not where ops are mixed
    # by weights (a learnt scale would undo them, as DARTS argues), yes where one sampled
    # op runs at a time (ENAS' shared ops keep their own scale and shift).
    affine: ClassVar[bool] = False
    # What checks the `**weights` of a method's constructor (and so gives their schema).
    extra_settings: ClassVar[type[WeightSettings]] = WeightSettings
    # The method's random generators, derived from the seed in this order; every method
    # has "train_order" (of the training batches) and "subset" (the split limits').
    random_streams: ClassVar[tuple[str, ...]]

    def __init__(self, space: SearchSpace, seed: int, weights: dict[str, Any]) -> None:
        super().__init__(space, seed)
        self.weights = WeightSettings.check(**weights)
        if isinstance(space, DartsSpace) and self.weights.cells is not None:
            int_setting("cells", self.weights.cells, minimum=3)

    def search(
        self,
        data: InMemoryData,
        trainer_factory: TrainerFactory,
        tracker: Tracker,
        on_epoch: EpochCallback = lambda record: None,
        checkpoint: Path | None = None,
    ) -> OneShotResult:
        start = time.perf_counter()
        generators = seeded_generators(self.seed, len(self.random_streams))
        streams = dict(zip(self.random_streams, generators, strict=True))
        splits = _splits(data, self.weights, streams["subset"])
        network = self._network(data)
        inputs = self._module_inputs(
            data, network, splits, streams["train_order"], tracker, on_epoch
        )
        module = self._module(network, streams, inputs)
        self._fit(module, trainer_factory, checkpoint)
        arch, score, details = self._outcome(module, network)
        result = OneShotResult(
            arch=arch,
            score=score,
            epochs=module.history,
            # A resumed search counts the epochs the interrupted process finished too.
            seconds=time.perf_counter() - start + module.resumed_seconds,
            details={"strategy": self.name, **details},
        )
        _log_artifacts(tracker, result, network.ops)
        return result

    @abstractmethod
    def _module(
        self, network: Supernet, streams: Streams, inputs: dict[str, Any]
    ) -> SupernetModule:
        """The method's Lightning module for `network`, given the search's random streams
        and the arguments every supernet module takes (`inputs`)."""

    @abstractmethod
    def _outcome(
        self, module: SupernetModule, network: Supernet
    ) -> tuple[Architecture, float, dict[str, Any]]:
        """The architecture found, its score and the method's details for the result
        (`OneShotResult.details`, after ``strategy``), once `module` has run."""

    def _network(self, data: InMemoryData) -> Supernet:
        s = self.weights
        network = init_network(
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
        assert isinstance(network, Supernet)
        return network

    def _module_inputs(
        self,
        data: InMemoryData,
        network: Supernet,
        splits: tuple[TensorDataset, TensorDataset],
        train_order: torch.Generator,
        tracker: Tracker,
        on_epoch: EpochCallback,
    ) -> dict[str, Any]:
        """The arguments every supernet module takes (see `SupernetModule`)."""
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
            "method": self.name,
        }

    def _fit(
        self, module: SupernetModule, trainer_factory: TrainerFactory, checkpoint: Path | None
    ) -> None:
        """Train `module` for all its epochs (from `checkpoint`, if it exists, saving it
        after every epoch); an error if the search did not complete.

        Lightning's validation loop runs after each training epoch if the module has a
        validation step (DARTS' evaluation of the derived architecture); ENAS evaluates
        by hand instead.
        """
        validate = is_overridden("validation_step", module, parent=pl.LightningModule)
        trainer = _trainer(trainer_factory, module.total_epochs, validate, checkpoint)
        resume = checkpoint is not None and checkpoint.is_file()
        with warnings.catch_warnings():
            # The checkpoint's folder is the stage's, which holds its own files: not the
            # mix-up of two runs' checkpoints that Lightning warns of.
            warnings.filterwarnings("ignore", "Checkpoint directory .* exists and is not empty")
            # The state is plain values and tensors: it loads with `weights_only`.
            trainer.fit(module, ckpt_path=str(checkpoint) if resume else None, weights_only=True)
        if not module.complete():
            raise NasflowError(
                f"the {self.name} search stopped after {len(module.history)} of "
                f"{module.total_epochs} epochs"
            )


def seeded_generators(seed: int, count: int) -> list[torch.Generator]:
    """`count` independent CPU generators derived from `seed`."""
    states = np.random.SeedSequence(seed).generate_state(count, dtype=np.uint64)
    return [torch.Generator().manual_seed(int(s) >> 1) for s in states]


class _LightningState:
    """What the stage's checkpoint holds for a one-shot search (`Checkpoint.save` reads
    a strategy's `state_dict`): where the search's own checkpoint is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def state_dict(self) -> dict[str, Any]:
        return {"lightning_checkpoint": self.path.name}


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but written beside the file and renamed over it, so a
    kill mid-write leaves the previous epoch's checkpoint whole (Lightning's own writes go
    through the temporary folder, which a move onto another file system copies)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        torch.save(checkpoint, partial)
        os.replace(partial, target)


def _epoch_checkpoint(path: Path) -> ModelCheckpoint:
    """Saves the search to `path` at the end of every training epoch, after the module's
    own epoch end (the epoch's record is in the state), over the previous save."""
    return ModelCheckpoint(
        dirpath=path.parent,
        filename=path.stem,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def _trainer(
    factory: TrainerFactory, epochs: int, validate: bool, checkpoint: Path | None
) -> pl.Trainer:
    """A trainer for one search: no logger or sanity check, every batch, (manual
    optimisation) no automatic gradient clipping, and a checkpoint after every epoch if
    `checkpoint` is given."""
    return factory(
        max_epochs=epochs,
        logger=False,
        callbacks=[] if checkpoint is None else [_epoch_checkpoint(checkpoint)],
        enable_checkpointing=checkpoint is not None,
        plugins=[] if checkpoint is None else [_AtomicCheckpointIO()],
        num_sanity_val_steps=0,
        limit_train_batches=1.0,
        limit_val_batches=1.0 if validate else 0,
        check_val_every_n_epoch=1,
        gradient_clip_val=None,
        accumulate_grad_batches=1,
    )


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


def _alpha_metrics(alphas: Mapping[str, list[list[float]]], ops: Sequence[str]) -> dict[str, float]:
    """One metric per cell type, edge and op: ``alpha.<cell>.e<edge>.<op>``."""
    return {
        f"alpha.{cell}.e{edge}.{op}": float(value)
        for cell, rows in alphas.items()
        for edge, row in enumerate(rows)
        for op, value in zip(ops, row, strict=True)
    }


def _log_artifacts(tracker: Tracker, result: OneShotResult, ops: Sequence[str]) -> None:
    """The heat map (``alphas.png``, drawn only for a tracker that keeps files) and the
    result (``oneshot.json``)."""
    if tracker.keeps_artifacts:
        with tempfile.TemporaryDirectory(prefix="nasflow-oneshot-") as folder:
            path = os.path.join(folder, "alphas.png")
            with open(path, "wb") as handle:
                handle.write(render_alpha_heatmap(result.epochs, ops))
            tracker.log_artifact(path)
    tracker.log_dict(result.to_json(), "oneshot.json")
