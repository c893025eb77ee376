"""The ask/tell contract every search strategy follows.

The search loop asks a strategy for an architecture, has it evaluated (by whichever
estimator and executor are configured) and tells the strategy the result. A strategy
never trains anything itself and owns all of its randomness through one seeded
`numpy.random.Generator`, so its whole state can be saved and restored.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from nasflow.errors import check_int
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation, Lineage
from nasflow.registry import STRATEGIES, Component
from nasflow.search_spaces.base import Architecture, SearchSpace

if TYPE_CHECKING:
    from nasflow.searching import SearchContext, SearchOutcome


class SearchStrategy(Component, ABC):
    """Proposes architectures of `space` and learns from their evaluations.

    Args:
        space: The search space to propose from.
        budget: The most evaluations the search may spend (the loop enforces it).
        seed: Seeds the strategy's only random generator.
    """

    registry = STRATEGIES

    def __init__(self, space: SearchSpace, budget: PositiveInt, seed: Seed = 0) -> None:
        check_int("strategy.budget", budget)
        self.space = space
        self.budget = budget
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self) -> Architecture | None:
        """The next architecture to evaluate, or None when the strategy has nothing left."""

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        """Learn from an evaluation. Strategies that do not learn need not override this."""

    def discard(self, arch: Architecture) -> None:
        """Forget a proposal that will never be evaluated: a pre-filter ranked it out.

        The strategy is not told why, nor what ranked it; it must not wait for a `tell`
        that never comes. Strategies that keep nothing per proposal need not override it.
        """

    def lineage(self, arch: Architecture) -> Lineage | None:
        """The parent whose trained weights `arch`, just asked, starts from (and how it
        derives from it), or None for a fresh initialisation, as most strategies' do.

        The loop asks once, right after `ask`. A parent is an architecture the strategy
        has been told; its weights reach the child only while the search keeps them
        (`weights_kept`), otherwise the child trains from scratch.
        """
        return None

    def weights_kept(self) -> int:
        """How many candidates' trained weights the search should keep (the best and the
        most recent that many each) for `lineage` to name its parents among them; 0 for a
        strategy that names none."""
        return 0

    def metrics(self) -> dict[str, float]:
        """What the strategy itself learnt by its latest `tell`, e.g. a controller's reward,
        baseline, entropy and loss; logged with each iteration. Empty for most strategies."""
        return {}

    def run(self, context: SearchContext) -> SearchOutcome:
        """The search stage's entry (`nasflow.searching`): the search loop, asking and
        telling this strategy, with the context's estimator and executor."""
        # The loop builds on this module, so it is imported when a search runs.
        from nasflow.loop import discrete_search

        return discrete_search(self, context)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this strategy exactly where it stands.

        Saved after every evaluation (with ``torch.save``, so tensors and picklable objects
        are fine) and handed back to `load_state_dict` of a freshly built strategy with the
        same settings when an interrupted search resumes: the resumed strategy must then
        propose exactly what the uninterrupted one would have.
        """
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


def score_or_worst(evaluation: Evaluation) -> float:
    """The evaluation's score, the worst possible one if it failed."""
    return -math.inf if evaluation.score is None else float(evaluation.score)


def check_positive(key: str, value: object) -> None:
    """NasflowError unless `value`, the setting ``strategy.<key>``, is a positive integer."""
    check_int(f"strategy.{key}", value)
