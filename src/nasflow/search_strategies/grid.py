"""Grid search: every architecture of a finite space, in a fixed order."""

from __future__ import annotations

from itertools import islice
from typing import Any

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt, Seed
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy


class GridSearch(SearchStrategy):
    """Enumerates the space depth-first; refuses a space larger than its budget.

    Grid search draws nothing at random: the seed only matters to the training of the
    candidates, which the estimator derives from it.
    """

    name = "grid"

    def __init__(self, space: SearchSpace, budget: PositiveInt, seed: Seed = 0) -> None:
        super().__init__(space, budget, seed)
        size = space.size()
        if size > budget:
            raise NasflowError(
                f"grid search over search_space '{space.name}' needs {size:,} evaluations "
                f"but strategy.budget is {budget:,}; raise the budget or shrink the space"
            )
        self.size = size
        self.position = 0
        self._order = space.enumerate()

    def ask(self) -> Architecture | None:
        arch = next(self._order, None)
        self.position += 1
        return arch

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.position = state["position"]
        # The order is deterministic, so the position alone says where to continue.
        self._order = islice(self.space.enumerate(), self.position, None)
