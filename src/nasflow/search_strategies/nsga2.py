"""NSGA-II (Deb et al. 2002), through Optuna's ask/tell: a genetic algorithm on several
objectives at once.

Each generation of `population_size` children is bred from the best of the previous
generations by NSGA-II's elitist selection (non-dominated rank, then crowding distance)
with uniform crossover and per-decision mutation. Optuna's `NSGAIISampler` does the
selection and the breeding; `OptunaSearch` translates trials and decisions. A trial
still running is simply not a parent yet, so asks may run ahead of tells (parallel
executors) at no cost but a child bred from one generation fewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import optuna
from annotated_types import Interval

from nasflow.errors import NasflowError, check_int
from nasflow.pareto import Objective, multi_objectives, objective_vector
from nasflow.ranges import PositiveInt, Probability, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import SearchSpace
from nasflow.search_strategies.optuna_study import OptunaSearch


class NSGA2Search(OptunaSearch):
    """Optuna's NSGA-II sampler over the space's decisions, on `objectives`.

    A candidate missing an objective (a failed one) is a failed trial, which NSGA-II
    never breeds from.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds Optuna's sampler and the fallback samples.
        objectives: Two or more, e.g. ``[val_acc:max, params:min]`` (`nasflow.pareto`);
            by default ``search.objectives``, and if that is empty the score against the
            parameters.
        population_size: Children per generation; the first generation is random.
        mutation_prob: Chance that a child's decision is drawn afresh instead of
            inherited; None: one over the number of decisions.
        crossover_prob: Chance that a child is bred from two parents rather than copied
            from one.
        swapping_prob: In uniform crossover, the chance of each decision coming from the
            second parent.
        max_tries: Repeated proposals per `ask` before falling back to a random sample.
    """

    name = "nsga2"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        objectives: Sequence[Any] = (),
        population_size: Annotated[int, Interval(ge=2)] = 20,
        mutation_prob: Probability | None = None,
        crossover_prob: Probability = 0.9,
        swapping_prob: Probability = 0.5,
        max_tries: PositiveInt = 20,
    ) -> None:
        super().__init__(space, budget, seed, max_tries)
        check_int("strategy.population_size", population_size, minimum=2)
        for key, value in (
            ("mutation_prob", mutation_prob),
            ("crossover_prob", crossover_prob),
            ("swapping_prob", swapping_prob),
        ):
            if value is not None and not 0 <= value <= 1:
                raise NasflowError(f"strategy.{key} must be between 0 and 1, got {value}")
        self.objectives: list[Objective] = multi_objectives(objectives, self.name)
        self.population_size = population_size
        self.mutation_prob = mutation_prob
        self.crossover_prob = crossover_prob
        self.swapping_prob = swapping_prob
        self.study = self._study()

    def _study(self) -> optuna.Study:
        sampler = optuna.samplers.NSGAIISampler(
            population_size=self.population_size,
            mutation_prob=self.mutation_prob,
            crossover_prob=self.crossover_prob,
            swapping_prob=self.swapping_prob,
            seed=int(self.rng.integers(2**31)),
        )
        directions = [
            optuna.study.StudyDirection.MAXIMIZE
            if o.maximize
            else optuna.study.StudyDirection.MINIMIZE
            for o in self.objectives
        ]
        return optuna.create_study(directions=directions, sampler=sampler)

    def _values(self, evaluation: Evaluation) -> list[float] | None:
        if evaluation.status == "failed":
            return None
        vector = objective_vector(evaluation, self.objectives)
        return None if vector is None else vector.tolist()
