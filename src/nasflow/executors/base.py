"""Where candidates are evaluated. The search loop only talks to this interface, so a
pool of GPUs or a Ray cluster is a new executor, not a new loop.

An executor runs a function of a `Task` (an estimator's `evaluate_task`) and never sees
the estimator itself: it needs nothing but the records of `nasflow.records`. It is
asynchronous: the loop `submit`s up to `slots` tasks, and `wait` hands back whichever
finish first, so a new candidate starts as soon as any slot is free. Epochs a task
reports while it trains (`nasflow.progress`) reach `on_epoch` in the search process.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nasflow.progress import reporting
from nasflow.records import EvaluateFn, Evaluation, Task
from nasflow.registry import EXECUTORS, Component

#: Called in the search process with a running task and one of its finished epochs.
EpochFn = Callable[[Task, dict[str, Any]], None]


class Executor(Component, ABC):
    """Runs evaluation tasks and hands back their results as they finish."""

    registry = EXECUTORS

    #: How many tasks run at once (1 = strictly sequential).
    slots: int = 1

    def __init__(self) -> None:
        self.on_epoch: EpochFn = lambda task, record: None
        self._started = time.perf_counter()

    @abstractmethod
    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        """Start evaluating `task` with `evaluate` (the loop keeps at most `slots` out)."""

    @abstractmethod
    def wait(self) -> list[tuple[Task, Evaluation]]:
        """Block until at least one submitted task has finished; every finished one, each
        with its evaluation, in the order they finished. A task that could not be run
        (its worker died more often than retries allow) comes back failed, with why."""

    @abstractmethod
    def in_flight(self) -> int:
        """Tasks submitted and not yet handed back by `wait`."""

    def clock(self) -> float:
        """Seconds since this executor was made: wall time, or a simulation's time."""
        return time.perf_counter() - self._started

    def close(self) -> None:
        """Give back what the executor holds (workers, a cluster connection); tasks still
        in flight are abandoned."""

    def run(self, evaluate: EvaluateFn, tasks: Iterable[Task]) -> Iterator[tuple[Task, Evaluation]]:
        """Evaluate `tasks` with `evaluate`, `slots` at a time, yielding each with its
        evaluation in the order they finish (a round of a synchronous estimator).

        `tasks` is read lazily, one task whenever a slot frees, so a task made from what
        the caller learnt of the ones before (a learning-curve rule) sees all of them.
        """
        source = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and self.in_flight() < self.slots:
                task = next(source, None)
                if task is None:
                    exhausted = True
                elif (known := self.known(evaluate, task)) is not None:
                    yield task, known
                else:
                    self.submit(evaluate, task)
            if not self.in_flight():
                return
            yield from self.wait()

    def known(self, evaluate: EvaluateFn, task: Task) -> Evaluation | None:
        """An evaluation of `task` that need not run again (a resumed round's), or None."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForwardingExecutor(Executor):
    """An executor in front of another: everything goes to `inner`, and a subclass
    overrides only what it adds (what a search keeps of each task, what it records)."""

    def __init__(self, inner: Executor) -> None:
        super().__init__()
        self.inner = inner
        self.slots = inner.slots

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        self.inner.submit(evaluate, task)

    def wait(self) -> list[tuple[Task, Evaluation]]:
        return self.inner.wait()

    def in_flight(self) -> int:
        return self.inner.in_flight()

    def clock(self) -> float:
        return self.inner.clock()

    def known(self, evaluate: EvaluateFn, task: Task) -> Evaluation | None:
        return self.inner.known(evaluate, task)

    def close(self) -> None:
        self.inner.close()


class LocalExecutor(Executor):
    """Evaluates tasks one after another in this process."""

    name = "local"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[EvaluateFn, Task]] = deque()

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        self._queue.append((evaluate, task))

    def wait(self) -> list[tuple[Task, Evaluation]]:
        evaluate, task = self._queue.popleft()
        with reporting(lambda record: self.on_epoch(task, record)):
            return [(task, evaluate(task))]

    def in_flight(self) -> int:
        return len(self._queue)
