"""How a candidate's performance is estimated, and the record an estimate produces.

An `Estimator` answers for one architecture at a time (`evaluate`, which an executor may
run anywhere) and for a round of proposals (`run`, always in the search process). A plain
estimator's round is its evaluations through the executor; composite estimators
(`nasflow.estimators.fidelity`, `nasflow.estimators.filters`) wrap another estimator and
decide which proposals to evaluate at which fidelity. The search loop and the strategies
only ever see `run` and `Evaluation`s, so estimators compose without either knowing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nasflow.records import Evaluation, StopRule, Task
from nasflow.registry import ESTIMATORS, Component

if TYPE_CHECKING:
    from nasflow.executors import Executor
    from nasflow.search_spaces.base import Architecture


class Estimator(Component, ABC):
    """Estimates how well an architecture performs; the strategies never see how."""

    registry = ESTIMATORS

    #: Whether `evaluate` honours a `StopRule` (it trains epoch by epoch).
    stoppable: bool = False

    #: Whether the search may run this estimator candidate by candidate, starting a new
    #: one whenever a slot frees (`start`, `job`, `advance`). Estimators that need a whole
    #: round of proposals at once (successive halving, a pre-filter) set it False and are
    #: run round by round (`run`).
    asynchronous: bool = True

    @abstractmethod
    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        """Estimate `arch`, drawing any randomness from `seed`.

        Args:
            arch: The architecture.
            seed: The candidate's seed (initial weights, batch order).
            fidelity: Training epochs; None for the estimator's own (its full fidelity).
            stop: Checked after every epoch by estimators that are `stoppable`.

        Never raises for a bad candidate: failures come back as
        ``Evaluation(status="failed")``.
        """

    def evaluate_task(self, task: Task) -> Evaluation:
        """`evaluate` for one task: what an executor runs."""
        return self.evaluate(task.arch, task.seed, task.fidelity, task.stop)

    # The asynchronous protocol: a candidate is one or more jobs (tasks) in a row. The
    # loop calls `start` for a new proposal, `job` before each submission, and `advance`
    # with each finished job, which answers with the candidate's next job or its final
    # evaluation. All three run in the search process.

    def start(self, task: Task) -> Task:
        """The first job of a new proposal (e.g. at the lowest rung of ASHA)."""
        return task

    def job(self, task: Task) -> Task:
        """`task` as it is submitted now, with what it needs from the search so far (a
        learning-curve rule from the curves finished so far)."""
        return task

    def advance(self, task: Task, evaluation: Evaluation) -> Task | Evaluation:
        """After `task`, a job of a candidate, finished: the candidate's next job, or its
        final evaluation."""
        return evaluation

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        """Estimate a round of proposals, yielding each with its evaluation as it ends.

        Every task comes back exactly once. Runs in the search process. The default runs
        each proposal's jobs through `executor` (which calls `evaluate_task`), `slots` at
        a time, as the asynchronous loop does: `start`, then `job` as each is submitted
        (so it sees every job finished before), then `advance`, whose next job goes
        ahead of the proposals not yet started. A job the executor already knows the
        evaluation of (a resumed round's) is not run again. Estimators that need the
        whole round at once (successive halving, a pre-filter) override it.
        """
        waiting = deque(self.start(task) for task in tasks)
        while waiting or executor.in_flight():
            finished = []
            while waiting and executor.in_flight() < executor.slots:
                job = self.job(waiting.popleft())
                if (known := executor.known(self.evaluate_task, job)) is not None:
                    finished.append((job, known))
                else:
                    executor.submit(self.evaluate_task, job)
            for job, evaluation in finished or executor.wait():
                result = self.advance(job, evaluation)
                if isinstance(result, Task):
                    waiting.appendleft(result)
                else:
                    yield job, result

    def proposals(self, wanted: int) -> int:
        """How many proposals to ask the strategy for so that about `wanted` evaluations
        (not filtered) come back; a pre-filter asks for more than it evaluates."""
        return wanted

    def round_size(self, remaining: int, slots: int) -> int:
        """How many evaluations the next round should produce, with `remaining` left in
        the budget and `slots` tasks the executor runs at once."""
        return min(remaining, slots)

    def state_dict(self) -> dict[str, Any]:
        """What this estimator has learnt during the search (curves seen, a predictor's
        training set, the next bracket), saved with the search's checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
