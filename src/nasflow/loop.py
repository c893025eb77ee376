"""The search loop: ask the strategy, evaluate through the executor, tell, record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasflow.estimators.base import Estimator, Evaluation
from nasflow.executors import Executor, Task
from nasflow.search_spaces.base import Architecture
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
    elapsed: float  # seconds since the search started

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
        }


def candidate_seed(seed: int, iteration: int) -> int:
    """The training seed of the `iteration`-th candidate: independent of what ran before,
    so a resumed or parallel search trains each candidate exactly as a sequential one."""
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0])


def run_search(
    strategy: SearchStrategy,
    estimator: Estimator,
    executor: Executor,
    seed: int,
    on_candidate: Callable[[Candidate], None] = lambda _: None,
) -> list[Candidate]:
    """Run the search until the budget is spent or the strategy has nothing left to ask.

    Args:
        strategy: Proposes architectures and learns from their evaluations.
        estimator: Scores an architecture.
        executor: Where the estimator runs.
        seed: The search seed, from which each candidate's training seed is derived.
        on_candidate: Called with every finished candidate (tracking, checkpoints).

    Returns:
        Every candidate in the order it finished.
    """
    history: list[Candidate] = []
    # What "candidate i of N" counts to: the budget, or the whole space if that is smaller.
    planned = min(strategy.budget, strategy.space.size())
    best: float | None = None
    start = time.perf_counter()
    issued = 0
    while issued < strategy.budget:
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
        for task, evaluation in executor.run(estimator, tasks):
            strategy.tell(task.arch, evaluation)
            if evaluation.score is not None and (best is None or evaluation.score > best):
                best = evaluation.score
            candidate = Candidate(
                task.iteration, task.arch, task.seed, evaluation, best, time.perf_counter() - start
            )
            history.append(candidate)
            _report(candidate, planned)
            on_candidate(candidate)
    return history


def _report(candidate: Candidate, planned: int) -> None:
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
