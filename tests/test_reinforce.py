"""REINFORCE with an LSTM controller, through the ask/tell interface."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

import nasflow.search_spaces  # noqa: F401  (registers every space)
from nasflow.errors import NasflowError
from nasflow.records import Evaluation
from nasflow.search_spaces import Architecture, ChainSpace, NB201Space, SearchSpace
from nasflow.search_spaces.nb201 import OPS, NB201Architecture
from nasflow.search_strategies.reinforce import Reinforce

METRICS = {"reward", "baseline", "entropy", "policy_loss", "updates"}


def ok(score: float) -> Evaluation:
    return Evaluation(status="ok", score=score)


def fake(arch: Architecture) -> Evaluation:
    """A score that is a fixed function of the architecture's hash."""
    return ok(int(arch.id, 16) / 16**16)


def run(strategy: Reinforce, n: int, score=fake) -> tuple[list[str], list[dict[str, float]]]:
    """n asks, each told at once; the ids proposed and the metrics after each tell."""
    ids, metrics = [], []
    for _ in range(n):
        arch = strategy.ask()
        assert arch is not None
        strategy.tell(arch, score(arch))
        ids.append(arch.id)
        metrics.append(strategy.metrics())
    return ids, metrics


@pytest.mark.parametrize("name", sorted(SearchSpace.registry))
def test_proposals_are_valid_and_new_in_every_space(name: str) -> None:
    space = SearchSpace.registry[name].tiny()
    strategy = Reinforce(space, budget=12, seed=0, batch_size=4)
    archs = []
    for _ in range(12):
        arch = strategy.ask()
        assert arch is not None
        space.validate(arch)
        strategy.tell(arch, fake(arch))
        archs.append(arch)
    assert len({a.id for a in archs}) == 12
    assert set(strategy.metrics()) == METRICS  # three updates ran, whatever the space


def test_variable_length_sequences_are_learnt_from() -> None:
    # The chain's depth decides how many decisions follow: batches mix lengths.
    space = ChainSpace(min_layers=1, max_layers=4)
    strategy = Reinforce(space, budget=30, seed=1, batch_size=6)
    ids, metrics = run(strategy, 30)
    assert len(set(ids)) == 30
    assert metrics[-1]["updates"] == 5
    assert all(math.isfinite(v) for v in metrics[-1].values())


def test_no_repeats_until_the_space_is_used_up() -> None:
    space = ChainSpace(min_layers=1, max_layers=2, ops=["conv"], filters=[8], kernel_sizes=[3])
    size = space.size()
    strategy = Reinforce(space, budget=100, seed=0, batch_size=2)
    ids, _ = run(strategy, size)
    assert len(set(ids)) == size
    assert strategy.ask() is None


def test_asks_may_run_ahead_of_their_tells() -> None:
    strategy = Reinforce(NB201Space.tiny(), budget=40, seed=0, batch_size=4)
    ids = []
    for _ in range(8):
        archs = [strategy.ask() for _ in range(5)]  # five workers
        for arch in reversed(archs):  # finishing in any order
            assert arch is not None
            strategy.tell(arch, fake(arch))
            ids.append(arch.id)
    assert len(set(ids)) == 40
    assert strategy.metrics()["updates"] == 10
    assert not strategy.pending


def test_failures_are_rewarded_as_the_worst_seen() -> None:
    strategy = Reinforce(NB201Space.tiny(), budget=10, seed=0, batch_size=3)
    for evaluation in (ok(0.5), ok(0.2), Evaluation(status="failed", error="boom")):
        arch = strategy.ask()
        assert arch is not None
        strategy.tell(arch, evaluation)
    assert strategy.metrics()["reward"] == pytest.approx((0.5 + 0.2 + 0.2) / 3)


def test_a_run_of_failures_does_not_blow_up_the_next_update() -> None:
    # Every reward of the first batch is the same (0), so their spread is 0.
    strategy = Reinforce(NB201Space.tiny(), budget=20, seed=0, batch_size=4)
    run(strategy, 4, lambda _: Evaluation(status="failed", error="boom"))
    assert strategy.metrics()["reward"] == 0.0
    _, metrics = run(strategy, 8)
    assert all(math.isfinite(v) for v in metrics[-1].values())
    assert abs(metrics[-1]["policy_loss"]) < 10
    assert run(strategy, 4)[0]  # still proposing


def test_an_architecture_it_did_not_propose_can_be_told() -> None:
    space = NB201Space.tiny()
    strategy = Reinforce(space, budget=10, seed=0, batch_size=1)
    arch = NB201Architecture(("nor_conv_3x3",) * 6)
    strategy.tell(arch, Evaluation(status="ok", score=0.9))
    assert strategy.metrics()["updates"] == 1
    assert arch.id not in {a.id for a in (strategy.ask() for _ in range(20)) if a}


def test_samples_follow_the_controller_and_leave_the_search_alone() -> None:
    """`sample` (what ENAS trains on): the controller's distribution, repeats allowed,
    from the generator given, without proposing anything."""
    space = NB201Space.tiny()
    strategy = Reinforce(space, budget=10, seed=0)
    before = strategy.state_dict()
    samples = strategy.sample(5, torch.Generator().manual_seed(0))
    for sample in samples:
        space.validate(sample.arch)
        assert sample.log_prob == pytest.approx(strategy.log_probability(sample.arch), abs=1e-5)
        assert 0 < sample.entropy <= 6 * math.log(5) + 1e-6
    again = strategy.sample(5, torch.Generator().manual_seed(0))
    assert [s.arch for s in again] == [s.arch for s in samples]
    greedy = strategy.sample(2, greedy=True)
    assert greedy[0].arch == greedy[1].arch
    after = strategy.state_dict()
    assert after["seen"] == before["seen"] == [] and not after["pending"]
    assert torch.equal(after["generator"], before["generator"])  # its own was not used
    small = ChainSpace(min_layers=1, max_layers=2, ops=["conv"], filters=[8], kernel_sizes=[3])
    drawn = Reinforce(small, budget=10, seed=0).sample(small.size() + 1)
    assert len({s.arch.id for s in drawn}) <= small.size()  # repeats, where `ask` has none


def test_the_controller_learns_the_rewarded_sequence() -> None:
    # One rewarded label per decision; the score counts how many a cell has.
    space = NB201Space.tiny()
    target = tuple(OPS[i % len(OPS)] for i in range(6))
    best = NB201Architecture(target)

    def score(arch: Architecture) -> Evaluation:
        assert isinstance(arch, NB201Architecture)
        matches = sum(op == wanted for op, wanted in zip(arch.edges, target, strict=True))
        return ok(matches / 6)

    strategy = Reinforce(space, budget=150, seed=0)
    before = strategy.log_probability(best)
    assert before == pytest.approx(6 * math.log(1 / 5), abs=0.5)  # close to uniform
    _, metrics = run(strategy, 150, score)
    after = strategy.log_probability(best)
    # The reward of each update's batch. Later batches cannot all be `best` (no repeats),
    # but they stay near it: the controller retries at rising temperatures.
    rewards = [m["reward"] for i, m in enumerate(metrics) if (i + 1) % strategy.batch_size == 0]
    assert after > before + math.log(100)  # a hundred times likelier
    assert np.mean(rewards[-5:]) > rewards[0] + 0.2
    assert metrics[-1]["entropy"] < metrics[strategy.batch_size - 1]["entropy"]


def test_metrics_appear_with_the_first_update() -> None:
    strategy = Reinforce(NB201Space.tiny(), budget=10, seed=0, batch_size=3)
    _, metrics = run(strategy, 3)
    assert metrics[0] == metrics[1] == {}
    assert set(metrics[2]) == METRICS and metrics[2]["updates"] == 1
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics[2].values())


def test_seeded_runs_reproduce() -> None:
    def proposals(seed: int) -> list[str]:
        return run(Reinforce(NB201Space.tiny(), budget=20, seed=seed, batch_size=4), 20)[0]

    assert proposals(3) == proposals(3)
    assert proposals(3) != proposals(4)


def test_global_random_state_is_left_alone() -> None:
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state(legacy=False)
    run(Reinforce(NB201Space.tiny(), budget=10, seed=0, batch_size=3), 10)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert str(np.random.get_state(legacy=False)) == str(numpy_state)


@pytest.mark.parametrize("ahead", [1, 3])
def test_resume_proposes_exactly_what_the_uninterrupted_search_would(ahead: int) -> None:
    # `ahead` asks before their tells, so with 3 the snapshot holds pending asks too.
    def settings(seed: int) -> Reinforce:
        return Reinforce(ChainSpace(min_layers=1, max_layers=3), 40, seed=seed, batch_size=5)

    def go(strategy: Reinforce, n: int) -> list[tuple[str, dict[str, float]]]:
        done: list[tuple[str, dict[str, float]]] = []
        while len(done) < n:
            archs = [strategy.ask() for _ in range(min(ahead, n - len(done)))]
            for arch in archs:
                assert arch is not None
                strategy.tell(arch, fake(arch))
                done.append((arch.id, strategy.metrics()))
        return done

    strategy = settings(5)
    first = go(strategy, 17)
    pending = [strategy.ask() for _ in range(ahead - 1)]  # asked, not yet told
    buffer = io.BytesIO()
    torch.save(strategy.state_dict(), buffer)
    buffer.seek(0)
    resumed = settings(999)  # everything that matters comes from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # plain data only

    def finish(s: Reinforce) -> list[tuple[str, dict[str, float]]]:
        done: list[tuple[str, dict[str, float]]] = []
        for arch in pending:
            assert arch is not None
            s.tell(arch, fake(arch))
            done.append((arch.id, s.metrics()))
        return done + go(s, 23 - len(pending))

    assert len(first) == 17
    assert finish(resumed) == finish(strategy)
    assert resumed.state_dict()["seen"] == strategy.state_dict()["seen"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("batch_size", True),
        ("learning_rate", 0.0),
        ("learning_rate", -1e-3),
        ("learning_rate", float("nan")),
        ("entropy_weight", -0.1),
        ("baseline_decay", 1.0),
        ("baseline_decay", -0.5),
        ("hidden_size", 0),
        ("init_range", -1.0),
        ("max_tries", 0),
    ],
)
def test_bad_settings_are_refused(key: str, value: object) -> None:
    with pytest.raises(NasflowError, match=rf"strategy\.{key} must be .*got {value!r}"):
        Reinforce(NB201Space.tiny(), budget=10, **{key: value})  # type: ignore[arg-type]
