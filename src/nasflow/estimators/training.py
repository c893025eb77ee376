"""Full training: train each candidate for a fixed number of epochs, score it on val."""

from __future__ import annotations

import logging
import time

import torch

from nasflow.estimators.base import Estimator
from nasflow.inheritance import cpu_state, starting_network
from nasflow.measure import count_flops, count_params
from nasflow.ranges import PositiveInt
from nasflow.records import Evaluation, StopRule, Task
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.training import InMemoryData, InMemoryDataModule, TrainerFactory, fit
from nasflow.training.module import OptimizerFactory, SchedulerFactory

log = logging.getLogger(__name__)


class TrainingEstimator(Estimator):
    """Scores a candidate by its validation accuracy after `epochs` epochs of training.

    Args:
        space: Builds the candidate's network.
        data: In-memory train and val splits.
        trainer: Builds a Lightning Trainer (``accelerator="auto"`` uses a GPU if present).
        optimizer: Builds the optimizer from the network's parameters.
        scheduler: Builds the learning-rate schedule, or None.
        epochs: Training epochs per candidate: the full fidelity. A task may ask for
            fewer (or more): its fidelity is then the epochs, and the learning-rate
            schedule spans them.
        batch_size: Examples per batch.
    """

    name = "training"

    stoppable = True

    def __init__(
        self,
        space: SearchSpace,
        data: InMemoryData,
        trainer: TrainerFactory,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        epochs: PositiveInt = 10,
        batch_size: PositiveInt = 64,
    ) -> None:
        self.space = space
        self.data = data
        self.trainer = trainer
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.epochs = epochs
        self.batch_size = batch_size

    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        return self.evaluate_task(Task(-1, arch, seed, fidelity, stop))

    def evaluate_task(self, task: Task) -> Evaluation:
        """Train the task's candidate: from its parent's weights when the task carries
        them (`Task.lineage`, `Task.weights`), and bringing its own trained weights back
        when it asks for them (`Task.keep_weights`)."""
        arch, seed, stop = task.arch, task.seed, task.stop
        epochs = self.epochs if task.fidelity is None else _epochs(task.fidelity)
        info = self.data.info
        start = time.perf_counter()
        # The candidate's initial weights come from its own seed; fork_rng keeps that
        # draw from touching (or depending on) the caller's global torch generator.
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            params = flops = inherited = None
            try:
                if task.lineage is not None and task.weights is not None:
                    network, inherited = starting_network(
                        self.space,
                        arch,
                        task.lineage,
                        task.weights,
                        info.input_shape,
                        info.num_classes,
                    )
                else:
                    network = self.space.build(arch, info.input_shape, info.num_classes)
                params = count_params(network)
                flops = count_flops(network, info.input_shape)
                datamodule = InMemoryDataModule(
                    self.data.splits["train"],
                    self.data.splits["val"],
                    self.batch_size,
                    seed,
                    augment=self.data.augment,
                )
                module, _, history = fit(
                    network,
                    datamodule,
                    info.num_classes,
                    epochs,
                    self.trainer,
                    self.optimizer,
                    self.scheduler,
                    stop=stop,
                )
            # Anything a candidate raises (a shape it cannot handle, a diverged loss, out of
            # memory) ends that candidate only; the search records it and goes on, until
            # failures in a row say it is a bug (`search.max_consecutive_failures`).
            except Exception as error:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                return Evaluation.failure(
                    error,
                    params=params,
                    flops=flops,
                    seconds=time.perf_counter() - start,
                    inherited=inherited,
                )
        final = history[-1]
        return Evaluation(
            status="stopped" if module.stopped else "ok",
            score=final["val_acc"],
            metrics={k: v for k, v in final.items() if k != "epoch"},
            history=history,
            params=params,
            flops=flops,
            seconds=time.perf_counter() - start,
            error=module.stopped,
            fidelity=float(len(history)),
            cost=float(len(history)),
            inherited=inherited,
            weights=cpu_state(network) if task.keep_weights else None,
        )


def _epochs(fidelity: float) -> int:
    """A fidelity as whole training epochs (at least one)."""
    return max(1, round(fidelity))
