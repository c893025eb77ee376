"""The one interface between the search stage and any strategy: what a search is given
(`SearchContext`) and what it gives back (`SearchOutcome`).

An ask/tell strategy runs the search loop with an estimator and an executor; a one-shot
strategy trains its supernet once. The stage does not tell them apart: it builds the
context, calls ``strategy.run(context)``, and writes the outcome the same way for both,
so retrain and evaluate read one format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nasflow.constraints import Screen
    from nasflow.estimators.base import Estimator
    from nasflow.executors import Executor
    from nasflow.inheritance import WeightStore
    from nasflow.loop import Checkpoint, Stopping
    from nasflow.pareto import Objective
    from nasflow.search_spaces.base import Architecture, SearchSpace
    from nasflow.tracking.base import Tracker
    from nasflow.training.data import InMemoryData
    from nasflow.training.trainer import TrainerFactory


@dataclass
class SearchContext:
    """What the search stage hands a strategy, built from the configuration.

    Attributes:
        data: The train and val splits (never the test split).
        trainer: Builds a Lightning Trainer (a Hydra `_partial_`).
        tracker: The open search run.
        seed: The search seed (each candidate's seed derives from it).
        estimator: Builds the configured estimator (only ask/tell strategies use one).
        executor: Builds the configured executor.
        stopping: The search's limits besides its budget.
        checkpoint: Where an interruptible search saves itself.
        resumed: What `checkpoint` held when the stage started, to continue from.
        failure_log: Where failed candidates' tracebacks go.
        on_epoch: Called with each epoch's record of a one-shot search (after logging).
        screen: Measures proposals before training and filters out those that break
            ``search.constraints`` (None: no constraints, no cheap measures needed).
        objectives: What the front is over (``search.objectives``, or the score against
            the parameters).
        reference: The hypervolume's reference point, one value per objective; None:
            no hypervolume is logged.
        scalarize: What a single-objective strategy is told instead of the score
            (``search.scalarize``); None: the score.
        weights: Where candidates' trained weights are kept for children to inherit
            (``search.keep_weights``); None: none are.
    """

    data: InMemoryData
    trainer: TrainerFactory
    tracker: Tracker
    seed: int
    estimator: Callable[[], Estimator]
    executor: Callable[[], Executor]
    stopping: Stopping
    checkpoint: Checkpoint
    resumed: dict[str, Any] | None = None
    failure_log: Path | None = None
    on_epoch: Callable[[dict[str, Any]], None] = lambda record: None
    screen: Screen | None = None
    objectives: list[Objective] = field(default_factory=list)
    reference: list[float] | None = None
    scalarize: Callable[[Any], float | None] | None = None
    weights: WeightStore | None = None


@dataclass
class SearchOutcome:
    """What a finished search found and recorded, in the stage's output format.

    Attributes:
        arch: The best (or derived) architecture: what retrain trains.
        score: Its search score (validation accuracy, or the estimator's score).
        summary: The stage's DVC metrics (summary.json).
        history: One JSON record per candidate or per supernet epoch (history.jsonl).
        progress_columns: The header of progress.csv (a DVC plot of `best_score`).
        progress: Its rows.
        filtered: The proposals filtered out before training, with their reasons
            (filtered.jsonl).
        pareto: The non-dominated candidates over the context's objectives, each with
            its objectives by name (pareto.json, pareto.csv).
        pareto_objectives: Those objectives, as ``name:max`` or ``name:min``.
    """

    arch: Architecture
    score: float
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    progress_columns: list[str]
    progress: list[list[Any]] = field(default_factory=list)
    filtered: list[dict[str, Any]] = field(default_factory=list)
    pareto: list[dict[str, Any]] = field(default_factory=list)
    pareto_objectives: list[str] = field(default_factory=list)  # "name:max", the front's


class Searcher(Protocol):
    """What the stage needs of a strategy, of either kind."""

    name: str
    space: SearchSpace

    def run(self, context: SearchContext) -> SearchOutcome:
        """Search with what `context` offers; the outcome is written by the stage."""
