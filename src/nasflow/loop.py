"""The search loop: ask the strategy, evaluate through the executor, tell, record.

The loop also decides when a search ends (the strategy's evaluation budget, a wall-clock
limit, or convergence: no better candidate for `patience` evaluations) and, given a
`Checkpoint`, saves the search after every evaluation so that an interrupted search
continues where it stopped and ends exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow.estimators.base import Estimator, Evaluation
from nasflow.executors import Executor, Task
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy

log = logging.getLogger("nasflow.search")


@dataclass
class Candidate:
    """One evaluated architecture, as the history, the tracker and people see it."""

    iteration: int
    arch: Architecture
    seed: int
    evaluation: Evaluation
    best_score: float | None  # the best score of the search so far, this one included
    elapsed: float  # seconds since the search started (resumed searches included)
    strategy_metrics: dict[str, float] = field(default_factory=dict)  # after its `tell`

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
    """

    max_seconds: float | None = None
    patience: int | None = None

    def reason(self, history: list[Candidate], elapsed: float) -> str | None:
        """Why the search should stop now, or None to go on."""
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            return f"the time limit of {self.max_seconds:g}s is reached"
        if self.patience is not None and history and history[-1].best_score is not None:
            best = history[-1].best_score
            since = next(
                (len(history) - 1 - i for i, c in enumerate(history) if c.best_score == best), 0
            )
            if since >= self.patience:
                return f"the best has not improved for {since} evaluations"
        return None


class Checkpoint:
    """An in-progress search on disk: the strategy's state and the finished candidates.

    Saved (atomically: written aside, then renamed) after every evaluation and removed when
    the search completes. `fingerprint` names what the search is (its configuration), so a
    different search never resumes from it.
    """

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.path = Path(folder) / f"search-{fingerprint}.pt"
        self.meta: dict[str, Any] = {}  # saved alongside, e.g. the tracking run to reopen

    def save(self, strategy: SearchStrategy, history: list[Candidate]) -> None:
        state = {
            "strategy": strategy.state_dict(),
            "history": [c.to_json() for c in history],
            "meta": self.meta,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        os.replace(partial, self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none."""
        if not self.path.is_file():
            return None
        # Our own file, holding a strategy's pickled state (an Optuna study, say).
        return torch.load(self.path, weights_only=False)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def run_search(
    strategy: SearchStrategy,
    estimator: Estimator,
    executor: Executor,
    seed: int,
    on_candidate: Callable[[Candidate], None] = lambda _: None,
    stopping: Stopping = Stopping(),
    checkpoint: Checkpoint | None = None,
    resumed: dict[str, Any] | None = None,
) -> list[Candidate]:
    """Run the search until the budget is spent, a stopping rule fires or the strategy has
    nothing left to ask.

    Args:
        strategy: Proposes architectures and learns from their evaluations.
        estimator: Scores an architecture.
        executor: Where the estimator runs.
        seed: The search seed, from which each candidate's training seed is derived.
        on_candidate: Called with every finished candidate (tracking).
        stopping: Time limit and convergence rule.
        checkpoint: Where to save the search after each evaluation; None: nowhere.
        resumed: A state `checkpoint.load()` returned, to continue from. Its candidates are
            not evaluated again, nor passed to `on_candidate` again.

    Returns:
        Every candidate in the order it finished, those of a resumed run first.
    """
    history: list[Candidate] = []
    elapsed_before = 0.0
    if resumed is not None:
        strategy.load_state_dict(resumed["strategy"])
        history = [Candidate.from_json(c, strategy.space) for c in resumed["history"]]
        elapsed_before = history[-1].elapsed if history else 0.0
        log.info("resuming after %d finished candidates", len(history))
    # What "candidate i of N" counts to: the budget, or the whole space if that is smaller.
    planned = min(strategy.budget, strategy.space.size())
    best = history[-1].best_score if history else None
    start = time.perf_counter() - elapsed_before
    issued = len(history)
    while issued < strategy.budget:
        if reason := stopping.reason(history, time.perf_counter() - start):
            log.info("stopping after %d candidates: %s", len(history), reason)
            break
        tasks = []
        for _ in range(min(executor.slots, strategy.budget - issued)):
            arch = strategy.ask()
            if arch is None:
                break
            tasks.append(Task(issued, arch, candidate_seed(seed, issued)))
            issued += 1
        if not tasks:
            log.info("the strategy has no architectures left to propose")
            break
        in_flight = len(tasks)
        for task, evaluation in executor.run(estimator, tasks):
            in_flight -= 1
            strategy.tell(task.arch, evaluation)
            if evaluation.score is not None and (best is None or evaluation.score > best):
                best = evaluation.score
            candidate = Candidate(
                task.iteration,
                task.arch,
                task.seed,
                evaluation,
                best,
                time.perf_counter() - start,
                strategy.metrics(),
            )
            history.append(candidate)
            _report(candidate, planned)
            on_candidate(candidate)
            # Only with nothing in flight is the strategy's state a point to resume from:
            # a task asked but not told would otherwise be lost.
            if checkpoint is not None and in_flight == 0:
                checkpoint.save(strategy, history)
    return history


def _report(candidate: Candidate, planned: int) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    evaluation = candidate.evaluation
    outcome = (
        f"val_acc {evaluation.score:.4f}"
        if evaluation.status == "ok"
        else f"FAILED ({evaluation.error})"
    )
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
