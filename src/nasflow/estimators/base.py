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
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from nasflow.search_spaces.base import Architecture

if TYPE_CHECKING:
    from nasflow.executors import Executor, Task

# ok: estimated at the estimator's full fidelity. failed: training raised, diverged or ran
# out of memory. stopped: training was ended early on purpose (a learning-curve rule, or
# eliminated at a low rung of successive halving); the score is the last one reached.
# filtered: never trained, a pre-filter ranked it out; the strategy is not told of it.
Status = Literal["ok", "failed", "stopped", "filtered"]


@dataclass
class Evaluation:
    """What one estimate of one architecture found.

    Attributes:
        status: See `Status`.
        score: The search signal, higher is better (validation accuracy, or a proxy's
            score); None if failed or filtered.
        metrics: Final metrics by name, e.g. val_acc, val_loss, train_loss.
        history: Per-epoch metrics, one dict per epoch with an "epoch" key.
        params: Trainable parameters of the built network.
        flops: Floating-point operations of one forward pass of one image.
        seconds: Wall time of the estimate.
        error: Why it failed (or was stopped), one line.
        fidelity: The fidelity the score is at (training epochs); None when it has none
            (a zero-cost proxy).
        cost: Training epochs spent on this candidate, every rung included (simulated ones
            for a table lookup): what multi-fidelity methods are compared by.
        rungs: With successive halving, one entry per rung reached: its fidelity, score,
            status and seconds.
    """

    status: Status
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    params: int | None = None
    flops: int | None = None
    seconds: float = 0.0
    error: str | None = None
    fidelity: float | None = None
    cost: float = 0.0
    rungs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)


class StopRule(Protocol):
    """Decides, after each epoch, whether a candidate's training should end early."""

    def __call__(self, history: Sequence[dict[str, float]]) -> str | None:
        """Why to stop given the epochs so far (one dict each, with "epoch"), or None."""


class Estimator(ABC):
    """Estimates how well an architecture performs; the strategies never see how."""

    #: Whether `evaluate` honours a `StopRule` (it trains epoch by epoch).
    stoppable: bool = False

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

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        """Estimate a round of proposals, yielding each with its evaluation as it ends.

        Every task comes back exactly once. Runs in the search process; the default hands
        the tasks to `executor`, which calls `evaluate`. Composite estimators override it.
        """
        return executor.run(self, tasks)

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

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what `state_dict` returned."""
