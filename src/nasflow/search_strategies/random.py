"""Random search: the baseline every NAS method has to beat (Li & Talwalkar 2019)."""

from __future__ import annotations

from typing import Any

from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy


class RandomSearch(SearchStrategy):
    """Samples architectures uniformly decision by decision, without repeating one.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds the sampler.
        max_tries: Draws per `ask` before concluding that the space is used up; a repeat
            costs no training, only a draw.
    """

    name = "random"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        max_tries: PositiveInt = 1000,
    ) -> None:
        super().__init__(space, budget, seed)
        self.max_tries = max_tries
        self.seen: set[str] = set()

    def ask(self) -> Architecture | None:
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            if arch.id not in self.seen:
                self.seen.add(arch.id)
                return arch
        return None

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        self.seen.add(arch.id)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": sorted(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.seen = set(state["seen"])
