"""What the strategies built on an Optuna sampler share: a study asked and told trial by
trial, one categorical parameter per decision of the space.

`OptunaSearch` translates between Optuna trials and the space's decisions, answers an
architecture Optuna proposes again from what it already knows, and saves the study (with
its sampler's generator) for an exact resume. A subclass says which sampler and which
directions: TPE (`nasflow.search_strategies.tpe`), NSGA-II
(`nasflow.search_strategies.nsga2`).
"""

from __future__ import annotations

import io
import pickle
import threading
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import Trial, TrialState

from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy, check_positive


class OptunaSearch(SearchStrategy):
    """An Optuna study behind ask/tell; the subclass builds the study (`_study`) and says
    what a trial is told (`_values`).

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
    told the known values (or, if that evaluation is still out, the values once they
    come) and Optuna is asked again, up to `max_tries` times; then an unproposed random
    architecture is proposed instead and recorded as a trial of its own when told. A
    failed evaluation is told to Optuna as a failed trial, which its samplers leave out.
    """

    study: optuna.Study  # built by the subclass, once its settings are set (`_study`)

    def __init__(self, space: SearchSpace, budget: int, seed: int, max_tries: int) -> None:
        super().__init__(space, budget, seed)
        check_positive("max_tries", max_tries)
        self.max_tries = max_tries
        self.choices = {decision.name: decision.choices for decision in space.catalogue()}
        self.scores: dict[str, list[float] | None] = {}  # id -> what each told one was told
        # id -> the numbers of the trials waiting for that architecture's evaluation; an
        # empty list for a fallback sample, which becomes a trial only when told.
        self.pending: dict[str, list[int]] = {}

    @abstractmethod
    def _study(self) -> optuna.Study:
        """A new study with this strategy's sampler (seeded from `self.rng`)."""

    def _values(self, evaluation: Evaluation) -> list[float] | None:
        """What a trial is told of `evaluation`: one value per direction of the study, or
        None for a failed trial. Here: the score, the one direction being maximize."""
        if evaluation.status == "failed" or evaluation.score is None:
            return None
        return [float(evaluation.score)]

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
        score = self._values(evaluation)
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
                    values=score,
                    state=TrialState.FAIL if score is None else TrialState.COMPLETE,
                )
            )

    def _tell(self, number: int, score: list[float] | None) -> None:
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
            "study": _pickle_study(self.study),
            "scores": dict(self.scores),
            "pending": {key: list(numbers) for key, numbers in self.pending.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.study = pickle.loads(state["study"])
        self.scores = dict(state["scores"])
        self.pending = {key: list(numbers) for key, numbers in state["pending"].items()}


_LOCK = type(threading.Lock())


class _StudyPickler(pickle.Pickler):
    """Pickles a study whose sampler holds a thread lock, as Optuna 5.1's genetic samplers
    (NSGA-II) do: a lock has no state worth keeping, so a fresh one is unpickled."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _LOCK):
            return threading.Lock, ()
        return NotImplemented


def _pickle_study(study: optuna.Study) -> bytes:
    buffer = io.BytesIO()
    _StudyPickler(buffer).dump(study)
    return buffer.getvalue()


def _nearest_offered(label: str, catalogue: Sequence[str], offered: Sequence[str]) -> str:
    """`label` if offered, else the offered label nearest to it in the catalogue's order."""
    if label in offered:
        return label
    position = catalogue.index(label)
    return min(offered, key=lambda c: (abs(catalogue.index(c) - position), catalogue.index(c)))


def optuna_version() -> tuple[int, int]:
    major, minor = optuna.__version__.split(".")[:2]
    return int(major), int(minor)
