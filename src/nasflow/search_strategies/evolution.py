"""Regularized ("aging") evolution (Real et al., AAAI 2019).

A population of the most recently evaluated architectures is kept. Each new candidate
is a one-decision mutation of the best of a small random tournament from that
population, and when the population is full the *oldest* member leaves, not the worst.
Aging is the regularisation: an architecture survives only by having good descendants,
so a lucky, noisy score cannot dominate the search for ever.

With `inherit_weights`, a mutant starts from its parent's trained weights (weight
inheritance, as Real et al. 2017's large-scale evolution does): it copies every
parameter whose name and shape the mutation left unchanged, and trains on from there.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation, Lineage
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy, check_positive, score_or_worst


class RegularizedEvolution(SearchStrategy):
    """Tournament selection, one-decision mutation and aging, through ask/tell.

    The population is filled with random samples first: `ask` samples at random while
    fewer than `population_size` evaluations have been told, so when several asks run
    ahead of their tells (parallel executors) the extra asks sample too rather than
    mutate a half-built population. A failed evaluation joins the population with the
    worst possible score: it still ages out, but never wins a tournament against a
    member that trained.

    The defaults were chosen on the NAS-Bench-201 table (benchmarks/README.md, "How the
    strategies' defaults were chosen"): tournaments of 5 or more over populations of 10
    to 50 are the same within noise, smaller tournaments fall behind; 20 and 5 sit on
    that plateau while keeping the random phase short for small budgets.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds the tournaments, mutations and samples.
        population_size: How many of the latest evaluated architectures compete.
        sample_size: Members drawn (without replacement) for each tournament; larger is
            greedier, smaller keeps more diversity.
        max_tries: Mutations (and then random samples) per `ask` before concluding that
            no unproposed architecture can be found; a repeat costs a draw, not training.
        inherit_weights: Start each mutant from its parent's trained weights, where the
            search keeps them (the population's, `weights_kept`); False: from scratch.
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        population_size: PositiveInt = 20,
        sample_size: PositiveInt = 5,
        max_tries: PositiveInt = 100,
        inherit_weights: bool = False,
    ) -> None:
        super().__init__(space, budget, seed)
        check_positive("population_size", population_size)
        check_positive("sample_size", sample_size)
        check_positive("max_tries", max_tries)
        if sample_size > population_size:
            raise NasflowError(
                f"strategy.sample_size must be at most population_size ({population_size}), "
                f"got {sample_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self.max_tries = max_tries
        self.inherit_weights = inherit_weights
        self._parents: dict[str, Architecture] = {}  # asked mutants' parents, until `lineage`
        # Oldest first; `maxlen` makes appending to a full population drop its oldest member.
        self.population: deque[tuple[Architecture, float]] = deque(maxlen=population_size)
        self.seen: set[str] = set()  # every architecture proposed or told, by id

    def ask(self) -> Architecture | None:
        if len(self.population) >= self.population_size:
            parent = self._tournament()
            for _ in range(self.max_tries):
                child = self.space.mutate(parent, self.rng)
                if child.id not in self.seen:
                    if self.inherit_weights:
                        self._parents[child.id] = parent
                    return self._propose(child)
        # Filling the population, or every mutation tried was a repeat.
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            if arch.id not in self.seen:
                return self._propose(arch)
        return None

    def lineage(self, arch: Architecture) -> Lineage | None:
        parent = self._parents.pop(arch.id, None)
        return None if parent is None else Lineage(parent)

    def weights_kept(self) -> int:
        # Tournaments draw from the population: its members' weights must still be kept.
        return self.population_size if self.inherit_weights else 0

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        self.seen.add(arch.id)
        self.population.append((arch, score_or_worst(evaluation)))

    def _propose(self, arch: Architecture) -> Architecture:
        self.seen.add(arch.id)
        return arch

    def _tournament(self) -> Architecture:
        """The best of `sample_size` distinct members drawn uniformly; the oldest wins ties."""
        drawn = sorted(self.rng.choice(len(self.population), self.sample_size, replace=False))
        winner = max(drawn, key=lambda i: self.population[i][1])
        return self.population[winner][0]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "population": [(arch.to_json(), score) for arch, score in self.population],
            "seen": sorted(self.seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = deque(
            ((self.space.from_json(data), score) for data, score in state["population"]),
            maxlen=self.population_size,
        )
        self.seen = set(state["seen"])
