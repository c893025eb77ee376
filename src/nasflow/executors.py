"""Where candidates are evaluated. The search loop only talks to this interface, so a
pool of GPUs or a Ray cluster is a new executor, not a new loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from nasflow.estimators.base import Estimator, Evaluation
from nasflow.search_spaces.base import Architecture


@dataclass(frozen=True)
class Task:
    """One evaluation to run: which proposal of the search (its index), the architecture,
    its seed and the fidelity (training epochs; None: the estimator's full fidelity)."""

    iteration: int
    arch: Architecture
    seed: int
    fidelity: float | None = None

    def at(self, fidelity: float | None) -> Task:
        """The same candidate at another fidelity (a rung of successive halving)."""
        return Task(self.iteration, self.arch, self.seed, fidelity)


class Executor(ABC):
    """Runs evaluation tasks and hands back their results as they finish."""

    #: How many tasks the loop should hand over at once (1 = strictly sequential).
    slots: int = 1

    @abstractmethod
    def run(self, estimator: Estimator, tasks: Sequence[Task]) -> Iterator[tuple[Task, Evaluation]]:
        """Evaluate `tasks`, yielding each with its evaluation in the order they finish."""


class LocalExecutor(Executor):
    """Evaluates tasks one after another in this process."""

    def run(self, estimator: Estimator, tasks: Sequence[Task]) -> Iterator[tuple[Task, Evaluation]]:
        for task in tasks:
            yield task, estimator.evaluate(task.arch, task.seed, task.fidelity)
