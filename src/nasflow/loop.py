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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow.errors import NasflowError
from nasflow.estimators.base import Estimator
from nasflow.executors import Executor
from nasflow.records import EvaluateFn, Evaluation, Task
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy
from nasflow.searching import SearchContext, SearchOutcome

log = logging.getLogger("nasflow.search")


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
    of proposals and the finished candidates as of the start of the current round, and
    every evaluation the round has finished since.

    Saved (atomically: written aside, then renamed) when the search starts and after every
    evaluation, and removed when the search completes. A resumed search restores the
    round's start, asks the same proposals again and replays the evaluations the round
    had finished, so a kill costs at most the trainings in flight, even inside a round of
    successive halving. `fingerprint` names what the search is (its configuration), so a
    different search never resumes from it.
    """

    #: Bumped when the file's layout changes: an older file is refused, not misread.
    FORMAT = 2

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.path = Path(folder) / f"search-{fingerprint}.pt"
        self.meta: dict[str, Any] = {}  # saved alongside, e.g. the tracking run to reopen
        self._start: dict[str, Any] = {}  # the round's start, frozen
        self.round: dict[str, dict[str, Any]] = {}  # the round's finished evaluations

    def save(
        self,
        strategy: SearchStrategy,
        history: list[Candidate],
        estimator: Estimator | None = None,
        proposals: int | None = None,
        done: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Save the search as it stands between rounds: the next round starts here, with
        `done` (a resumed round's finished evaluations) already finished."""
        self._start = {
            # Pickled now: the strategy's and estimator's objects change during the round.
            "strategy": pickle.dumps(strategy.state_dict()),
            "estimator": pickle.dumps(estimator.state_dict() if estimator is not None else {}),
            "proposals": len(history) if proposals is None else proposals,
            "history": [c.to_json() for c in history],
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
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise NasflowError(f"{self.path} is corrupt ({reason}); {fresh}") from None
        return state

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _task_key(evaluate: EvaluateFn, task: Task) -> str:
    """What identifies an evaluation within a round: the proposal, its fidelity and what
    evaluates it (a pre-filter's proxy and the training after it are two evaluations)."""
    owner = getattr(evaluate, "__self__", None)
    name = getattr(evaluate, "__qualname__", type(evaluate).__qualname__)
    if owner is not None:
        name = f"{type(owner).__qualname__}.{getattr(evaluate, '__name__', name)}"
    return f"{name}:{task.iteration}@{task.fidelity}"


class _Recorded(Executor):
    """The executor of a round, as the checkpoint sees it: each evaluation is recorded as
    it finishes, and one that a resumed round had already finished is handed back at once
    instead of being run again (only for the same architecture: anything else means the
    strategy did not propose what it did before, and the task runs)."""

    def __init__(self, inner: Executor, checkpoint: Checkpoint) -> None:
        self.inner = inner
        self.checkpoint = checkpoint
        self.slots = inner.slots

    def run(self, evaluate: EvaluateFn, tasks: Sequence[Task]) -> Iterator[tuple[Task, Evaluation]]:
        todo = []
        for task in tasks:
            done = self.checkpoint.round.get(_task_key(evaluate, task))
            if done is not None and done["arch_id"] == task.arch.id:
                yield task, Evaluation.from_json(done["evaluation"])
            else:
                todo.append(task)
        for task, evaluation in self.inner.run(evaluate, todo):
            self.checkpoint.record(_task_key(evaluate, task), task, evaluation)
            yield task, evaluation


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
) -> list[Candidate]:
    """Run the search until the budget is spent, a stopping rule fires or the strategy has
    nothing left to ask.

    The search goes in rounds: the estimator says how many evaluations the next round
    makes (`Estimator.round_size`) and how many proposals that takes
    (`Estimator.proposals`); the loop asks the strategy for them and hands them to the
    estimator's `run`, which evaluates them through the executor. Every proposal comes
    back: evaluated ones are told to the strategy and become candidates (the budget counts
    them); filtered ones are discarded (`SearchStrategy.discard`).

    Args:
        strategy: Proposes architectures and learns from their evaluations.
        estimator: Scores an architecture.
        executor: Where the estimator runs.
        seed: The search seed, from which each proposal's seed is derived.
        on_candidate: Called with every finished candidate (tracking).
        stopping: Time limit, cost limit and convergence rule.
        checkpoint: Where to save the search after each round; None: nowhere.
        resumed: A state `checkpoint.load()` returned, to continue from. Its candidates are
            not evaluated again, nor passed to `on_candidate` again.
        failure_log: Where the traceback of every failed candidate is appended; None:
            nowhere.

    Returns:
        Every candidate in the order it finished, those of a resumed run first.
    """
    history: list[Candidate] = []
    elapsed_before = 0.0
    proposed = 0
    replay: dict[str, dict[str, Any]] = {}
    if resumed is not None:
        strategy.load_state_dict(resumed["strategy"])
        estimator.load_state_dict(resumed.get("estimator", {}))
        history = [Candidate.from_json(c, strategy.space) for c in resumed["history"]]
        proposed = resumed.get("proposals", len(history))
        elapsed_before = history[-1].elapsed if history else 0.0
        replay = resumed.get("round", {})
        more = f", and {len(replay)} evaluations of the round in progress" if replay else ""
        log.info("resuming after %d finished candidates%s", len(history), more)
    if checkpoint is not None:
        checkpoint.save(strategy, history, estimator, proposed, done=replay)
        round_executor: Executor = _Recorded(executor, checkpoint)
    else:
        round_executor = executor
    # What "candidate i of N" counts to: the budget, or the whole space if that is smaller.
    planned = min(strategy.budget, strategy.space.size())
    best = history[-1].best_score if history else None
    cost = history[-1].cost if history else 0.0
    start = time.perf_counter() - elapsed_before
    while len(history) < strategy.budget:
        if reason := stopping.reason(history, time.perf_counter() - start):
            log.info("stopping after %d candidates: %s", len(history), reason)
            break
        wanted = estimator.round_size(strategy.budget - len(history), round_executor.slots)
        tasks = []
        for _ in range(estimator.proposals(wanted)):
            arch = strategy.ask()
            if arch is None:
                break
            tasks.append(Task(proposed, arch, candidate_seed(seed, proposed)))
            proposed += 1
        if not tasks:
            log.info("the strategy has no architectures left to propose")
            break
        for task, evaluation in estimator.run(tasks, round_executor):
            if evaluation.status == "filtered":
                strategy.discard(task.arch)
                continue
            strategy.tell(task.arch, evaluation)
            cost += evaluation.cost
            # Only full-fidelity scores compete: a stopped candidate's score is partial.
            if evaluation.status == "ok" and evaluation.score is not None:
                best = evaluation.score if best is None else max(best, evaluation.score)
            candidate = Candidate(
                len(history),
                task.arch,
                task.seed,
                evaluation,
                best,
                time.perf_counter() - start,
                strategy.metrics(),
                cost,
                proposed,
            )
            history.append(candidate)
            _report(candidate, planned)
            if evaluation.status == "failed" and failure_log is not None:
                _log_failure(failure_log, candidate)
            on_candidate(candidate)
        # The strategy's state is saved between rounds only (a proposal asked but not yet
        # told would otherwise be lost); within a round, each finished evaluation is.
        if checkpoint is not None:
            checkpoint.save(strategy, history, estimator, proposed)
        stopping.check_failures(history, failure_log)
    return history


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
    log.info(
        "candidate %d/%d  %s  best %s  %.1fs  %s",
        candidate.iteration + 1,
        planned,
        outcome,
        best,
        evaluation.seconds,
        candidate.arch.describe(),
    )


def discrete_search(strategy: SearchStrategy, context: SearchContext) -> SearchOutcome:
    """An ask/tell strategy's search in the search stage: the loop with the context's
    estimator and executor, and its best full-fidelity candidate as the outcome."""
    space = strategy.space
    log.info(
        "%s search over the %s space (%s architectures), budget %d, on %s",
        strategy.name,
        space.name,
        f"{space.size():,}",
        strategy.budget,
        context.data.info.name,
    )
    history = run_search(
        strategy,
        context.estimator(),
        context.executor(),
        context.seed,
        lambda candidate: context.tracker.log_candidate(candidate, space.graphs(candidate.arch)),
        context.stopping,
        context.checkpoint,
        context.resumed,
        context.failure_log,
    )
    # Only full-fidelity results compete: a stopped candidate's score is partial.
    ok = [c for c in history if c.evaluation.status == "ok" and c.evaluation.score is not None]
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
    return SearchOutcome(
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
