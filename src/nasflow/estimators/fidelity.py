"""Multi-fidelity estimation: spend full training only on candidates that earn it.

* `SuccessiveHalving` (Jamieson & Talwalkar 2016) trains a round of proposals at a low
  fidelity (few epochs), promotes the best 1/eta to the next rung, and so on up to the
  wrapped estimator's full fidelity.
* `Hyperband` (Li et al. 2018) runs successive halving in brackets that trade how many
  candidates start against how low they start, cycling through the brackets.
* `CurveStopping` ends a candidate's training early: by the median rule (Golovin et al.
  2017, Google Vizier: its best validation accuracy so far is below the median of the
  finished curves at the same epoch) or by extrapolation (a power law fitted to its curve
  predicts a final accuracy clearly below the best finished one; after Domhan et al. 2015).

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

import bisect
import functools
import itertools
import math
import statistics
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Annotated, Any

import numpy as np
from annotated_types import Gt

from nasflow.errors import NasflowError, check_int
from nasflow.estimators.base import Estimator
from nasflow.executors import Executor
from nasflow.ranges import NonNegativeFloat, PositiveFloat, PositiveInt
from nasflow.records import Evaluation, StopRule, Task
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

    name = "successive_halving"

    # A rung is ranked once all of its round has finished: run round by round.
    asynchronous = False

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        rungs: Sequence[PositiveFloat],
        eta: Annotated[float, Gt(1)] = 3,
        candidates: PositiveInt | None = None,
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
                key=lambda task: _rank_key(by_task[task.iteration]),
            )
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

    name = "hyperband"

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        rungs: Sequence[PositiveFloat],
        eta: Annotated[float, Gt(1)] = 3,
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


class ASHA(SuccessiveHalving):
    """Asynchronous successive halving (Li et al. 2020): promote as soon as a rung has
    enough results, never waiting for a round.

    Every candidate starts at the lowest rung. When one of its rungs finishes, it goes on
    to the next rung at once if its result is among the best ceil(n / `eta`) of the n
    results that rung has had so far (itself included), and otherwise stops there with
    status "stopped". This is the stopping form of ASHA (as in Ray Tune's and Syne Tune's
    schedulers): the decision is made when the result comes, so a candidate is finished
    the moment it stops, its slot goes to the next proposal, and the first candidates,
    with little to compare against, go on optimistically. The top rung is the wrapped
    estimator's full fidelity. With one slot the search is deterministic like any other.

    Args: as `SuccessiveHalving`, without `candidates` (there are no brackets).
    """

    name = "asha"

    asynchronous = True

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        rungs: Sequence[PositiveFloat],
        eta: Annotated[float, Gt(1)] = 3,
        **context: Any,
    ) -> None:
        super().__init__(then, rungs, eta, None, **context)
        # The ladder of fidelities (None: `then`'s full one), and the brackets: each
        # starts its candidates at one rung of it (ASHA's one bracket, at the lowest).
        self.ladder: list[float | None] = [*self.rungs, None]
        self.starts = self.bracket_starts()
        # The rank keys of the results each rung of each bracket has had, and each
        # running candidate's rungs so far, by proposal.
        self.results: list[list[list[tuple[float, float]]]] = [
            [[] for _ in self.rungs] for _ in self.starts
        ]
        self.past: dict[int, list[Evaluation]] = {}

    def bracket_starts(self) -> list[int]:
        """The rung (index in `ladder`) each bracket starts its candidates at."""
        return [0]

    def bracket_of(self, task: Task) -> int:
        """The bracket a proposal is in (by its index alone, so a resumed search agrees)."""
        return 0

    def evaluate_task(self, task: Task) -> Evaluation:
        return self.then.evaluate_task(task)

    def start(self, task: Task) -> Task:
        self.past[task.iteration] = []
        return task.at(self.ladder[self.starts[self.bracket_of(task)]])

    def job(self, task: Task) -> Task:
        return self.then.job(task)

    def advance(self, task: Task, evaluation: Evaluation) -> Task | Evaluation:
        result = self.then.advance(task, evaluation)
        assert isinstance(result, Evaluation), "ASHA's rungs are single evaluations"
        past = self.past.setdefault(task.iteration, [])
        past.append(result)
        if task.fidelity is None or result.score is None:  # the top rung, or it failed
            del self.past[task.iteration]
            return _combine(past, None)
        level = self.rungs.index(task.fidelity)
        bracket = self.bracket_of(task)
        results = self.results[bracket][level]
        key = _rank_key(result)
        earlier = sorted(results)
        results.append(key)
        place = bisect.bisect_right(earlier, key) + 1  # equal earlier results rank first
        count = len(results)
        keep = max(1, math.ceil(count / self.eta))
        if place <= keep:
            return task.at(self.ladder[level + 1])
        del self.past[task.iteration]
        where = f" of bracket {bracket + 1}" if len(self.starts) > 1 else ""
        return _combine(
            past,
            f"stopped at rung {level + 1} ({task.fidelity:g} epochs){where}: {place} of the "
            f"{count} results there so far, the best {keep} go on",
        )

    # A round of proposals (inside a pre-filter) runs as the asynchronous loop runs them,
    # each promoted as its rungs finish, not as successive halving's bracket.
    run = Estimator.run

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "results": [[list(map(list, rung)) for rung in bracket] for bracket in self.results],
            "past": {str(i): [e.to_json() for e in rungs] for i, rungs in self.past.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("results", [[[] for _ in self.rungs] for _ in self.starts])
        flat = all(not rung for rung in saved) or any(
            rung and rung[0] and isinstance(rung[0][0], int | float) for rung in saved
        )
        if flat:  # saved before brackets: the one bracket's rungs of (score, loss) keys
            saved = [saved]
        self.results = [
            [[(float(a), float(b)) for a, b in rung] for rung in bracket] for bracket in saved
        ]
        self.past = {
            int(i): [Evaluation.from_json(e) for e in rungs]
            for i, rungs in state.get("past", {}).items()
        }


class AsyncHyperband(ASHA):
    """Hyperband's brackets in parallel (Li et al. 2020, asynchronous Hyperband): ASHA in
    several brackets at once, each new proposal joining one of them.

    Bracket s starts its candidates s rungs below the top (as `Hyperband`'s), and each
    bracket promotes among its own results only, as ASHA does. Proposals are dealt to the
    brackets in Hyperband's proportions, n_s = ceil((S + 1) / (s + 1) * eta ** s) of every
    sum of n_s proposals (S = len(rungs)), interleaved so that each bracket gets its share
    early (smooth weighted round robin, by the proposal's index alone: deterministic and
    the same after a resume). No bracket waits for another, nor any rung for a round, so
    with executor.workers > 1 no worker waits.

    Args: as `ASHA`.
    """

    name = "async_hyperband"

    def bracket_starts(self) -> list[int]:
        depth = len(self.rungs)
        return [depth - s for s in range(depth, -1, -1)]  # s = S, ..., 0

    def bracket_of(self, task: Task) -> int:
        return self.deal[task.iteration % len(self.deal)]

    @functools.cached_property
    def deal(self) -> list[int]:
        """The bracket of each proposal in one cycle of sum(n_s) proposals."""
        depth = len(self.rungs)
        shares = [math.ceil((depth + 1) / (s + 1) * self.eta**s) for s in range(depth, -1, -1)]
        credit = [0] * len(shares)
        deal = []
        for _ in range(sum(shares)):
            credit = [c + n for c, n in zip(credit, shares, strict=True)]
            bracket = max(range(len(shares)), key=lambda b: credit[b])  # the first of ties
            credit[bracket] -= sum(shares)
            deal.append(bracket)
        return deal


def _rank_key(evaluation: Evaluation) -> tuple[float, float]:
    """Best first: the higher score, then the lower validation loss where scores tie (an
    accuracy on a small validation split ties often; its loss rarely does), then (the
    sort being stable) the earlier proposal."""
    loss = evaluation.metrics.get("val_loss", math.inf)
    return (-float(evaluation.score), loss if math.isfinite(loss) else math.inf)  # type: ignore[arg-type]


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


def power_law_forecast(curve: Sequence[float], epochs: int) -> float | None:
    """The accuracy at `epochs` that y(t) = a - b * t**-c, fitted to `curve` (epochs 1..k
    by least squares, a in [0, 1]), predicts; None when the fit fails. The pow3 family
    of Domhan et al. 2015, alone rather than in their ensemble."""
    from scipy.optimize import OptimizeWarning, curve_fit

    t = np.arange(1, len(curve) + 1, dtype=float)
    y = np.asarray(curve, dtype=float)
    if len(y) < 3 or not np.all(np.isfinite(y)):
        return None

    def pow3(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * t ** (-c)

    start = (min(1.0, float(y.max()) + 0.05), max(0.0, float(y.max() - y[0])) + 0.01, 0.5)
    try:
        with warnings.catch_warnings():  # a curve that fits exactly has no covariance
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, b, c), _ = curve_fit(
                pow3, t, y, p0=start, bounds=([0.0, -1.0, 0.0], [1.0, 2.0, 4.0]), maxfev=2000
            )
    except (RuntimeError, ValueError):
        return None
    return float(np.clip(pow3(np.array([float(epochs)]), a, b, c)[0], 0.0, 1.0))


class ExtrapolationRule:
    """Stop once a power law fitted to the curve so far predicts a final accuracy more
    than `margin` below the best finished curve's (the incumbent at this schedule).

    A learning-rate schedule that anneals (cosine) lifts the last epochs above what the
    early ones extrapolate to, so the forecast is calibrated on the finished curves: each
    is forecast from its own first epochs the same way, and the largest shortfall of those
    forecasts is added. A candidate is stopped only when even that correction leaves it
    short.
    """

    def __init__(
        self,
        curves: Sequence[Sequence[float]],
        grace: int,
        min_curves: int,
        epochs: int,
        margin: float,
    ) -> None:
        self.finished = [list(curve) for curve in curves if len(curve) == epochs]
        finals = [curve[-1] for curve in self.finished]
        self.incumbent = max(finals) if len(finals) >= min_curves else None
        self.grace = max(grace, 3)  # three points for three parameters
        self.epochs = epochs
        self.margin = margin
        self.corrections: dict[int, float] = {}  # by epochs seen

    def correction(self, done: int) -> float:
        """The largest amount by which forecasts from `done` epochs fell short of the
        finished curves' final accuracy (0 if they all overshot)."""
        if done not in self.corrections:
            shortfalls = [
                curve[-1] - forecast
                for curve in self.finished
                if (forecast := power_law_forecast(curve[:done], self.epochs)) is not None
            ]
            self.corrections[done] = max([0.0, *shortfalls])
        return self.corrections[done]

    def __call__(self, history: Sequence[dict[str, float]]) -> str | None:
        done = len(history)
        if self.incumbent is None or done < self.grace or done >= self.epochs:
            return None
        forecast = power_law_forecast(
            [epoch.get("val_acc", math.nan) for epoch in history], self.epochs
        )
        if forecast is None:
            return None
        forecast = min(1.0, forecast + self.correction(done))
        if forecast + self.margin < self.incumbent:
            return (
                f"curve extrapolation after {done} epochs: forecast val_acc {forecast:.4f} "
                f"at epoch {self.epochs}, more than {self.margin:g} below the best "
                f"{self.incumbent:.4f}"
            )
        return None


class CurveStopping(Wrapper):
    """Learning-curve early stopping over whatever `then` trains.

    Args:
        then: A `stoppable` estimator (one that trains epoch by epoch).
        rule: ``median``: stop when the best val_acc so far is below the median of the
            finished curves' best at the same epoch (Golovin et al. 2017).
            ``extrapolate``: stop when a power law fitted to the curve so far predicts a
            final val_acc more than `margin` below the best finished one (after Domhan
            et al. 2015).
        grace: Epochs every candidate trains before it may be stopped (``extrapolate``
            needs at least 3).
        min_curves: Finished curves (of the same length schedule) needed before any
            candidate is stopped.
        margin: How far below the incumbent a forecast must fall (``extrapolate``).
        **context: Passed to `then`'s factory.

    The finished curves are kept per fidelity (a 3-epoch schedule is compared only with
    3-epoch ones) and saved with the search, so a resumed search stops the same candidates.
    Stopped candidates come back with status "stopped", their last score and a reason.
    """

    name = "curve_stopping"

    RULES = ("median", "extrapolate")

    def __init__(
        self,
        then: Estimator | EstimatorFactory,
        rule: str = "median",
        grace: PositiveInt = 1,
        min_curves: PositiveInt = 3,
        margin: NonNegativeFloat = 0.02,
        **context: Any,
    ) -> None:
        super().__init__(then, context)
        if not self.then.stoppable:
            raise NasflowError(
                "learning-curve stopping needs an estimator that trains epoch by epoch; "
                f"{type(self.then).__name__} does not"
            )
        if rule not in self.RULES:
            raise NasflowError(
                f"unknown learning-curve rule {rule!r}; choose from {', '.join(self.RULES)}"
            )
        check_int("estimator.grace", grace)
        check_int("estimator.min_curves", min_curves)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
            raise NasflowError(f"estimator.margin must be a number >= 0, got {margin!r}")
        self.rule = rule
        self.grace = grace
        self.min_curves = min_curves
        self.margin = float(margin)
        self.curves: dict[str, list[list[float]]] = {}  # by fidelity ("full" for None)

    def stop_rule(self, fidelity: float | None) -> StopRule:
        """The rule for a task at `fidelity`, from the curves finished so far."""
        curves = self.curves.get(_key(fidelity), [])
        if self.rule == "median":
            return MedianRule(curves, self.grace, self.min_curves)
        epochs = round(fidelity) if fidelity is not None else int(self.epochs or 0)
        return ExtrapolationRule(curves, self.grace, self.min_curves, epochs, self.margin)

    def evaluate(
        self,
        arch: Architecture,
        seed: int,
        fidelity: float | None = None,
        stop: StopRule | None = None,
    ) -> Evaluation:
        rule = self.stop_rule(fidelity)
        return self.then.evaluate(
            arch, seed, fidelity, rule if stop is None else _either(rule, stop)
        )

    def evaluate_task(self, task: Task) -> Evaluation:
        # The rule came with the task (`job`): made in the search process from the curves
        # finished so far, which a worker elsewhere does not have.
        return self.then.evaluate_task(task)

    def job(self, task: Task) -> Task:
        return task.with_stop(self.stop_rule(task.fidelity))

    def advance(self, task: Task, evaluation: Evaluation) -> Evaluation:
        # Curves are learnt here, in the search process: `evaluate` may run elsewhere.
        if evaluation.status == "ok" and evaluation.history:
            curve = [epoch.get("val_acc", math.nan) for epoch in evaluation.history]
            self.curves.setdefault(_key(task.fidelity), []).append(curve)
        return evaluation

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
