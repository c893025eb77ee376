"""The search loop: ask the strategy, evaluate through the executor, tell, record.

The loop also decides when a search ends (the strategy's evaluation budget, a wall-clock
limit, or convergence: no better candidate for `patience` evaluations) and, given a
`Checkpoint`, saves the search after every evaluation so that an interrupted search
continues where it stopped and ends exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow.constraints import Screen
from nasflow.errors import NasflowError, first_line
from nasflow.estimators.base import Estimator
from nasflow.executors import Executor, ForwardingExecutor
from nasflow.inheritance import InheritingExecutor, WeightStore
from nasflow.pareto import (
    Objective,
    front_mask,
    front_objectives,
    front_records,
    hypervolume,
    maximize_flags,
    scored,
)
from nasflow.records import EvaluateFn, Evaluation, Lineage, Task
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy
from nasflow.searching import SearchContext, SearchOutcome

log = logging.getLogger("nasflow.search")

#: Proposals in a row the screen may filter out before the search gives up on the
#: constraints: most of the space breaks them.
MAX_REJECTED = 1000


@dataclass
class Candidate:
    """One evaluated architecture, as the history, the tracker and people see it."""

    iteration: int  # its place among the evaluated candidates, from 0
    arch: Architecture
    seed: int
    evaluation: Evaluation
    best_score: float | None  # the best full-fidelity score of the search so far
    elapsed: float  # seconds since the search started (resumed searches included)
    strategy_metrics: dict[str, float] = field(default_factory=dict)  # after its `tell`
    cost: float = 0.0  # training epochs the search has spent so far, this one included
    proposals: int = 0  # architectures the strategy has proposed so far (filtered included)
    proposal: int = -1  # which proposal it was, from 0 (its seed derives from it)
    parent: str | None = None  # the architecture id whose trained weights it started from

    def __post_init__(self) -> None:
        if self.proposal < 0:
            self.proposal = self.iteration

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "id": self.arch.id,
            "description": self.arch.describe(),
            "architecture": self.arch.to_json(),
            "seed": self.seed,
            **self.evaluation.to_json(),
            "best_score": self.best_score,
            "elapsed": self.elapsed,
            "strategy_metrics": self.strategy_metrics,
            "total_cost": self.cost,
            "proposals": self.proposals,
            "proposal": self.proposal,
            "parent": self.parent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], space: SearchSpace) -> Candidate:
        fields = Evaluation.__dataclass_fields__
        return cls(
            iteration=data["iteration"],
            arch=space.from_json(data["architecture"]),
            seed=data["seed"],
            evaluation=Evaluation.from_json({k: v for k, v in data.items() if k in fields}),
            best_score=data["best_score"],
            elapsed=data["elapsed"],
            strategy_metrics=data.get("strategy_metrics", {}),
            cost=data.get("total_cost", 0.0),
            proposals=data.get("proposals", data["iteration"] + 1),
            proposal=data.get("proposal", data["iteration"]),
            parent=data.get("parent"),
        )


def candidate_seed(seed: int, iteration: int) -> int:
    """The training seed of the `iteration`-th candidate: independent of what ran before,
    so a resumed or parallel search trains each candidate exactly as a sequential one."""
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0])


@dataclass(frozen=True)
class Stopping:
    """When a search ends besides its strategy's evaluation budget.

    Attributes:
        max_seconds: Issue no new candidate once the search has run this long (a candidate
            already training finishes). None: no time limit.
        patience: End once this many evaluations in a row have not improved the best score
            (convergence). None: never.
        max_cost: Issue no new candidate once this many training epochs are spent (each
            candidate's `Evaluation.cost`, simulated ones for a table). None: no limit.
        max_consecutive_failures: End with an error once this many candidates in a row
            have failed: a candidate may fail for its own reasons (NaN, out of memory),
            but failures in a row are most likely a bug, and spending the budget on it
            would hide it. None: never.
    """

    max_seconds: float | None = None
    patience: int | None = None
    max_cost: float | None = None
    max_consecutive_failures: int | None = 5

    def reason(self, history: list[Candidate], elapsed: float) -> str | None:
        """Why the search should stop now, or None to go on."""
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            return f"the time limit of {self.max_seconds:g}s is reached"
        if self.max_cost is not None and history and history[-1].cost >= self.max_cost:
            return f"the cost limit of {self.max_cost:g} training epochs is reached"
        if self.patience is not None and history and history[-1].best_score is not None:
            best = history[-1].best_score
            since = next(
                (len(history) - 1 - i for i, c in enumerate(history) if c.best_score == best), 0
            )
            if since >= self.patience:
                return f"the best has not improved for {since} evaluations"
        return None

    def check_failures(self, history: list[Candidate], log: Path | None) -> None:
        """A NasflowError if the last `max_consecutive_failures` candidates all failed."""
        limit = self.max_consecutive_failures
        if limit is None or len(history) < limit:
            return
        if all(c.evaluation.status == "failed" for c in history[-limit:]):
            where = f"; every traceback is in {log}" if log is not None else ""
            raise NasflowError(
                f"the last {limit} candidates failed, the last with {history[-1].evaluation.error}"
                f"{where} (search.max_consecutive_failures={limit}: likely a bug, not the "
                "candidates)"
            )


class Checkpoint:
    """An in-progress search on disk: the strategy's and the estimator's state, the count
    of proposals, the finished candidates, and what is under way: the jobs in flight (an
    asynchronous search) or the evaluations the current round has finished (a search in
    rounds).

    Saved atomically (written aside, then renamed) whenever any of it changes, and removed
    when the search completes. An asynchronous search is saved after every proposal and
    every finished job, so a resumed one submits the jobs that were in flight again, with
    their own seeds, and asks nothing twice. A search in rounds is saved between rounds
    and after every evaluation within one: a resumed search restores the round's start,
    asks the same proposals again and replays the evaluations the round had finished, so
    a kill costs at most the trainings in flight, even inside a round of successive
    halving. `fingerprint` names what the search is (its configuration), so a different
    search never resumes from it.
    """

    #: Bumped when the file's layout changes: an older file is refused, not misread.
    FORMAT = 3

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.path = Path(folder) / f"search-{fingerprint}.pt"
        self.meta: dict[str, Any] = {}  # saved alongside, e.g. the tracking run to reopen
        self._start: dict[str, Any] = {}  # the search as of the last `save`, frozen
        self.round: dict[str, dict[str, Any]] = {}  # the round's finished evaluations

    def save(
        self,
        strategy: SearchStrategy,
        history: list[Candidate],
        estimator: Estimator | None = None,
        proposals: int | None = None,
        done: dict[str, dict[str, Any]] | None = None,
        in_flight: Sequence[Task] = (),
        notified: int | None = None,
        screen: Screen | None = None,
    ) -> None:
        """Save the search as it stands: between rounds (the next round starts here, with
        `done`, a resumed round's finished evaluations, already finished), or, for an
        asynchronous search, with the jobs `in_flight`, and how many of the candidates
        were `notified` (passed to the loop's `on_candidate`; None: all); with the
        `screen`'s measures and filtered proposals."""
        self._start = {
            # Pickled now: the strategy's and estimator's objects change afterwards.
            "strategy": pickle.dumps(strategy.state_dict()),
            "estimator": pickle.dumps(estimator.state_dict() if estimator is not None else {}),
            "proposals": len(history) if proposals is None else proposals,
            "history": [c.to_json() for c in history],
            "in_flight": [_task_json(task) for task in in_flight],
            "notified": len(history) if notified is None else notified,
            "screen": screen.state_dict() if screen is not None else {},
        }
        self.round = dict(done or {})
        self._write()

    def record(self, key: str, task: Task, evaluation: Evaluation) -> None:
        """Add an evaluation the current round has finished (`key`: `_task_key`), and save."""
        self.round[key] = {"arch_id": task.arch.id, "evaluation": evaluation.to_json()}
        self._write()

    def _write(self) -> None:
        state = {"format": self.FORMAT, **self._start, "round": self.round, "meta": self.meta}
        partial = self.path.with_suffix(".partial")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, partial)
            os.replace(partial, self.path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise NasflowError(
                f"cannot save the search checkpoint {self.path} ({error.strerror or error}); "
                "the previous one is intact: make room and run the search again to resume"
            ) from None

    def load(self) -> dict[str, Any] | None:
        """The saved state (strategy and estimator states unpickled), or None when there is
        none; a NasflowError naming the file and the way out when it cannot be read."""
        if not self.path.is_file():
            return None
        fresh = "delete it or set search.resume=false to start the search afresh"
        try:
            # Our own file, holding a strategy's pickled state (an Optuna study, say).
            state = torch.load(self.path, weights_only=False)
            if not isinstance(state, dict) or state.get("format") != self.FORMAT:
                raise NasflowError(f"{self.path} was saved by another version of nasflow; {fresh}")
            state["strategy"] = pickle.loads(state["strategy"])
            state["estimator"] = pickle.loads(state["estimator"])
        except NasflowError:
            raise
        except Exception as error:
            reason = first_line(error)[:200]
            raise NasflowError(f"{self.path} is corrupt ({reason}); {fresh}") from None
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _task_json(task: Task) -> dict[str, Any]:
    return {
        "iteration": task.iteration,
        "architecture": task.arch.to_json(),
        "seed": task.seed,
        "fidelity": task.fidelity,
        "lineage": task.lineage.to_json() if task.lineage is not None else None,
    }


def _task_from_json(data: dict[str, Any], space: SearchSpace) -> Task:
    lineage = data.get("lineage")
    return Task(
        data["iteration"],
        space.from_json(data["architecture"]),
        data["seed"],
        data["fidelity"],
        lineage=Lineage.from_json(lineage, space) if lineage is not None else None,
    )


def _task_key(evaluate: EvaluateFn, task: Task) -> str:
    """What identifies an evaluation within a round: the proposal, its fidelity and what
    evaluates it (a pre-filter's proxy and the training after it are two evaluations)."""
    owner = getattr(evaluate, "__self__", None)
    name = getattr(evaluate, "__qualname__", type(evaluate).__qualname__)
    if owner is not None:
        name = f"{type(owner).__qualname__}.{getattr(evaluate, '__name__', name)}"
    return f"{name}:{task.iteration}@{task.fidelity}"


class _Round(ForwardingExecutor):
    """The executor of a round, as the checkpoint and the tracker see it: each evaluation
    is recorded as it finishes, one that a resumed round had already finished is handed
    back at once instead of being run again (only for the same architecture: anything
    else means the strategy did not propose what it did before, and the task runs), and
    its epochs go to the loop's `on_epoch`."""

    def __init__(self, inner: Executor, checkpoint: Checkpoint | None) -> None:
        super().__init__(inner)
        self.checkpoint = checkpoint
        self._keys: dict[tuple[int, float | None], str] = {}

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        self._keys[(task.iteration, task.fidelity)] = _task_key(evaluate, task)
        self.inner.submit(evaluate, task)

    def wait(self) -> list[tuple[Task, Evaluation]]:
        finished = self.inner.wait()
        if self.checkpoint is not None:
            for task, evaluation in finished:
                key = self._keys.pop((task.iteration, task.fidelity))
                self.checkpoint.record(key, task, evaluation)
        return finished

    def known(self, evaluate: EvaluateFn, task: Task) -> Evaluation | None:
        done = self.checkpoint.round.get(_task_key(evaluate, task)) if self.checkpoint else None
        if done is not None and done["arch_id"] == task.arch.id:
            return Evaluation.from_json(done["evaluation"])
        return None


class _Search:
    """What a running search knows, whichever way it runs: the finished candidates, the
    proposals so far, the best score, the cost and the clock."""

    def __init__(
        self,
        strategy: SearchStrategy,
        estimator: Estimator,
        executor: Executor,
        seed: int,
        stopping: Stopping,
        checkpoint: Checkpoint | None,
        resumed: dict[str, Any] | None,
        on_candidate: Callable[[Candidate], None],
        failure_log: Path | None,
        screen: Screen | None = None,
        scalarize: Callable[[Evaluation], float | None] | None = None,
    ) -> None:
        self.strategy = strategy
        self.screen = screen
        self.scalarize = scalarize
        self.estimator = estimator
        self.executor = executor
        self.seed = seed
        self.stopping = stopping
        self.checkpoint = checkpoint
        self.on_candidate = on_candidate
        self.failure_log = failure_log
        self.history: list[Candidate] = []
        self.proposed = 0
        self.notified = 0  # candidates passed to `on_candidate`
        elapsed_before = 0.0
        if resumed is not None:
            strategy.load_state_dict(resumed["strategy"])
            estimator.load_state_dict(resumed.get("estimator", {}))
            self.history = [Candidate.from_json(c, strategy.space) for c in resumed["history"]]
            self.proposed = resumed.get("proposals", len(self.history))
            self.notified = resumed.get("notified", len(self.history))
            elapsed_before = self.history[-1].elapsed if self.history else 0.0
            if screen is not None:
                screen.load_state_dict(resumed.get("screen", {}))
        # What "candidate i of N" counts to: the budget, or the whole space if smaller.
        self.planned = min(strategy.budget, strategy.space.size())
        self.best = self.history[-1].best_score if self.history else None
        self.cost = self.history[-1].cost if self.history else 0.0
        self._clock_offset = elapsed_before - executor.clock()
        # The job each candidate in flight is on, by proposal (asynchronous searches),
        # without what its submission added (a learning-curve rule).
        self.in_flight: dict[int, Task] = {}

    def elapsed(self) -> float:
        """Seconds since the search started, resumed searches included (the executor's
        clock: simulated time in a simulation)."""
        return self._clock_offset + self.executor.clock()

    def stop_reason(self) -> str | None:
        return self.stopping.reason(self.history, self.elapsed())

    def propose(self) -> Task | None:
        """A new task from the strategy, or None when it has nothing left. A proposal the
        screen finds infeasible is recorded as filtered, the strategy forgets it and is
        asked again: it costs a proposal index, never a candidate of the budget."""
        rejected = 0
        while True:
            arch = self.strategy.ask()
            if arch is None:
                return None
            task = Task(
                self.proposed,
                arch,
                candidate_seed(self.seed, self.proposed),
                lineage=self.strategy.lineage(arch),
            )
            self.proposed += 1
            reason = self.screen.reason(arch) if self.screen is not None else None
            if reason is None:
                return task
            self.screen.reject(task.iteration, arch, reason)  # type: ignore[union-attr]
            self.strategy.discard(arch)
            log.info("proposal #%d filtered before training: %s  %s", task.iteration + 1,
                     reason, arch.describe())  # fmt: skip
            rejected += 1
            if rejected >= MAX_REJECTED:
                constraints = ", ".join(map(str, self.screen.constraints))  # type: ignore[union-attr]
                raise NasflowError(
                    f"the last {rejected} proposals all broke search.constraints ({constraints}), "
                    f"the last with {reason}; loosen them or shrink the search space"
                )

    def finish(self, task: Task, evaluation: Evaluation) -> None:
        """Tell the strategy an evaluation that ends a proposal; record it as a candidate
        unless it was filtered."""
        if evaluation.status == "filtered":
            self.strategy.discard(task.arch)
            return
        if self.screen is not None:
            self.screen.annotate(task.arch, evaluation)
        if self.scalarize is None:
            self.strategy.tell(task.arch, evaluation)
        else:
            # The strategy learns from the one score; the record keeps every objective.
            scalar = self.scalarize(evaluation) if evaluation.status == "ok" else None
            if scalar is not None:
                evaluation.metrics["scalarized"] = scalar
            told = Evaluation.from_json({**evaluation.to_json(), "score": scalar})
            if scalar is None and evaluation.status == "ok":
                told.status = "failed"  # no objective vector: the worst, as a failure is
            self.strategy.tell(task.arch, told)
        self.cost += evaluation.cost
        # Only full-fidelity scores compete: a stopped candidate's score is partial.
        if evaluation.status == "ok" and evaluation.score is not None:
            self.best = evaluation.score if self.best is None else max(self.best, evaluation.score)
        candidate = Candidate(
            len(self.history),
            task.arch,
            task.seed,
            evaluation,
            self.best,
            self.elapsed(),
            self.strategy.metrics(),
            self.cost,
            self.proposed,
            task.iteration,
            task.lineage.parent.id if task.lineage is not None else None,
        )
        self.history.append(candidate)
        _report(candidate, self.planned)
        if evaluation.status == "failed" and self.failure_log is not None:
            _log_failure(self.failure_log, candidate)

    def notify(self) -> None:
        """Pass every candidate not yet passed to `on_candidate` (tracking), in order; one
        that raised (a tracking store that failed) is passed again after a resume."""
        while self.notified < len(self.history):
            self.on_candidate(self.history[self.notified])
            self.notified += 1

    def save(self, done: dict[str, dict[str, Any]] | None = None) -> None:
        """Checkpoint the search as it stands, with its jobs in flight."""
        if self.checkpoint is not None:
            self.checkpoint.save(
                self.strategy,
                self.history,
                self.estimator,
                self.proposed,
                done,
                list(self.in_flight.values()),
                self.notified,
                self.screen,
            )


def run_search(
    strategy: SearchStrategy,
    estimator: Estimator,
    executor: Executor,
    seed: int,
    on_candidate: Callable[[Candidate], None] = lambda _: None,
    stopping: Stopping = Stopping(),
    checkpoint: Checkpoint | None = None,
    resumed: dict[str, Any] | None = None,
    failure_log: Path | None = None,
    on_start: Callable[[Task], None] = lambda _: None,
    on_epoch: Callable[[Task, dict[str, Any]], None] = lambda task, record: None,
    screen: Screen | None = None,
    scalarize: Callable[[Evaluation], float | None] | None = None,
    weights: WeightStore | None = None,
) -> list[Candidate]:
    """Run the search until the budget is spent, a stopping rule fires or the strategy has
    nothing left to ask.

    An estimator that evaluates candidates one by one (`Estimator.asynchronous`) runs
    asynchronously: up to `executor.slots` candidates are in flight, and whenever one
    finishes it is told to the strategy and a new one is asked for, without waiting for
    the others. A candidate may take several jobs in a row (the rungs of ASHA); the
    estimator says which (`Estimator.start`, `Estimator.advance`). With one slot this is
    ask, evaluate, tell, one candidate after another.

    An estimator that needs a whole round (successive halving, a pre-filter) runs in
    rounds: it says how many evaluations the next round makes (`Estimator.round_size`)
    and how many proposals that takes (`Estimator.proposals`); the loop asks the strategy
    for them and hands them to the estimator's `run`, which evaluates them through the
    executor. Every proposal comes back: evaluated ones are told to the strategy and
    become candidates (the budget counts them); filtered ones are discarded
    (`SearchStrategy.discard`).

    Each proposal's seed derives from the search seed and its index alone
    (`candidate_seed`), so how many run at once changes what the strategy has learnt when
    it proposes, never how a proposal trains.

    Args:
        strategy: Proposes architectures and learns from their evaluations.
        estimator: Scores an architecture.
        executor: Where the estimator runs.
        seed: The search seed, from which each proposal's seed is derived.
        on_candidate: Called with every finished candidate (tracking).
        stopping: Time limit, cost limit and convergence rule.
        checkpoint: Where to save the search as it goes; None: nowhere.
        resumed: A state `checkpoint.load()` returned, to continue from. Its candidates are
            not evaluated again, nor passed to `on_candidate` again (but those that an
            `on_candidate` raising left unpassed, e.g. a tracking store that failed).
        failure_log: Where the traceback of every failed candidate is appended; None:
            nowhere.
        on_start: Called when an asynchronous search submits a candidate's first job
            (again, for one that was in flight when a resumed search was interrupted).
        on_epoch: Called with a running job and each epoch it reports as it trains.
        screen: Takes each proposal's cheap measures before training and filters out
            those that break a constraint (`nasflow.constraints`); its record of them is
            saved and restored with the checkpoint. None: every proposal trains.
        scalarize: What the strategy is told as the score of a full-fidelity candidate
            (`nasflow.pareto.Scalarization`: several objectives in one); its value is
            also recorded as the metric ``scalarized``. None: the estimator's score.
        weights: Where candidates' trained weights are kept, for the children that start
            from them (`SearchStrategy.lineage`); None: none are kept, and every
            candidate starts from a fresh initialisation.

    Returns:
        Every candidate in the order it finished, those of a resumed run first.
    """
    full = getattr(estimator, "epochs", None)

    def epoch(task: Task, record: dict[str, Any]) -> None:
        _report_epoch(task, record, full, search)
        on_epoch(task, record)

    executor.on_epoch = epoch
    if weights is not None:
        executor = InheritingExecutor(executor, weights)
    search = _Search(
        strategy,
        estimator,
        executor,
        seed,
        stopping,
        checkpoint,
        resumed,
        on_candidate,
        failure_log,
        screen,
        scalarize,
    )
    if resumed is not None:
        replay, in_flight = resumed.get("round", {}), resumed.get("in_flight", [])
        more = f", and {len(replay)} evaluations of the round in progress" if replay else ""
        more += f", with {len(in_flight)} in flight to run again" if in_flight else ""
        log.info("resuming after %d finished candidates%s", len(search.history), more)
    if estimator.asynchronous:
        _asynchronous(search, resumed, on_start)
    else:
        _rounds(search, resumed)
    return search.history


def _asynchronous(
    search: _Search, resumed: dict[str, Any] | None, on_start: Callable[[Task], None]
) -> None:
    """Keep the executor's slots busy: ask whenever one frees, tell as each finishes."""
    estimator, executor, strategy = search.estimator, search.executor, search.strategy
    in_flight = search.in_flight

    def submit(job: Task) -> None:
        in_flight[job.iteration] = job
        executor.submit(estimator.evaluate_task, estimator.job(job))

    for data in (resumed or {}).get("in_flight", []):
        job = _task_from_json(data, strategy.space)
        on_start(job)
        submit(job)
    search.save()
    search.notify()  # what an interrupted search finished but could not track
    asking = True
    while True:
        while asking and executor.in_flight() < executor.slots:
            if len(search.history) + len(in_flight) >= strategy.budget:
                asking = False
            elif reason := search.stop_reason():
                log.info("stopping after %d candidates: %s", len(search.history), reason)
                asking = False
            elif (task := search.propose()) is None:
                log.info("the strategy has no architectures left to propose")
                asking = False
            else:
                on_start(task)
                submit(estimator.start(task))
                # The strategy has changed by its ask: saved now, with the job it made.
                search.save()
        if not executor.in_flight():
            return
        for job, evaluation in executor.wait():
            result = estimator.advance(job, evaluation)
            if isinstance(result, Task):
                submit(result)
            else:
                del in_flight[job.iteration]
                search.finish(job, result)
            # Saved before the tracker hears of it: a store that fails then costs nothing.
            search.save()
            search.notify()
            search.stopping.check_failures(search.history, search.failure_log)


def _rounds(search: _Search, resumed: dict[str, Any] | None) -> None:
    """Ask a round of proposals, have the estimator run them, tell; round after round."""
    estimator, strategy = search.estimator, search.strategy
    replay = (resumed or {}).get("round", {})
    search.save(done=replay)
    executor = _Round(search.executor, search.checkpoint)
    while len(search.history) < strategy.budget:
        if reason := search.stop_reason():
            log.info("stopping after %d candidates: %s", len(search.history), reason)
            break
        wanted = estimator.round_size(strategy.budget - len(search.history), executor.slots)
        tasks = []
        for _ in range(estimator.proposals(wanted)):
            task = search.propose()
            if task is None:
                break
            tasks.append(task)
        if not tasks:
            log.info("the strategy has no architectures left to propose")
            break
        for task, evaluation in estimator.run(tasks, executor):
            search.finish(task, evaluation)
            search.notify()  # the round's checkpoint has its evaluation already
        # The strategy's state is saved between rounds only (a proposal asked but not yet
        # told would otherwise be lost); within a round, each finished evaluation is.
        search.save()
        search.stopping.check_failures(search.history, search.failure_log)


def _log_failure(log: Path, candidate: Candidate) -> None:
    """Append the candidate's error and traceback to `log`, once: a resumed round hands
    back the failures it had finished, which the interrupted process has logged."""
    evaluation = candidate.evaluation
    entry = f"--- candidate {candidate.iteration} ({candidate.arch.describe()}), "
    entry += f"seed {candidate.seed}: {evaluation.error}\n"
    if log.exists() and entry in log.read_text(errors="replace"):
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as file:
        file.write(f"{entry}{evaluation.traceback or ''}\n")


def _report_epoch(task: Task, record: dict[str, Any], full: int | None, search: _Search) -> None:
    """One line per finished epoch of a running candidate, so that a long one is never
    silent: its metrics, the candidates in flight and the best so far."""
    if not log.isEnabledFor(logging.INFO):
        return
    epochs = full if task.fidelity is None else round(task.fidelity)
    of = f"/{epochs}" if epochs else ""
    metrics = "  ".join(f"{key} {value:.4f}" for key, value in record.items() if key != "epoch")
    running = " ".join(f"#{i + 1}" for i in sorted(search.in_flight))
    best = f"{search.best:.4f}" if search.best is not None else "-"
    log.info(
        "  #%d epoch %d%s  %s  (in flight: %s; best %s)",
        task.iteration + 1,
        int(record.get("epoch", 0)) + 1,
        of,
        metrics,
        running or f"#{task.iteration + 1}",
        best,
    )


def _report(candidate: Candidate, planned: int) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    evaluation = candidate.evaluation
    if evaluation.status == "ok":
        outcome = f"val_acc {evaluation.score:.4f}"
    elif evaluation.status == "stopped":
        outcome = (
            f"val_acc {evaluation.score:.4f} stopped at {evaluation.fidelity:g} epochs "
            f"({evaluation.error})"
        )
    else:
        outcome = f"FAILED ({evaluation.error})"
    best = f"{candidate.best_score:.4f}" if candidate.best_score is not None else "-"
    which = f" (#{candidate.proposal + 1})" if candidate.proposal != candidate.iteration else ""
    log.info(
        "candidate %d/%d%s  %s  best %s  %.1fs  %s",
        candidate.iteration + 1,
        planned,
        which,
        outcome,
        best,
        evaluation.seconds,
        candidate.arch.describe(),
    )


def discrete_search(strategy: SearchStrategy, context: SearchContext) -> SearchOutcome:
    """An ask/tell strategy's search in the search stage: the loop with the context's
    estimator, executor and screen, and its best full-fidelity candidate as the outcome,
    with the front over the context's objectives and the proposals filtered out."""
    space = strategy.space
    log.info(
        "%s search over the %s space (%s architectures), budget %d, on %s",
        strategy.name,
        space.name,
        f"{space.size():,}",
        strategy.budget,
        context.data.info.name,
    )
    tracker = context.tracker
    objectives = front_objectives(context.objectives)
    volume = _HypervolumeLog(objectives, context.reference, context.resumed, space)

    def on_candidate(candidate: Candidate) -> None:
        tracker.log_candidate(candidate, space.graphs(candidate.arch))
        if (hypervolume_now := volume.add(candidate)) is not None:
            tracker.log_metrics({"hypervolume": hypervolume_now}, step=candidate.iteration)

    with context.executor() as executor:
        history = run_search(
            strategy,
            context.estimator(),
            executor,
            context.seed,
            on_candidate,
            context.stopping,
            context.checkpoint,
            context.resumed,
            context.failure_log,
            on_start=tracker.start_candidate,
            on_epoch=tracker.log_epoch,
            screen=context.screen,
            scalarize=context.scalarize,
            weights=context.weights,
        )
    # Only full-fidelity results compete: a stopped candidate's score is partial.
    ok = [c for c in history if c.evaluation.status == "ok" and c.evaluation.score is not None]
    if not ok and context.screen is not None and context.screen.filtered:
        raise NasflowError(
            f"no candidate of {len(history)} was evaluated at full fidelity, and "
            f"{len(context.screen.filtered)} proposals broke search.constraints (the last "
            f"with {context.screen.filtered[-1]['reason']}); loosen them"
        )
    if not ok:
        failed = [c for c in history if c.evaluation.status == "failed"]
        raise NasflowError(
            f"no candidate of {len(history)} was evaluated at full fidelity "
            f"({len(failed)} failed; first error: "
            f"{failed[0].evaluation.error if failed else 'none'})"
        )
    best = max(ok, key=lambda c: c.evaluation.score)  # type: ignore[arg-type,return-value]
    statuses = [c.evaluation.status for c in history]
    summary = {
        "best_score": best.evaluation.score,
        "best_params": best.evaluation.params,
        "best_flops": best.evaluation.flops,
        "evaluated": len(history),
        "full_fidelity": len(ok),
        "stopped": statuses.count("stopped"),
        "failed": statuses.count("failed"),
        "proposals": history[-1].proposals,
        "cost_epochs": history[-1].cost,
        "seconds": round(history[-1].elapsed, 2),
    }
    filtered = list(context.screen.filtered) if context.screen is not None else []
    if context.screen is not None and context.screen.constraints:
        summary["filtered"] = len(filtered)
    pareto = front_records(history, objectives)
    summary["pareto_size"] = len(pareto)
    if volume.reference is not None:
        summary["hypervolume"] = volume.latest
    _log_front(tracker, history, objectives)
    return SearchOutcome(
        filtered=filtered,
        pareto=pareto,
        pareto_objectives=[str(o) for o in objectives],
        arch=best.arch,
        score=float(best.evaluation.score),  # type: ignore[arg-type]
        summary=summary,
        history=[c.to_json() for c in history],
        progress_columns=[
            "iteration",
            "score",
            "best_score",
            "params",
            "seconds",
            "status",
            "cost",
            "total_cost",
        ],
        progress=[
            [
                c.iteration,
                c.evaluation.score if c.evaluation.score is not None else "",
                c.best_score,
                c.evaluation.params,
                round(c.evaluation.seconds, 3),
                c.evaluation.status,
                c.evaluation.cost,
                c.cost,
            ]
            for c in history
        ],
    )


class _HypervolumeLog:
    """The hypervolume of the full-fidelity candidates so far, against `reference` (None:
    not measured), candidate by candidate; a resumed search starts from the candidates
    it had tracked."""

    def __init__(
        self,
        objectives: Sequence[Objective],
        reference: Sequence[float] | None,
        resumed: dict[str, Any] | None,
        space: SearchSpace,
    ) -> None:
        self.objectives = list(objectives)
        self.reference = None if reference is None else list(reference)
        self.maximize = maximize_flags(self.objectives)
        self.points: list[np.ndarray] = []
        self.latest = 0.0
        if resumed is not None and self.reference is not None:
            tracked = resumed["history"][: resumed.get("notified", len(resumed["history"]))]
            for data in tracked:
                self.add(Candidate.from_json(data, space))

    def add(self, candidate: Candidate) -> float | None:
        if self.reference is None:
            return None
        self.points += [vector for _, vector in scored([candidate], self.objectives)]
        if self.points:
            self.latest = hypervolume(np.stack(self.points), self.reference, self.maximize)
        return self.latest


def _log_front(tracker: Any, history: Sequence[Candidate], objectives: Sequence[Objective]) -> None:
    """The front's picture (``pareto.png``) for a tracker that keeps files."""
    if not tracker.keeps_artifacts:
        return
    found = scored(history, objectives)
    if not found:
        return
    import tempfile

    from nasflow.plots import render_pareto

    points = np.stack([vector for _, vector in found])
    maximize = maximize_flags(objectives)
    png = render_pareto(
        points, front_mask(points, maximize), [str(o.name) for o in objectives], maximize
    )
    with tempfile.TemporaryDirectory(prefix="nasflow-pareto-") as folder:
        path = Path(folder) / "pareto.png"
        path.write_bytes(png)
        tracker.log_artifact(str(path))
