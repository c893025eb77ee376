"""MetaQNN: a Q-learning agent that designs networks decision by decision (Baker et al.,
ICLR 2017).

The agent walks the space's grammar. Its state at each decision is what the space says
matters there (`SearchSpace.agent_state`: for the chain, MetaQNN's own depth, layer and
representation size; for a cell, the edge and every op chosen before it), its actions are
the options the grammar offers, and it picks them ε-greedily from a table of Q-values:
with probability ε an option uniformly at random, otherwise the option of highest Q.
Every reward is zero but the last, the architecture's validation score, so with the
paper's discount of 1 a Q-value learns the best score reachable after its decision. After
each evaluation the agent stores the architecture's decisions and score in its replay
memory and replays `replay` of them drawn uniformly, each with the paper's one-step update
from the last decision back to the first:

    Q(s_T, a_T) <- (1 - lr) Q(s_T, a_T) + lr * score
    Q(s_i, a_i) <- (1 - lr) Q(s_i, a_i) + lr * discount * max_a' Q(s_{i+1}, a')

Q-values start at `q_init` (the paper's 0.5, for scores that are fractions). A draw that
repeats an evaluated architecture is not trained again: as in the paper, its score is
reused (stored and replayed as a new experience) and the agent draws again, so a repeat
does not count against the budget.

The paper's settings are `PAPER`: learning rate 0.01, ties for the highest Q broken at
random, and ε following its schedule for 2,700 networks, scaled to the budget: 1500 at
ε = 1 (random search), then 100 each at 0.9, 0.8 and 0.7 and 150 each at 0.6 down to 0.1
(`EPSILONS`, `EPSILON_MODELS`); `strategy=metaqnn_paper` runs them. The defaults depart
from them in three ways, chosen on the NAS-Bench-201 benchmark, where the paper's settings
are no better than random search at 150 queries and the defaults are close to regularized
evolution (benchmarks/README.md has the figures and the variants compared):

- Ties go to the option the greedy episode takes at the same decision (`ties="greedy"`).
  In a state the agent has never been in every option ties at `q_init`; breaking those
  ties at random makes an exploratory step complete the architecture at random after it,
  and with a cell's states (every op chosen so far) nearly every exploratory step leads
  into such a state, so exploration degenerates into random search of the later
  decisions. Breaking them toward the greedy episode makes an exploratory step change its
  decision and otherwise follow the best episode the agent knows. Alone it changes
  little; with the next two it is what lifts MetaQNN well above random search.
- The learning rate is 1. Every architecture's reward is fixed once told (repeats reuse
  it), so the agent's task is deterministic, where a rate of 1 is exact: after one replay
  a Q-value is the best score known below its decision, the fixed point the paper's 0.01
  approaches only after hundreds of replays per memory, which a budget of a few hundred
  networks never affords (with 0.01 a late, good architecture's Q-values stay far below
  its score and the greedy episode leads back to older ones).
- ε follows `SHORT_EPSILONS` over `SHORT_EPSILON_MODELS`: 20 of 150 networks at ε = 1
  (as evolution's first population of 20), then the paper's last two rates, 0.2 and 0.1,
  for the rest. The paper's schedule spends 83 of 150 networks on random search and most
  of the rest at rates that redraw half a cell's decisions.

With ties to the greedy episode, neither the learning rate (0.1 to 1) nor the schedule's
exact shape mattered much.

The strategy keeps nothing but its generator, the Q-table, the replay memory and the
scores it has been told, so any number of asks may run ahead of their tells (the
asynchronous and Ray executors) and `state_dict` resumes it exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from nasflow.errors import NasflowError
from nasflow.ranges import NonNegativeFloat, PositiveFloat, PositiveInt, Probability, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, Decision, SearchSpace
from nasflow.search_strategies.base import SearchStrategy, check_positive

#: One decision of an episode: the agent's state, the options offered, the one chosen.
Step = tuple[tuple[Any, ...], tuple[str, ...], str]
Episode = tuple[Step, ...]
#: An episode as its updates read the Q-table, from the last decision back: each
#: decision's key and the keys of the options it offered.
Updates = tuple[tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]], ...]

#: MetaQNN's ε schedule: networks trained at each ε (Baker et al. 2017, Table 5).
EPSILONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
EPSILON_MODELS = (1500, 100, 100, 100, 150, 150, 150, 150, 150, 150)
#: The default schedule, for budgets of a few hundred networks: 20 of 150 at ε = 1, then
#: the paper's last two rates.
SHORT_EPSILONS = (1.0, 0.2, 0.1)
SHORT_EPSILON_MODELS = (20, 65, 65)
#: The paper's settings, where the defaults differ (see the module's docstring).
PAPER: dict[str, Any] = {
    "learning_rate": 0.01,
    "epsilons": EPSILONS,
    "epsilon_models": EPSILON_MODELS,
    "ties": "random",
}


class MetaQNN(SearchStrategy):
    """Tabular Q-learning over the space's decisions, ε-greedy, with experience replay.

    Args:
        space: The search space.
        budget: The most evaluations; the ε schedule is scaled to it.
        seed: Seeds every random choice (exploration, ties, replay draws).
        learning_rate: The Q-learning rate (the paper's 0.01; 1 is exact for rewards that
            never change, see the module's docstring).
        discount: The discount of the next decision's value (the paper's 1).
        q_init: Every Q-value before its first update, in the score's units (the paper's
            0.5, for accuracies as fractions).
        replay: Memories replayed after each evaluation (the paper replays 100; 128 here).
        epsilons: The exploration rates, in the order they are used.
        epsilon_models: How many networks each rate of `epsilons` proposes, as shares of
            their sum, scaled to `budget` (the paper's: `EPSILON_MODELS`).
        max_tries: Episodes per `ask` (repeats reuse their score) before `max_tries`
            uniform samples, and then the conclusion that the space is used up.
        ties: How a tie for the highest Q is broken: ``greedy``, toward the option the
            greedy episode takes at the same decision (by its name), else at random;
            ``random`` (the paper's), always at random.
    """

    name = "metaqnn"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        learning_rate: PositiveFloat = 1.0,
        discount: NonNegativeFloat = 1.0,
        q_init: NonNegativeFloat = 0.5,
        replay: PositiveInt = 128,
        epsilons: Sequence[Probability] = SHORT_EPSILONS,
        epsilon_models: Sequence[PositiveInt] = SHORT_EPSILON_MODELS,
        max_tries: PositiveInt = 100,
        ties: Literal["random", "greedy"] = "greedy",
    ) -> None:
        super().__init__(space, budget, seed)
        for key, value in (("replay", replay), ("max_tries", max_tries)):
            check_positive(key, value)
        if len(epsilons) != len(epsilon_models) or not epsilons:
            raise NasflowError(
                f"strategy.epsilons and strategy.epsilon_models need one count per rate, got "
                f"{len(epsilons)} rates and {len(epsilon_models)} counts"
            )
        self.learning_rate = float(learning_rate)
        self.discount = float(discount)
        self.q_init = float(q_init)
        self.replay = replay
        self.max_tries = max_tries
        if ties not in ("random", "greedy"):
            raise NasflowError(f"strategy.ties must be 'random' or 'greedy', got {ties!r}")
        self.ties = ties
        self.epsilons = tuple(float(e) for e in epsilons)
        # Where each rate ends, in proposals: the schedule's shares of the budget.
        total, ends, running = sum(epsilon_models), [], 0
        for count in epsilon_models:
            running += int(count)
            ends.append(budget * running / total)
        self.epsilon_ends = tuple(ends)
        self.q: dict[tuple[tuple[Any, ...], str], float] = {}
        self.memory: list[tuple[Episode, float]] = []
        self._replays: list[tuple[Updates, float]] = []  # `memory`, as `_update` reads it
        self.scores: dict[str, float] = {}  # every architecture told, by id
        self.pending: dict[str, Episode] = {}  # proposed, not yet told
        self.discarded: set[str] = set()
        self.proposals = 0  # the ε position
        self.worst: float | None = None

    # -- ask/tell --------------------------------------------------------------------------

    @property
    def epsilon(self) -> float:
        """The exploration rate of the next proposal."""
        for epsilon, end in zip(self.epsilons, self.epsilon_ends, strict=True):
            if self.proposals < end:
                return epsilon
        return self.epsilons[-1]

    def ask(self) -> Architecture | None:
        for _ in range(self.max_tries):
            arch, episode = self._episode(self.epsilon)
            if arch.id in self.scores:  # trained before: its score again, no training
                self._learn(episode, self.scores[arch.id])
            elif arch.id not in self.pending and arch.id not in self.discarded:
                return self._propose(arch, episode)
        for _ in range(self.max_tries):  # the agent keeps repeating itself: draw afresh
            arch = self.space.sample(self.rng)
            if not self._known(arch):
                return self._propose(arch, self._replayed(arch))
        return None

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        episode = self.pending.pop(arch.id, None) or self._replayed(arch)
        if evaluation.score is not None and math.isfinite(evaluation.score):
            reward = float(evaluation.score)
            self.worst = reward if self.worst is None else min(self.worst, reward)
        else:  # a failure is as bad as the worst architecture seen
            reward = self.worst if self.worst is not None else self.q_init
        self.scores[arch.id] = reward
        self._learn(episode, reward)

    def discard(self, arch: Architecture) -> None:
        # Never evaluated, so never a reward; not proposed again either.
        self.pending.pop(arch.id, None)
        self.discarded.add(arch.id)

    def metrics(self) -> dict[str, float]:
        values = list(self.q.values())
        if not values:
            return {"epsilon": self.epsilon}
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return {
            "epsilon": self.epsilon,
            "q_mean": mean,
            "q_spread": spread,  # the standard deviation over every Q-value learnt
            "q_max": max(values),
            "q_entries": float(len(values)),
        }

    # -- the agent ---------------------------------------------------------------------------

    def _known(self, arch: Architecture) -> bool:
        return arch.id in self.scores or arch.id in self.pending or arch.id in self.discarded

    def _propose(self, arch: Architecture, episode: Episode) -> Architecture:
        self.pending[arch.id] = episode
        self.proposals += 1
        return arch

    def _episode(self, epsilon: float) -> tuple[Architecture, Episode]:
        """One walk through the grammar, each decision ε-greedy on the Q-values."""
        prefer = self._greedy_labels() if self.ties == "greedy" and epsilon > 0 else {}

        def choose(state: tuple[Any, ...], decision: Decision, _: int) -> str:
            offered = decision.choices
            if len(offered) > 1 and self.rng.random() < epsilon:
                return offered[int(self.rng.integers(len(offered)))]
            return self._argmax(state, offered, prefer.get(decision.name))

        return self._walk(choose)

    def _greedy_labels(self) -> dict[str, str]:
        """The greedy episode's label at each decision, by the decision's name."""
        labels: dict[str, str] = {}

        def choose(state: tuple[Any, ...], decision: Decision, _: int) -> str:
            labels[decision.name] = self._argmax(state, decision.choices, None)
            return labels[decision.name]

        self._walk(choose)
        return labels

    def _argmax(self, state: tuple[Any, ...], offered: tuple[str, ...], prefer: str | None) -> str:
        """The option of highest Q; of several, `prefer` if it is one of them, else one at
        random."""
        if len(offered) == 1:
            return offered[0]
        values = [self.q.get((state, option), self.q_init) for option in offered]
        best = max(values)
        ties = [option for option, v in zip(offered, values, strict=True) if v == best]
        if len(ties) == 1:
            return ties[0]
        return prefer if prefer in ties else ties[int(self.rng.integers(len(ties)))]

    def _replayed(self, arch: Architecture) -> Episode:
        """The episode that emits `arch` (one told without being proposed here)."""
        labels = self.space.to_labels(arch)
        return self._walk(lambda _, __, i: labels[i])[1]

    def _walk(
        self, choose: Callable[[tuple[Any, ...], Decision, int], str]
    ) -> tuple[Architecture, Episode]:
        """Run the grammar, answering decision i with ``choose(state, decision, i)``, and
        record each decision as a step."""
        labels: list[str] = []
        steps: list[Step] = []
        grammar = self.space.grammar()
        decision = next(grammar)
        while True:
            state = self.space.agent_state(labels)
            label = choose(state, decision, len(labels))
            steps.append((state, decision.choices, label))
            labels.append(label)
            try:
                decision = grammar.send(label)
            except StopIteration as done:
                return done.value, tuple(steps)

    def _learn(self, episode: Episode, reward: float) -> None:
        """Store the experience and replay `replay` memories drawn uniformly."""
        self.memory.append((episode, reward))
        self._replays.append((_updates(episode), reward))
        draws = self.rng.integers(len(self.memory), size=self.replay)
        for index in draws:
            self._update(*self._replays[int(index)])

    def _update(self, updates: Updates, reward: float) -> None:
        """The paper's Q-value update along one episode, from its last decision back."""
        lr, q, q_init, discount = self.learning_rate, self.q, self.q_init, self.discount
        get = q.get  # replay makes this the strategy's inner loop
        defaults = itertools.repeat(q_init)
        target = reward
        first = len(updates) - 1
        for i, (key, options) in enumerate(updates):
            old = get(key, q_init)
            q[key] = old + lr * (target - old)
            if i < first:  # the value of the decision before: the best option offered here
                target = discount * max(map(get, options, defaults))

    # -- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "q": list(self.q.items()),
            "memory": list(self.memory),
            "scores": dict(self.scores),
            "pending": dict(self.pending),
            "discarded": sorted(self.discarded),
            "proposals": self.proposals,
            "worst": self.worst,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.q = dict(state["q"])
        self.memory = list(state["memory"])
        self._replays = [(_updates(episode), reward) for episode, reward in self.memory]
        self.scores = dict(state["scores"])
        self.pending = dict(state["pending"])
        self.discarded = set(state["discarded"])
        self.proposals = state["proposals"]
        self.worst = state["worst"]


def _updates(episode: Episode) -> Updates:
    """`episode`'s Q-table keys in the order `MetaQNN._update` reads them, made once per
    memory rather than at every replay."""
    return tuple(
        ((state, label), tuple((state, option) for option in offered))
        for state, offered, label in reversed(episode)
    )
