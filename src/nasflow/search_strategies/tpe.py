"""Tree-structured Parzen estimator (Bergstra et al. 2011), through Optuna's ask/tell.

TPE splits the evaluated architectures into a good fraction and the rest, fits a density
to each decision's labels in both groups and proposes what is likely under the good
density and unlikely under the other. Optuna's `TPESampler` does the modelling; this
class translates between Optuna trials and the space's decisions.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import Trial, TrialState

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy, check_positive


class TPESearch(SearchStrategy):
    """Optuna's TPE sampler, one categorical parameter per decision of the space.

    Each decision the grammar asks is suggested as the parameter of its name over the
    decision's full label set in the space's `catalogue`, because Optuna requires the
    same choices for a name in every trial. Where the grammar offers only some of those
    labels at that point (a constraint of the space; never on NAS-Bench-201), a
    suggestion it does not offer is replaced by the offered label nearest to it in the
    catalogue's order, the earlier one on a tie: deterministic, and for ordered labels
    (widths, depths) the closest value. Optuna then keeps the suggested label in its
    record of the trial, so it learns a little less sharply about constrained decisions.

    Optuna samples with its own generator, seeded from this strategy's and saved with
    the study. An architecture Optuna proposes again is not evaluated again: its trial is
    told the known score (or, if that evaluation is still out, the score once it comes)
    and Optuna is asked again, up to `max_tries` times; then an unproposed random
    architecture is proposed instead and recorded as a trial of its own when told. A
    failed evaluation is told to Optuna as a failed trial, which TPE leaves out.

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
        super().__init__(space, budget, seed)
        check_positive("n_startup_trials", n_startup_trials)
        check_positive("n_ei_candidates", n_ei_candidates)
        check_positive("max_tries", max_tries)
        for key, value in (("multivariate", multivariate), ("constant_liar", constant_liar)):
            if not isinstance(value, bool):
                raise NasflowError(f"strategy.{key} must be true or false, got {value!r}")
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.n_ei_candidates = n_ei_candidates
        self.constant_liar = constant_liar
        self.max_tries = max_tries
        self.choices = {decision.name: decision.choices for decision in space.catalogue()}
        self.study = optuna.create_study(direction="maximize", sampler=self._sampler())
        self.scores: dict[str, float | None] = {}  # id -> score of every told architecture
        # id -> the numbers of the trials waiting for that architecture's evaluation; an
        # empty list for a fallback sample, which becomes a trial only when told.
        self.pending: dict[str, list[int]] = {}

    def _sampler(self) -> optuna.samplers.TPESampler:
        options: dict[str, Any] = {
            "seed": int(self.rng.integers(2**31)),
            "n_startup_trials": self.n_startup_trials,
            "multivariate": self.multivariate,
            "n_ei_candidates": self.n_ei_candidates,
            "constant_liar": self.constant_liar,
        }
        if _optuna_version() < (4, 9):
            # Before 4.9 a multivariate sampler logs a warning for every decision outside
            # the decisions all trials share (any variable-length space); later it is
            # off by default and the argument deprecated.
            options["warn_independent_sampling"] = False
        with warnings.catch_warnings():
            # `multivariate` and `constant_liar` were "experimental" in older releases.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(**options)

    def ask(self) -> Architecture | None:
        for _ in range(self.max_tries):
            trial = self.study.ask()
            arch = self._suggest(trial)
            key = arch.id
            if key in self.pending:  # still being evaluated: this trial waits for it too
                self.pending[key].append(trial.number)
            elif key in self.scores:
                self._tell(trial.number, self.scores[key])
            else:
                self.pending[key] = [trial.number]
                return arch
        # Optuna keeps returning to what it knows: propose something new instead.
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            key = arch.id
            if key not in self.pending and key not in self.scores:
                self.pending[key] = []
                return arch
        return None

    def discard(self, arch: Architecture) -> None:
        # Its trials end as failed, which TPE leaves out of both densities; the
        # architecture may be proposed again later.
        for number in self.pending.pop(arch.id, []):
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        key = arch.id
        score = None if evaluation.status == "failed" else evaluation.score
        self.scores[key] = score
        trials = self.pending.pop(key, [])
        for number in trials:
            self._tell(number, score)
        if not trials:  # a fallback sample, or an architecture this study never proposed
            params = self._params(arch)
            self.study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={
                        name: CategoricalDistribution(self.choices[name]) for name in params
                    },
                    value=score,
                    state=TrialState.FAIL if score is None else TrialState.COMPLETE,
                )
            )

    def _tell(self, number: int, score: float | None) -> None:
        if score is None:
            self.study.tell(number, state=TrialState.FAIL)
        else:
            self.study.tell(number, score)

    def _suggest(self, trial: Trial) -> Architecture:
        """Run the grammar, answering each decision with the trial's suggestion."""
        grammar = self.space.grammar()
        decision = next(grammar)
        while True:
            suggested = trial.suggest_categorical(decision.name, self.choices[decision.name])
            label = _nearest_offered(suggested, self.choices[decision.name], decision.choices)
            try:
                decision = grammar.send(label)
            except StopIteration as done:
                return done.value

    def _params(self, arch: Architecture) -> dict[str, str]:
        """The architecture's labels by decision name, as a trial records them."""
        labels = self.space.to_labels(arch)
        grammar = self.space.grammar()
        params = {}
        decision = next(grammar)
        for label in labels:
            params[decision.name] = label
            try:
                decision = grammar.send(label)
            except StopIteration:
                break
        return params

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            # The study holds every trial and the sampler with its generator's state.
            "study": pickle.dumps(self.study),
            "scores": dict(self.scores),
            "pending": {key: list(numbers) for key, numbers in self.pending.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.study = pickle.loads(state["study"])
        self.scores = dict(state["scores"])
        self.pending = {key: list(numbers) for key, numbers in state["pending"].items()}


def _nearest_offered(label: str, catalogue: Sequence[str], offered: Sequence[str]) -> str:
    """`label` if offered, else the offered label nearest to it in the catalogue's order."""
    if label in offered:
        return label
    position = catalogue.index(label)
    return min(offered, key=lambda c: (abs(catalogue.index(c) - position), catalogue.index(c)))


def _optuna_version() -> tuple[int, int]:
    major, minor = optuna.__version__.split(".")[:2]
    return int(major), int(minor)
