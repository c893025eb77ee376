"""Local search: hill climbing over one-decision neighbours, with random restarts.

White et al. (UAI 2021, "Local search is state of the art for neural architecture search
benchmarks") found that this simplest of methods matches or beats far more elaborate
ones on the tabular benchmarks: their landscapes are smooth enough under one-decision
changes that climbing, and restarting at a local optimum, finds the best cells quickly.
"""

from __future__ import annotations

import math
from typing import Any

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy, check_positive, score_or_worst


class LocalSearch(SearchStrategy):
    """Climbs from the best of a few random architectures to a local optimum, then restarts.

    A *start* samples `n_initial` unproposed architectures and climbs from the best.
    The climb evaluates the current architecture's `neighbours` in an order shuffled by
    the strategy's generator; neighbours already evaluated (by an earlier climb, or
    earlier in this one) are not proposed again, their known scores are used. With
    `first_improvement` the climb moves to the first neighbour that beats the current
    architecture; otherwise it evaluates the whole neighbourhood and moves to the best.
    When no neighbour is better, the current architecture is a local optimum and a fresh
    start follows.

    Asks ahead of tells (parallel executors) are handled without waiting: a start keeps
    sampling until `n_initial` of its candidates are told, and a climb whose remaining
    neighbours are all still out proposes unproposed random architectures meanwhile
    (their scores are remembered like any other, and count if they are neighbours of a
    later climb).

    The defaults were chosen on the NAS-Bench-201 table (benchmarks/README.md, "How the
    strategies' defaults were chosen"): first improvement beats best improvement, because
    it moves on after a few neighbours instead of spending 24 queries on each step;
    starting from the best of 3 to 20 random architectures is the same within noise and
    better than from one.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds the samples and the order in which neighbours are tried.
        n_initial: Random architectures evaluated at each start; the climb begins at the
            best of them. 1 starts from a single random architecture.
        first_improvement: Move to the first better neighbour (True) or to the best of
            the whole neighbourhood (False).
        max_tries: Random draws per sample before concluding that no unproposed
            architecture can be found.
    """

    name = "local_search"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        n_initial: PositiveInt = 10,
        first_improvement: bool = True,
        max_tries: PositiveInt = 100,
    ) -> None:
        super().__init__(space, budget, seed)
        check_positive("n_initial", n_initial)
        check_positive("max_tries", max_tries)
        if not isinstance(first_improvement, bool):
            raise NasflowError(
                f"strategy.first_improvement must be true or false, got {first_improvement!r}"
            )
        self.n_initial = n_initial
        self.first_improvement = first_improvement
        self.max_tries = max_tries
        self.proposed: set[str] = set()  # the id of every architecture asked or told
        self.scores: dict[str, float] = {}  # id -> score of every architecture told
        # Architectures travel with their ids: hashing one costs more than the lookups.
        # The candidates of the start being sampled, told in any order.
        self.starting: list[tuple[str, Architecture]] = []
        # The climb: where it stands, every neighbour, and the neighbours not yet tried
        # (tried from the end of the list).
        self.current: tuple[str, Architecture] | None = None
        self.neighbourhood: list[tuple[str, Architecture]] = []
        self.untried: list[tuple[str, Architecture]] = []
        self.restarts = 0

    def ask(self) -> Architecture | None:
        while True:
            if self.current is None:
                if not self._start():
                    return self._sample(self.starting)
                continue
            better = self._better_neighbour()
            if better is not None and self.first_improvement:
                self._climb_to(better)
                continue
            while self.untried:
                key, arch = self.untried.pop()
                if key not in self.proposed:
                    self.proposed.add(key)
                    return arch
            if any(key not in self.scores for key, _ in self.neighbourhood):
                # Some neighbours are still out: explore rather than wait.
                return self._sample(None)
            if better is None:  # a local optimum: start again
                self.current, self.neighbourhood = None, []
                self.restarts += 1
            else:
                self._climb_to(better)

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        key = arch.id
        self.proposed.add(key)
        self.scores[key] = score_or_worst(evaluation)

    def discard(self, arch: Architecture) -> None:
        # Ranked out before training: no better than where the climb stands. A neighbour
        # left unscored would make the climb wait (explore at random) forever.
        key = arch.id
        self.proposed.add(key)
        self.scores[key] = -math.inf
        self.starting = [entry for entry in self.starting if entry[0] != key]

    def metrics(self) -> dict[str, float]:
        return {"restarts": float(self.restarts)}

    def _sample(self, into: list[tuple[str, Architecture]] | None) -> Architecture | None:
        """An unproposed random architecture, also appended to `into`; None if none is found."""
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            key = arch.id
            if key not in self.proposed:
                self.proposed.add(key)
                if into is not None:
                    into.append((key, arch))
                return arch
        return None

    def _start(self) -> bool:
        """Begin climbing at the best start candidate once `n_initial` of them are told.

        Until then the start keeps sampling, so with asks ahead of tells more candidates
        are proposed than compete: one still out when the climb begins is remembered but
        not waited for, as waiting would never end while asks keep running ahead.
        """
        told = [candidate for candidate in self.starting if candidate[0] in self.scores]
        if len(told) < self.n_initial:
            return False
        # max keeps the first of equals: the earliest sampled wins ties.
        best = max(told, key=lambda candidate: self.scores[candidate[0]])
        self.starting = []
        self._climb_to(best)
        return True

    def _better_neighbour(self) -> tuple[str, Architecture] | None:
        """The best told neighbour that beats the current architecture, if any."""
        assert self.current is not None
        best, best_score = None, self.scores[self.current[0]]
        for neighbour in self.neighbourhood:
            score = self.scores.get(neighbour[0])
            if score is not None and score > best_score:
                best, best_score = neighbour, score
        return best

    def _climb_to(self, current: tuple[str, Architecture]) -> None:
        self.current = current
        neighbours = self.space.neighbours(current[1])
        self.neighbourhood = [(arch.id, arch) for arch in neighbours]
        order = self.rng.permutation(len(neighbours))
        self.untried = [self.neighbourhood[i] for i in order]

    def state_dict(self) -> dict[str, Any]:
        def jsons(entries: list[tuple[str, Architecture]]) -> list[Any]:
            return [arch.to_json() for _, arch in entries]

        return {
            **super().state_dict(),
            "proposed": sorted(self.proposed),
            "scores": dict(self.scores),
            "starting": jsons(self.starting),
            "current": None if self.current is None else self.current[1].to_json(),
            "untried": jsons(self.untried),
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)

        def entry(data: Any) -> tuple[str, Architecture]:
            arch = self.space.from_json(data)
            return arch.id, arch

        self.proposed = set(state["proposed"])
        self.scores = dict(state["scores"])
        self.starting = [entry(data) for data in state["starting"]]
        self.current = None if state["current"] is None else entry(state["current"])
        # The neighbourhood is a fixed function of the current architecture.
        self.neighbourhood = []
        if self.current is not None:
            self.neighbourhood = [(a.id, a) for a in self.space.neighbours(self.current[1])]
        self.untried = [entry(data) for data in state["untried"]]
        self.restarts = state["restarts"]
