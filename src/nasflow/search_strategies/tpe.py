"""Tree-structured Parzen estimator (Bergstra et al. 2011), through Optuna's ask/tell.

TPE splits the evaluated architectures into a good fraction and the rest, fits a density
to each decision's labels in both groups and proposes what is likely under the good
density and unlikely under the other. Optuna's `TPESampler` does the modelling; this
class translates between Optuna trials and the space's decisions.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt, Seed
from nasflow.search_spaces.base import SearchSpace
from nasflow.search_strategies.base import check_positive
from nasflow.search_strategies.optuna_study import OptunaSearch, optuna_version


class TPESearch(OptunaSearch):
    """Optuna's TPE sampler, one categorical parameter per decision of the space.

    The trials, repeats and resume are `OptunaSearch`'s.

    The defaults were chosen on the NAS-Bench-201 table (benchmarks/README.md, "How the
    strategies' defaults were chosen"): the number of startup trials and of candidates
    matters little there; independent (not multivariate) TPE is no better and much
    slower, as it proposes known architectures far more often.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds Optuna's sampler and the fallback samples.
        n_startup_trials: Trials sampled at random before TPE starts modelling.
        multivariate: Model the decisions jointly (True) rather than each on its own.
        n_ei_candidates: Candidates TPE draws from the good density per proposal, keeping
            the one with the best ratio of good to bad density.
        constant_liar: Treat proposals still being evaluated as bad, so that asks ahead
            of tells (parallel executors) spread out instead of repeating each other.
        max_tries: Repeated proposals per `ask` before falling back to a random sample.
    """

    name = "tpe"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        n_startup_trials: PositiveInt = 10,
        multivariate: bool = True,
        n_ei_candidates: PositiveInt = 24,
        constant_liar: bool = True,
        max_tries: PositiveInt = 20,
    ) -> None:
        super().__init__(space, budget, seed, max_tries)
        check_positive("n_startup_trials", n_startup_trials)
        check_positive("n_ei_candidates", n_ei_candidates)
        for key, value in (("multivariate", multivariate), ("constant_liar", constant_liar)):
            if not isinstance(value, bool):
                raise NasflowError(f"strategy.{key} must be true or false, got {value!r}")
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.n_ei_candidates = n_ei_candidates
        self.constant_liar = constant_liar
        self.study = self._study()

    def _study(self) -> optuna.Study:
        return optuna.create_study(direction="maximize", sampler=self._sampler())

    def _sampler(self) -> optuna.samplers.TPESampler:
        options: dict[str, Any] = {
            "seed": int(self.rng.integers(2**31)),
            "n_startup_trials": self.n_startup_trials,
            "multivariate": self.multivariate,
            "n_ei_candidates": self.n_ei_candidates,
            "constant_liar": self.constant_liar,
        }
        if optuna_version() < (4, 9):
            # Before 4.9 a multivariate sampler logs a warning for every decision outside
            # the decisions all trials share (any variable-length space); later it is
            # off by default and the argument deprecated.
            options["warn_independent_sampling"] = False
        with warnings.catch_warnings():
            # `multivariate` and `constant_liar` were "experimental" in older releases.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(**options)
