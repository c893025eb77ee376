"""Multi-fidelity estimation: spend full training only on candidates that earn it.

* `SuccessiveHalving` (Jamieson & Talwalkar 2016) trains a round of proposals at a low
  fidelity (few epochs), promotes the best 1/eta to the next rung, and so on up to the
  wrapped estimator's full fidelity.
* `Hyperband` (Li et al. 2018) runs successive halving in brackets that trade how many
  candidates start against how low they start, cycling through the brackets.
* `MedianStopping` (Golovin et al. 2017, Google Vizier) ends a candidate's training once
  its best validation accuracy so far falls below the median of the finished curves at the
  same epoch.

Each wraps another estimator (``then``) and is itself an estimator, so they stack: e.g. a
proxy pre-filter, then successive halving whose rungs use median stopping, then training.
Every rung is a fresh training run of the rung's length through the executor: rungs are
independent tasks (they parallelise, and a rung's learning-rate schedule spans its own
epochs, as the NB201 table's 12- and 200-epoch schedules do).

Candidates eliminated at a low rung come back with status "stopped" and the score they
reached; they are told to the strategy (a low-fidelity score is lower, so they rarely
win) but never become the search's best, which only full-fidelity results can.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from nasflow.errors import NasflowError, check_int
from nasflow.estimators.base import Estimator, Evaluation, StopRule
from nasflow.executors import Executor, Task
from nasflow.search_spaces.base import Architecture

EstimatorFactory = Callable[..., Estimator]


def build(then: Estimator | EstimatorFactory, context: dict[str, Any]) -> Estimator:
    """The wrapped estimator: `then` itself, or built from its factory (a Hydra
    ``_partial_``) with what the stage supplies (`space`, `data`, `trainer`)."""
    return then if isinstance(then, Estimator) else then(**context)


class Wrapper(Estimator):
    """An estimator around another one; single evaluations pass straight through."""

    def __init__(self, then: Estimator | EstimatorFactory, context: dict[str, Any]) -> None:
        self.then = build(then, context)
        # What rungs may ask of the wrapped estimator: its full fidelity and, for a
        # table, the only fidelities it has.
        self.epochs = getattr(self.then, "epochs", None)
        self.fidelities = getattr(self.then, "fidelities", None)

    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        return self.then.evaluate(arch, seed, fidelity, stop)

    def state_dict(self) -> dict[str, Any]:
        return {"then": self.then.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.then.load_state_dict(state.get("then", {}))


class SuccessiveHalving(Wrapper):
    """Train a round of candidates at each rung; promote the best 1/`eta` to the next.

    Args:
        then: The estimator (or its factory) that evaluates each rung; its own full
            fidelity is the top rung.
        rungs: The fidelities (training epochs) below the top, increasing, e.g. [1, 3]
            for a top of 9 epochs, or [12] below the NB201 table's 200.
        eta: Each rung keeps the best ceil(n / eta) of its n candidates (at least one).
        candidates: Proposals per bracket when this is the outermost estimator; None:
            eta ** len(rungs), so that one candidate reaches the top. Wrapped by a
            pre-filter, a bracket is whatever the filter keeps.
        **context: Passed to `then`'s factory.

    Every rung's result is kept in the candidate's `Evaluation.rungs`, and its `cost` is
    the epochs of every rung it ran.
    """

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        rungs: Sequence[float],
        eta: float = 3,
        candidates: int | None = None,
        **context: Any,
    ) -> None:
        super().__init__(then, context)
        rungs = list(rungs)
        if not rungs or any(
            isinstance(r, bool) or not isinstance(r, int | float) or r <= 0 for r in rungs
        ):
            raise NasflowError(
                f"estimator.rungs must be a non-empty list of positive epochs, got {rungs!r}"
            )
        if any(b <= a for a, b in itertools.pairwise(rungs)):
            raise NasflowError(f"estimator.rungs must increase, got {rungs!r}")
        top = getattr(self.then, "epochs", None)
        if top is not None and rungs[-1] >= top:
            raise NasflowError(
                f"estimator.rungs must stay below the full fidelity ({top} epochs), got {rungs!r}"
            )
        if self.fidelities is not None and (
            missing := [r for r in rungs if r not in self.fidelities]
        ):
            raise NasflowError(
                f"estimator.rungs {missing!r} are not fidelities the wrapped estimator has; "
                f"available: {', '.join(map(str, self.fidelities))}"
            )
        if isinstance(eta, bool) or not isinstance(eta, int | float) or eta <= 1:
            raise NasflowError(f"estimator.eta must be a number above 1, got {eta!r}")
        if candidates is None:
            candidates = math.ceil(eta ** len(rungs))
        check_int("estimator.candidates", candidates)
        self.rungs = [float(r) for r in rungs]
        self.eta = eta
        self.candidates = candidates

    def round_size(self, remaining: int, slots: int) -> int:
        return min(self.candidates, remaining)

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        return self.bracket(tasks, executor, self.rungs)

    def bracket(
        self, tasks: Sequence[Task], executor: Executor, rungs: Sequence[float]
    ) -> Iterator[tuple[Task, Evaluation]]:
        """Successive halving of `tasks` through `rungs`, then the full fidelity."""
        ladder: list[float | None] = [*rungs, None]  # None: `then`'s full fidelity
        alive = list(tasks)
        past: dict[int, list[Evaluation]] = {task.iteration: [] for task in tasks}
        for level, fidelity in enumerate(ladder):
            results = list(self.then.run([task.at(fidelity) for task in alive], executor))
            by_task = {task.iteration: evaluation for task, evaluation in results}
            for task in alive:
                past[task.iteration].append(by_task[task.iteration])
            if fidelity is None:  # the top rung: every result is final
                for task in alive:
                    yield task, _combine(past[task.iteration], None)
                return
            ranked = sorted(
                (task for task in alive if by_task[task.iteration].score is not None),
                key=lambda task: -by_task[task.iteration].score,  # type: ignore[operator]
            )  # stable: among equal scores, the earlier proposal goes on
            keep = max(1, math.ceil(len(alive) / self.eta))
            promoted = {task.iteration for task in ranked[:keep]}
            for place, task in enumerate(ranked[keep:], start=keep + 1):
                reason = (
                    f"eliminated at rung {level + 1} ({fidelity:g} epochs): "
                    f"{place} of {len(alive)}, the best {keep} go on"
                )
                yield task, _combine(past[task.iteration], reason)
            for task in alive:
                if by_task[task.iteration].score is None:  # failed: it ends here
                    yield task, _combine(past[task.iteration], None)
            alive = [task for task in alive if task.iteration in promoted]


class Hyperband(SuccessiveHalving):
    """Successive halving in brackets: bracket s starts `n_s` candidates s rungs below the
    top, with n_s = ceil((S + 1) / (s + 1) * eta ** s) for S = len(rungs), and the brackets
    cycle s = S, S-1, ..., 0 (the last is plain full-fidelity evaluation).

    Args: as `SuccessiveHalving`, without `candidates` (each bracket has its own).
    """

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        rungs: Sequence[float],
        eta: float = 3,
        **context: Any,
    ) -> None:
        super().__init__(then, rungs, eta, None, **context)
        depth = len(self.rungs)
        self.brackets = [
            (s, math.ceil((depth + 1) / (s + 1) * eta**s)) for s in range(depth, -1, -1)
        ]
        self.next_bracket = 0

    def round_size(self, remaining: int, slots: int) -> int:
        return min(self.brackets[self.next_bracket][1], remaining)

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        s, _ = self.brackets[self.next_bracket]
        self.next_bracket = (self.next_bracket + 1) % len(self.brackets)
        return self.bracket(tasks, executor, self.rungs[len(self.rungs) - s :])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "next_bracket": self.next_bracket}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.next_bracket = state.get("next_bracket", 0)


def _combine(rungs: list[Evaluation], eliminated: str | None) -> Evaluation:
    """A candidate's evaluation over the rungs it ran: the last rung's result, with the
    cost and seconds of all of them, each rung listed, and "stopped" if `eliminated`."""
    last = rungs[-1]
    return replace(
        last,
        status="stopped" if eliminated else last.status,
        error=eliminated or last.error,
        seconds=sum(r.seconds for r in rungs),
        cost=sum(r.cost for r in rungs),
        rungs=[
            {
                "fidelity": r.fidelity,
                "score": r.score,
                "status": r.status,
                "seconds": r.seconds,
                "cost": r.cost,
            }
            for r in rungs
        ],
    )


class MedianRule:
    """Stop once the best validation accuracy so far is below the median of the finished
    curves' best at the same epoch (after `grace` epochs, with `min_curves` to compare)."""

    def __init__(self, curves: Sequence[Sequence[float]], grace: int, min_curves: int) -> None:
        self.curves = [list(curve) for curve in curves]
        self.grace = grace
        self.min_curves = min_curves

    def __call__(self, history: Sequence[dict[str, float]]) -> str | None:
        epochs = len(history)
        if epochs < self.grace:
            return None
        reference = [max(curve[:epochs]) for curve in self.curves if len(curve) >= epochs]
        if len(reference) < self.min_curves:
            return None
        best = max(epoch.get("val_acc", -math.inf) for epoch in history)
        median = statistics.median(reference)
        if best < median:
            return (
                f"median stopping after {epochs} epochs: best val_acc {best:.4f} below the "
                f"median {median:.4f} of {len(reference)} finished curves"
            )
        return None


class MedianStopping(Wrapper):
    """The median stopping rule over whatever `then` trains.

    Args:
        then: A `stoppable` estimator (one that trains epoch by epoch).
        grace: Epochs every candidate trains before it may be stopped.
        min_curves: Finished curves (of the same length schedule) needed before any
            candidate is stopped.
        **context: Passed to `then`'s factory.

    The finished curves are kept per fidelity (a 3-epoch schedule is compared only with
    3-epoch ones) and saved with the search, so a resumed search stops the same candidates.
    Stopped candidates come back with status "stopped", their last score and a reason.
    """

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        grace: int = 1,
        min_curves: int = 3,
        **context: Any,
    ) -> None:
        super().__init__(then, context)
        if not self.then.stoppable:
            raise NasflowError(
                f"median stopping needs an estimator that trains epoch by epoch; "
                f"{type(self.then).__name__} does not"
            )
        check_int("estimator.grace", grace)
        check_int("estimator.min_curves", min_curves)
        self.grace = grace
        self.min_curves = min_curves
        self.curves: dict[str, list[list[float]]] = {}  # by fidelity ("full" for None)

    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        rule = MedianRule(self.curves.get(_key(fidelity), []), self.grace, self.min_curves)
        return self.then.evaluate(
            arch, seed, fidelity, rule if stop is None else _either(rule, stop)
        )

    def run(self, tasks: Sequence[Task], executor: Executor) -> Iterator[tuple[Task, Evaluation]]:
        # Curves are learnt here, in the search process: `evaluate` may run elsewhere.
        for task, evaluation in executor.run(self, tasks):
            if evaluation.status == "ok" and evaluation.history:
                curve = [epoch.get("val_acc", math.nan) for epoch in evaluation.history]
                self.curves.setdefault(_key(task.fidelity), []).append(curve)
            yield task, evaluation

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "curves": {k: [list(c) for c in v] for k, v in self.curves.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.curves = {k: [list(c) for c in v] for k, v in state.get("curves", {}).items()}


def _key(fidelity: float | None) -> str:
    return "full" if fidelity is None else f"{fidelity:g}"


class _either:
    """Stop when either rule says so (picklable, unlike a closure)."""

    def __init__(self, first: StopRule, second: StopRule) -> None:
        self.first, self.second = first, second

    def __call__(self, history: Sequence[dict[str, float]]) -> str | None:
        return self.first(history) or self.second(history)
