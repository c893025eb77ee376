"""Where candidates are evaluated. The search loop only talks to this interface, so a
pool of GPUs or a Ray cluster is a new executor, not a new loop.

An executor runs a function of a `Task` (an estimator's `evaluate_task`) and never sees
the estimator itself: it needs nothing but the records of `nasflow.records`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from nasflow.records import EvaluateFn, Evaluation, Task
from nasflow.registry import EXECUTORS, Component


class Executor(Component, ABC):
    """Runs evaluation tasks and hands back their results as they finish."""

    registry = EXECUTORS

    #: How many tasks the loop should hand over at once (1 = strictly sequential).
    slots: int = 1

    @abstractmethod
    def run(self, evaluate: EvaluateFn, tasks: Sequence[Task]) -> Iterator[tuple[Task, Evaluation]]:
        """Evaluate `tasks` with `evaluate`, yielding each with its evaluation in the order
        they finish."""


class LocalExecutor(Executor):
    """Evaluates tasks one after another in this process."""

    name = "local"

    def run(self, evaluate: EvaluateFn, tasks: Sequence[Task]) -> Iterator[tuple[Task, Evaluation]]:
        for task in tasks:
            yield task, evaluate(task)
