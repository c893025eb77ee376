"""Multi-objective regularized evolution (MO-REA, as Syne Tune adapts Real et al.).

Regularized evolution with a vector of objectives in place of the score: the population
is the latest `population_size` finished candidates, the oldest leaves, and each new
candidate mutates the winner of a tournament. A lower non-dominated rank (over the whole
population) wins the tournament; within a rank, by default (``selection=crowding``),
NSGA-II's crowded comparison: the member in the less crowded part of its front (larger
crowding distance) wins, so parents spread along the front instead of piling up at one
end. With ``selection=hypervolume`` (SMS-EMOA's indicator, Beume et al. 2007) the
member whose loss would cost its front the most hypervolume up to the reference point
wins: parents come from where the front counts, never from beyond the reference.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nasflow.errors import NasflowError
from nasflow.pareto import (
    Objective,
    crowding_distance,
    hypervolume_contributions,
    maximize_flags,
    multi_objectives,
    objective_vector,
    pareto_ranks,
    reference_point,
)
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.evolution import RegularizedEvolution

SELECTIONS = ("crowding", "hypervolume")


class MultiObjectiveEvolution(RegularizedEvolution):
    """Regularized evolution on several objectives: tournaments by rank, then crowding.

    A failed candidate (or one missing an objective) joins the population behind every
    member that has all its objectives: it ages out and never wins a tournament against
    one of them. Everything else is `RegularizedEvolution`'s: the random phase, the
    one-decision mutations, aging, resuming.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds the tournaments, mutations and samples.
        objectives: Two or more, e.g. ``[val_acc:max, params:min]`` (`nasflow.pareto`);
            by default ``search.objectives``, and if that is empty the score against the
            parameters.
        population_size: How many of the latest evaluated architectures compete.
        sample_size: Members drawn (without replacement) for each tournament.
        max_tries: Mutations (then random samples) per `ask` before giving up.
        selection: What decides a tournament between members of one rank: ``crowding``
            (crowding distance) or ``hypervolume`` (hypervolume contribution up to
            `reference`).
        reference: The reference point, a value per objective; by default
            ``search.reference``. Needed by ``selection=hypervolume`` only.
    """

    name = "mo_evolution"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        objectives: Sequence[Any] = (),
        population_size: PositiveInt = 20,
        sample_size: PositiveInt = 5,
        max_tries: PositiveInt = 100,
        selection: str = "crowding",
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(space, budget, seed, population_size, sample_size, max_tries)
        self.objectives: list[Objective] = multi_objectives(objectives, self.name)
        if selection not in SELECTIONS:
            raise NasflowError(
                f"strategy.selection={selection} is not a selection; choose from "
                f"{', '.join(SELECTIONS)}"
            )
        self.selection = selection
        self.reference = None
        if selection == "hypervolume":
            self.reference = reference_point(reference, self.objectives, "search.reference")
        self.maximize = maximize_flags(self.objectives)
        # Oldest first: (architecture, its objective vector or None when it has none).
        self.members: deque[tuple[Architecture, np.ndarray | None]] = deque(maxlen=population_size)
        self.population = self.members  # type: ignore[assignment]  # what `ask` counts

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        self.seen.add(arch.id)
        vector = objective_vector(evaluation, self.objectives)
        self.members.append((arch, None if evaluation.status == "failed" else vector))

    def _tournament(self) -> Architecture:
        """The best of `sample_size` distinct members drawn uniformly, by the crowded
        comparison over the whole population; the oldest wins a tie."""
        drawn = sorted(self.rng.choice(len(self.members), self.sample_size, replace=False))
        keys = self._crowded_keys()
        winner = min(drawn, key=lambda i: keys[i])
        return self.members[winner][0]

    def _crowded_keys(self) -> list[tuple[float, float]]:
        """(rank, -crowding distance or -hypervolume contribution) of each member:
        smaller is better."""
        scored = [i for i, (_, v) in enumerate(self.members) if v is not None]
        keys = [(np.inf, 0.0)] * len(self.members)
        if not scored:
            return keys
        points = np.stack([self.members[i][1] for i in scored])  # type: ignore[misc]
        ranks = pareto_ranks(points, self.maximize)
        for rank in np.unique(ranks):
            same = np.flatnonzero(ranks == rank)
            if self.reference is None:
                crowding = crowding_distance(points[same])
            else:
                crowding = hypervolume_contributions(points[same], self.reference, self.maximize)
            for position, distance in zip(same, crowding, strict=True):
                keys[scored[position]] = (float(rank), -float(distance))
        return keys

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["population"] = [
            (arch.to_json(), None if vector is None else vector.tolist())
            for arch, vector in self.members
        ]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.members = deque(
            (
                (self.space.from_json(data), None if v is None else np.array(v, dtype=float))
                for data, v in state["population"]
            ),
            maxlen=self.population_size,
        )
        self.population = self.members  # type: ignore[assignment]
        self.seen = set(state["seen"])
