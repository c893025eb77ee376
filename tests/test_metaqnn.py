"""MetaQNN's mechanics: the paper's Q-update, its ε schedule scaled to the budget, reused
scores for repeats, and the chain's MetaQNN states. What every learning strategy must do
(seeding, exact resume, no repeats, failures) is in test_learning_strategies.py."""

from __future__ import annotations

import numpy as np
import pytest

from nasflow.records import Evaluation
from nasflow.search_spaces import ChainSpace, NB201Architecture, NB201Space
from nasflow.search_strategies.metaqnn import PAPER, MetaQNN, _updates

NB201 = NB201Space()


def convs(arch: NB201Architecture) -> float:
    """Fraction of the six edges that carry a 3x3 convolution."""
    return arch.edges.count("nor_conv_3x3") / 6


def test_one_update_is_the_paper_s_backward_q_learning_step() -> None:
    agent = MetaQNN(NB201, budget=10, seed=0, learning_rate=0.5, replay=1)
    _, episode = agent._episode(epsilon=1.0)
    agent._update(_updates(episode), reward=0.9)
    # Backwards from the last decision: Q <- Q + lr (target - Q), the last target the
    # reward, each earlier one the best Q-value offered at the next decision.
    expected, target = {}, 0.9
    for i in range(len(episode) - 1, -1, -1):
        state, offered, label = episode[i]
        expected[state, label] = 0.5 + 0.5 * (target - 0.5)
        target = max(expected.get((state, o), 0.5) for o in offered)
    assert agent.q == pytest.approx(expected)
    assert agent.q[episode[-1][0], episode[-1][2]] == pytest.approx(0.7)
    assert agent.q[episode[-2][0], episode[-2][2]] == pytest.approx(0.6)


def test_epsilon_follows_the_paper_s_schedule_scaled_to_the_budget() -> None:
    # A tenth of the paper's 2,700 networks.
    agent = MetaQNN(
        NB201,
        budget=270,
        seed=0,
        epsilons=PAPER["epsilons"],
        epsilon_models=PAPER["epsilon_models"],
    )
    seen = []
    for _ in range(270):
        seen.append(agent.epsilon)
        agent.ask()
    counts = {e: seen.count(e) for e in dict.fromkeys(seen)}
    assert counts == {
        1.0: 150, 0.9: 10, 0.8: 10, 0.7: 10, 0.6: 15, 0.5: 15, 0.4: 15, 0.3: 15, 0.2: 15, 0.1: 15
    }  # fmt: skip
    assert agent.metrics()["epsilon"] == 0.1


def test_a_repeat_reuses_its_score_and_is_never_proposed_again() -> None:
    space = ChainSpace(min_layers=1, max_layers=1, filters=[4], kernel_sizes=[1, 3], skip=False)
    agent = MetaQNN(space, budget=100, seed=0, epsilons=[0.0], epsilon_models=[1])
    proposed = []
    while (arch := agent.ask()) is not None:
        proposed.append(arch.id)
        agent.tell(arch, Evaluation(status="ok", score=0.1 * len(proposed)))
    assert len(proposed) == len(set(proposed)) == space.size()
    # Greedy from the start: after the first architecture every episode repeats the best
    # so far until its reused score has been replayed below an untried option's.
    assert len(agent.memory) > space.size()
    assert set(agent.scores) == set(proposed)


@pytest.mark.parametrize("seed", range(3))
def test_the_agent_learns_to_exploit_what_scored_best(seed: int) -> None:
    """On a landscape where 3x3 convolutions score (accuracies from 0.5 to 0.9, so the
    paper's initial Q of 0.5 is below every score), the greedy walk after 100 evaluations
    puts a 3x3 convolution on at least 4 of the 6 edges (1.2 by chance, 4 or more in 2 %
    of uniform draws), and the last 30 proposals carry more of them than uniform ones."""
    agent = MetaQNN(NB201, budget=100, seed=seed)
    late = []
    for i in range(100):
        arch = agent.ask()
        assert isinstance(arch, NB201Architecture)
        agent.tell(arch, Evaluation(status="ok", score=0.5 + 0.4 * convs(arch)))
        if i >= 70:
            late.append(convs(arch))
    greedy, _ = agent._episode(epsilon=0.0)
    assert isinstance(greedy, NB201Architecture)
    assert greedy.edges.count("nor_conv_3x3") >= 4
    assert np.mean(late) > 0.3  # uniform: 0.2 with a standard error of 0.03
    metrics = agent.metrics()
    assert metrics["q_spread"] > 0 and metrics["q_max"] > 0.5


@pytest.mark.parametrize("ties", ["greedy", "random"])
def test_exploration_changes_a_decision_and_ties_follow_the_greedy_episode(ties: str) -> None:
    """After one architecture, the rest of the table is unvisited: every tie there goes to
    the greedy episode's op (one change per exploratory step), or at random (the paper's:
    an exploratory step redraws every later edge)."""
    agent = MetaQNN(NB201, budget=10, seed=0, learning_rate=1.0, ties=ties)  # type: ignore[arg-type]
    first = agent.ask()
    assert isinstance(first, NB201Architecture)
    agent.tell(first, Evaluation(status="ok", score=0.9))
    greedy, _ = agent._episode(epsilon=0.0)
    assert greedy == first
    distances = []
    for _ in range(300):
        arch, _ = agent._episode(epsilon=0.1)
        assert isinstance(arch, NB201Architecture)
        distances.append(sum(a != b for a, b in zip(arch.edges, first.edges, strict=True)))
    # Greedy ties: each of 6 edges changes with probability 0.1 * 4/5, 0.48 in all. Random
    # ties: the first change redraws the edges after it, about 1.4 in all.
    if ties == "greedy":
        assert np.mean(distances) < 0.7
    else:
        assert np.mean(distances) > 1.0


def test_the_paper_s_settings_reproduce_random_tie_breaking() -> None:
    agent = MetaQNN(NB201, budget=10, seed=0, **PAPER)
    assert (agent.learning_rate, agent.ties, agent.epsilon) == (0.01, "random", 1.0)


def test_a_failure_is_rewarded_as_the_worst_score_seen() -> None:
    agent = MetaQNN(NB201, budget=10, seed=0)
    first, second = agent.ask(), agent.ask()
    assert first is not None and second is not None
    agent.tell(first, Evaluation(status="ok", score=0.3))
    agent.tell(second, Evaluation.failure(RuntimeError("out of memory")))
    assert agent.scores[second.id] == 0.3


@pytest.mark.parametrize("seed", range(5))
def test_a_chain_state_fixes_the_options_offered_next(seed: int) -> None:
    """MetaQNN's summary of a chain prefix (depth, layer, representation size, previous
    layer) must not merge prefixes the grammar treats differently."""
    space = ChainSpace(max_layers=5, max_pooling=2)
    rng = np.random.default_rng(seed)
    offered: dict[tuple, tuple[str, ...]] = {}
    for _ in range(200):
        labels = space.to_labels(space.sample(rng))
        for i in range(len(labels)):
            state = space.agent_state(labels[:i])
            choices = space.next_decision(labels[:i]).choices  # type: ignore[union-attr]
            assert offered.setdefault(state, choices) == choices, (state, labels[:i])
    assert len(offered) < 2000  # a summary: far fewer states than prefixes


def test_bad_schedules_are_refused() -> None:
    from nasflow.errors import NasflowError

    with pytest.raises(NasflowError, match="one count per rate"):
        MetaQNN(NB201, budget=10, epsilons=[1.0, 0.5], epsilon_models=[10])
    with pytest.raises(NasflowError, match="ties"):
        MetaQNN(NB201, budget=10, ties="first")  # type: ignore[arg-type]
