"""The records every part of a search hands around: a task to evaluate, what its
evaluation found, and the rule that may stop it early.

Strategies, executors, estimators, the loop and the tracker all speak these types, so
they live here, apart from all of them, and need nothing but the standard library. Any
module can import them first (a Ray worker does) without pulling in torch, Lightning or
an estimator.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from nasflow.search_spaces.base import Architecture, SearchSpace

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
        traceback: For a failed candidate, the full traceback of what it raised (kept out
            of logs and progress lines; the search writes it to its failure log).
        inherited: How many of the network's parameter values started from its parent's
            trained ones (`Lineage`) rather than from a fresh initialisation; None when
            it had no parent (or the estimator trains nothing).
        weights: The trained network's `state_dict` (on the CPU), when the task asked for
            it (`Task.keep_weights`); the search keeps it on disk and drops it here, so it
            is never part of the record (`to_json`).
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
    traceback: str | None = None
    inherited: int | None = None
    weights: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        record = asdict(replace(self, weights=None))
        del record["weights"]
        return record

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)

    @classmethod
    def failure(cls, error: BaseException, **fields: Any) -> Evaluation:
        """A failed evaluation for what `error` says: its first line (at most 500
        characters) as `error`, its whole traceback as `traceback`."""
        message = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        trace = "".join(traceback.format_exception(error))
        return cls(status="failed", error=message, traceback=trace, **fields)


class StopRule(Protocol):
    """Decides, after each epoch, whether a candidate's training should end early."""

    def __call__(self, history: Sequence[dict[str, float]]) -> str | None:
        """Why to stop given the epochs so far (one dict each, with "epoch"), or None."""


#: One network morphism, as a strategy drew it and a worker replays it: the operator's
#: name (`nasflow.morphism.OPERATORS`), the layer it applies to and the seed of its draws.
MorphStep = tuple[str, int, int]


@dataclass(frozen=True)
class Lineage:
    """Where a proposal's first weights come from: its parent's trained ones.

    The parent is an architecture the search has evaluated. With `morphisms` (the chain
    space), the worker replays them, in order, on the parent's trained network, so the
    child starts computing exactly what its parent does (`nasflow.morphism`); without,
    the child copies every parameter of its parent whose name and shape it shares.
    """

    parent: Architecture
    morphisms: tuple[MorphStep, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"parent": self.parent.to_json(), "morphisms": [list(m) for m in self.morphisms]}

    @classmethod
    def from_json(cls, data: dict[str, Any], space: SearchSpace) -> Lineage:
        steps = tuple((str(name), int(layer), int(seed)) for name, layer, seed in data["morphisms"])
        return cls(space.from_json(data["parent"]), steps)


@dataclass(frozen=True)
class Task:
    """One evaluation to run: which proposal of the search (its index), the architecture,
    its seed and the fidelity (training epochs; None: the estimator's full fidelity).

    `lineage` names the parent whose trained weights it starts from (None: a fresh
    initialisation). The rest is not part of what the task is, so it takes no part in
    comparisons: `stop`, the learning-curve rule the search process chose for this run of
    the task (`Estimator.job`); `weights`, the parent's trained `state_dict`, which the
    search attaches when it submits the task, so that it travels to wherever the task
    trains (a Ray worker included); and `keep_weights`, whether the evaluation should
    bring its own trained weights back.
    """

    iteration: int
    arch: Architecture
    seed: int
    fidelity: float | None = None
    stop: StopRule | None = field(default=None, compare=False, repr=False)
    lineage: Lineage | None = None
    weights: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    keep_weights: bool = field(default=False, compare=False)

    def at(self, fidelity: float | None) -> Task:
        """The same candidate at another fidelity (a rung of successive halving)."""
        return replace(self, fidelity=fidelity, stop=None)

    def with_stop(self, stop: StopRule | None) -> Task:
        """This task with `stop` as its learning-curve rule."""
        return replace(self, stop=stop)


#: What an executor runs for each task: an estimator's `evaluate_task`, or any function
#: of a task that returns its evaluation (picklable, where the executor runs elsewhere).
EvaluateFn = Callable[[Task], Evaluation]
