"""The strategies that learn (regularized evolution, local search, TPE, REINFORCE and any
other registered one): their mechanics, resume and settings.

Scores are fixed functions of the architecture (its hash, or how many NB201 edges carry
a 3x3 convolution), so every test runs in milliseconds without training anything.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from optuna.trial import TrialState

from nasflow.errors import NasflowError
from nasflow.records import Evaluation
from nasflow.registry import STRATEGIES as REGISTERED
from nasflow.search_spaces import (
    Architecture,
    ChainSpace,
    NB201Architecture,
    NB201Space,
    SearchSpace,
)
from nasflow.search_strategies.base import SearchStrategy
from nasflow.search_strategies.evolution import RegularizedEvolution
from nasflow.search_strategies.local_search import LocalSearch
from nasflow.search_strategies.optuna_study import _nearest_offered
from nasflow.search_strategies.tpe import TPESearch
from tests.conftest import discrete_strategies

NB201 = NB201Space()
SMALL = ChainSpace(min_layers=2, max_layers=3, kernel_sizes=[3])  # 216 architectures
# Every registered strategy that learns from what it is told (plugins' included); REINFORCE
# has the same and more in test_reinforce.py.
STRATEGIES: list[type[SearchStrategy]] = [
    cls
    for name in discrete_strategies()
    if (cls := REGISTERED[name]).tell is not SearchStrategy.tell
]
Score = Callable[[Architecture], float]


def hashed(arch: Architecture) -> float:
    """A rugged landscape: a fixed pseudo-random score per architecture."""
    return int(arch.id, 16) / 16**16


def convs(arch: Architecture) -> float:
    """A smooth NB201 landscape: 3x3 convolutions count, the hash only breaks ties."""
    assert isinstance(arch, NB201Architecture)
    return arch.edges.count("nor_conv_3x3") + 0.1 * hashed(arch)


def ok(score: float) -> Evaluation:
    return Evaluation(status="ok", score=score)


def run(strategy: SearchStrategy, n: int, score: Score = hashed) -> list[Architecture]:
    """`n` sequential asks and tells; stops early if the strategy runs dry."""
    proposed = []
    for _ in range(n):
        arch = strategy.ask()
        if arch is None:
            break
        strategy.tell(arch, ok(score(arch)))
        proposed.append(arch)
    return proposed


def differences(a: Architecture, b: Architecture) -> int:
    """How many of two NB201 cells' edges differ."""
    assert isinstance(a, NB201Architecture) and isinstance(b, NB201Architecture)
    return sum(x != y for x, y in zip(a.edges, b.edges, strict=True))


# -- every strategy ----------------------------------------------------------------------


@pytest.mark.parametrize("space_name", sorted(SearchSpace.registry))
@pytest.mark.parametrize("cls", STRATEGIES)
def test_proposes_distinct_valid_architectures_in_every_space(
    cls: type[SearchStrategy], space_name: str
) -> None:
    space = SearchSpace.registry[space_name].tiny()
    strategy = cls(space, budget=25, seed=0)
    archs = run(strategy, 25)
    assert len(archs) == len({a.id for a in archs}) == 25
    for arch in archs:
        space.validate(arch)


@pytest.mark.parametrize("cls", STRATEGIES)
def test_is_seeded(cls: type[SearchStrategy]) -> None:
    first = [a.id for a in run(cls(NB201, budget=30, seed=1), 30)]
    again = [a.id for a in run(cls(NB201, budget=30, seed=1), 30)]
    other = [a.id for a in run(cls(NB201, budget=30, seed=2), 30)]
    assert first == again != other


@pytest.mark.parametrize("at", [5, 17])
@pytest.mark.parametrize("round_trip", ["deepcopy", "pickle"])
@pytest.mark.parametrize("space", ["nb201", "chain"])
@pytest.mark.parametrize("cls", STRATEGIES)
def test_resumes_exactly_after_any_tell(
    cls: type[SearchStrategy], space: str, round_trip: str, at: int
) -> None:
    # The small chain space makes repeats common, so forgetting what was proposed shows.
    searched, score = (NB201, convs) if space == "nb201" else (SMALL, hashed)
    original = cls(searched, budget=40, seed=3)
    run(original, at, score)
    state = original.state_dict()
    state = copy.deepcopy(state) if round_trip == "deepcopy" else pickle.loads(pickle.dumps(state))
    resumed = cls(searched, budget=40, seed=3)
    resumed.load_state_dict(state)
    rest = 40 - at
    assert [a.id for a in run(resumed, rest, score)] == [a.id for a in run(original, rest, score)]


@pytest.mark.parametrize("cls", STRATEGIES)
def test_resumes_exactly_with_asks_still_out(cls: type[SearchStrategy]) -> None:
    """Three asks ahead of their tells, as a parallel executor runs them; the snapshot is
    taken while two evaluations are still out and both copies are told the same results."""

    def parallel(strategy: SearchStrategy, rounds: int, out: list[Architecture]) -> list[str]:
        proposed = []
        for _ in range(rounds):
            while len(out) < 3:
                arch = strategy.ask()
                assert arch is not None
                out.append(arch)
                proposed.append(arch.id)
            done = out.pop(0)
            strategy.tell(done, ok(convs(done)))
        return proposed

    original = cls(NB201, budget=60, seed=4)
    out: list[Architecture] = []
    parallel(original, 17, out)
    resumed = cls(NB201, budget=60, seed=4)
    resumed.load_state_dict(copy.deepcopy(original.state_dict()))
    resumed_out = list(out)
    assert parallel(resumed, 20, resumed_out) == parallel(original, 20, out)


@pytest.mark.parametrize("cls", STRATEGIES)
def test_never_repeats_and_stops_when_the_space_is_used_up(cls: type[SearchStrategy]) -> None:
    space = ChainSpace(min_layers=1, max_layers=2, ops=["conv"], filters=[8], kernel_sizes=[3])
    strategy = cls(space, budget=50, seed=0)
    archs = run(strategy, 50)
    assert len({a.id for a in archs}) == len(archs) == space.size()
    assert strategy.ask() is None


@pytest.mark.parametrize("cls", STRATEGIES)
def test_a_failed_evaluation_does_not_stop_the_search(cls: type[SearchStrategy]) -> None:
    strategy = cls(NB201, budget=30, seed=0)
    archs = []
    for i in range(30):
        arch = strategy.ask()
        assert arch is not None
        failed = i % 3 == 0
        strategy.tell(arch, Evaluation(status="failed") if failed else ok(convs(arch)))
        archs.append(arch)
    assert len({a.id for a in archs}) == 30


# -- regularized evolution ---------------------------------------------------------------


def test_evolution_samples_the_population_then_mutates_tournament_winners() -> None:
    strategy = RegularizedEvolution(NB201, budget=100, seed=0, population_size=8, sample_size=8)
    run(strategy, 8, convs)
    assert len(strategy.population) == 8
    for _ in range(30):
        # A tournament over the whole population always picks its best member.
        best = max(strategy.population, key=lambda member: member[1])[0]
        child = strategy.ask()
        assert child is not None and differences(child, best) == 1
        strategy.tell(child, ok(convs(child)))


def test_evolution_ages_out_the_oldest_member_first() -> None:
    strategy = RegularizedEvolution(NB201, budget=100, seed=0, population_size=6, sample_size=2)
    told: list[Architecture] = []
    for _ in range(20):
        arch = strategy.ask()
        assert arch is not None
        # Scores fall with age, so aging (not the worst-first removal) decides who leaves.
        strategy.tell(arch, ok(-len(told)))
        told.append(arch)
        assert len(strategy.population) == min(len(told), 6)
        assert [member for member, _ in strategy.population] == told[-6:]


def test_evolution_counts_a_failure_as_the_worst_score() -> None:
    strategy = RegularizedEvolution(NB201, budget=100, seed=0, population_size=5, sample_size=5)
    archs = [strategy.ask() for _ in range(5)]
    for i, arch in enumerate(archs):
        assert arch is not None
        strategy.tell(arch, ok(-100.0) if i == 2 else Evaluation(status="failed"))
    child = strategy.ask()
    assert child is not None and differences(child, archs[2]) == 1  # type: ignore[arg-type]


def test_evolution_keeps_sampling_while_the_population_is_being_filled() -> None:
    strategy = RegularizedEvolution(NB201, budget=100, seed=0, population_size=4, sample_size=2)
    early = [strategy.ask() for _ in range(10)]  # more asks than members, none told yet
    assert all(a is not None for a in early) and len({a.id for a in early if a}) == 10
    # They are random samples: drawn exactly as a sampler with the same seed draws them.
    rng = np.random.default_rng(0)
    assert [a.id for a in early if a] == [NB201.sample(rng).id for _ in range(10)]


# -- local search ------------------------------------------------------------------------


def test_local_search_climbs_a_smooth_landscape_to_its_top() -> None:
    # Any cell short of six 3x3 convolutions has a better neighbour, so the climb that
    # starts at a random cell reaches the top without a restart.
    strategy = LocalSearch(NB201, budget=1000, seed=0, n_initial=1)
    for _ in range(1000):
        arch = strategy.ask()
        assert arch is not None and strategy.restarts == 0
        strategy.tell(arch, ok(convs(arch)))
        if convs(arch) >= 6:
            return
    pytest.fail("the climb did not reach the cell of six 3x3 convolutions")


def test_local_search_moves_to_the_first_better_neighbour() -> None:
    strategy = LocalSearch(NB201, budget=200, seed=1, n_initial=1, first_improvement=True)
    start = strategy.ask()
    assert start is not None
    strategy.tell(start, ok(convs(start)))
    current, path = start, [start]
    for _ in range(60):
        arch = strategy.ask()
        assert arch is not None
        if strategy.restarts:
            break
        assert differences(arch, current) == 1  # a neighbour of the current architecture
        strategy.tell(arch, ok(convs(arch)))
        if convs(arch) > convs(current):
            current = arch
            path.append(arch)
    assert [convs(a) for a in path] == sorted(convs(a) for a in path)
    assert len(path) > 1


def test_local_search_best_improvement_tries_the_whole_neighbourhood_first() -> None:
    strategy = LocalSearch(NB201, budget=200, seed=2, n_initial=1, first_improvement=False)
    start = strategy.ask()
    assert start is not None
    strategy.tell(start, ok(convs(start)))
    neighbourhood = {a.id for a in NB201.neighbours(start)}
    tried = run(strategy, len(neighbourhood), convs)
    assert {a.id for a in tried} == neighbourhood
    best = max(tried, key=convs)
    following = strategy.ask()
    assert strategy.current is not None and strategy.current[1] == best
    assert following is not None and differences(following, best) == 1


def test_local_search_restarts_at_a_local_optimum() -> None:
    strategy = LocalSearch(NB201, budget=300, seed=0, n_initial=3)
    scores: dict[str, float] = {}
    for _ in range(300):
        before, restarts = strategy.current, strategy.restarts
        arch = strategy.ask()
        assert arch is not None
        if strategy.restarts > restarts:
            # The climb stood on a local optimum: every neighbour told, none better.
            assert before is not None
            neighbours = NB201.neighbours(before[1])
            assert all(n.id in scores for n in neighbours)
            assert all(scores[n.id] <= scores[before[0]] for n in neighbours)
            assert all(differences(arch, n) != 0 for n in neighbours)
            return
        scores[arch.id] = hashed(arch)
        strategy.tell(arch, ok(scores[arch.id]))
    pytest.fail("a rugged landscape should have a local optimum within 300 queries")


def test_local_search_starts_from_the_best_of_its_initial_samples() -> None:
    strategy = LocalSearch(NB201, budget=100, seed=0, n_initial=5)
    initial = run(strategy, 5, convs)
    following = strategy.ask()
    best = max(initial, key=convs)
    assert following is not None and differences(following, best) == 1


def test_local_search_explores_while_a_neighbourhood_is_still_out() -> None:
    strategy = LocalSearch(NB201, budget=100, seed=0, n_initial=1)
    run(strategy, 1, convs)
    out = [strategy.ask() for _ in range(30)]  # the 24 neighbours, then 6 random samples
    assert all(a is not None for a in out) and len({a.id for a in out if a}) == 30


def test_local_search_starts_climbing_while_asks_run_ahead_of_tells() -> None:
    """Three evaluations always out: the start must not wait for all its candidates."""
    strategy = LocalSearch(NB201, budget=100, seed=0, n_initial=5)
    out: list[Architecture] = []
    best = 0.0
    for _ in range(100):
        while len(out) < 3:
            arch = strategy.ask()
            assert arch is not None
            out.append(arch)
        done = out.pop(0)
        strategy.tell(done, ok(convs(done)))
        best = max(best, convs(done))
    assert strategy.current is not None and best >= 5


# -- TPE ---------------------------------------------------------------------------------


def test_tpe_learns_a_simple_landscape_better_than_chance() -> None:
    rng = np.random.default_rng(0)
    chance = np.mean([convs(NB201.sample(rng)) for _ in range(200)])  # about 1.2
    late = [convs(a) for a in run(TPESearch(NB201, budget=60, seed=0), 60, convs)[30:]]
    assert np.mean(late) > chance + 1.5


def test_tpe_tells_optuna_repeats_without_proposing_them_again() -> None:
    space = ChainSpace(min_layers=1, max_layers=2, ops=["conv"], filters=[8, 16], kernel_sizes=[3])
    strategy = TPESearch(space, budget=50, seed=0, n_startup_trials=2)
    archs = run(strategy, 5)
    trials = strategy.study.trials
    assert len(trials) > len(archs)  # Optuna asked for known ones and was told their scores
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_tpe_tells_a_failed_evaluation_as_a_failed_trial() -> None:
    strategy = TPESearch(NB201, budget=10, seed=0)
    arch = strategy.ask()
    assert arch is not None
    strategy.tell(arch, Evaluation(status="failed", error="boom"))
    assert [t.state for t in strategy.study.trials] == [TrialState.FAIL]


def test_tpe_maps_a_label_the_grammar_does_not_offer_to_the_nearest_offered() -> None:
    catalogue = ("8", "16", "32", "64")
    assert _nearest_offered("32", catalogue, ("8", "16", "32")) == "32"
    assert _nearest_offered("64", catalogue, ("8", "16", "32")) == "32"
    assert _nearest_offered("16", catalogue, ("8", "32")) == "8"  # a tie: the earlier
    assert _nearest_offered("8", catalogue, ("32", "64")) == "32"


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "settings", "message"),
    [
        (RegularizedEvolution, {"population_size": 0}, r"strategy\.population_size must be a"),
        (RegularizedEvolution, {"sample_size": -1}, r"strategy\.sample_size must be a positive"),
        (RegularizedEvolution, {"population_size": 2.5}, r"population_size must be a positive"),
        (RegularizedEvolution, {"population_size": 4, "sample_size": 5}, r"at most .*\(4\), got 5"),
        (LocalSearch, {"n_initial": 0}, r"strategy\.n_initial must be a positive integer, got 0"),
        (LocalSearch, {"first_improvement": "yes"}, r"first_improvement must be true or false"),
        (TPESearch, {"n_startup_trials": 0}, r"strategy\.n_startup_trials must be a positive"),
        (TPESearch, {"multivariate": 1}, r"strategy\.multivariate must be true or false"),
        (TPESearch, {"n_ei_candidates": True}, r"n_ei_candidates must be a positive integer"),
    ],
)
def test_bad_settings_are_refused(cls: type[SearchStrategy], settings: dict, message: str) -> None:
    with pytest.raises(NasflowError, match=message):
        cls(NB201, budget=10, seed=0, **settings)
