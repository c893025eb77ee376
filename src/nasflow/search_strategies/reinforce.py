"""REINFORCE with an LSTM controller (Zoph & Le, ICLR 2017).

A recurrent controller emits an architecture one decision at a time. At each step its
hidden state gives logits over every label of the space's catalogue; those of the
current decision that the grammar offers at this point are kept (which is a linear head
per catalogue decision, masked to the offered labels) and one is sampled. The sampled
(decision, label) token is embedded and fed back as the next input; the first input is a
learned start token. Because the controller follows the space's grammar, it works in
every space, variable-length sequences included.

The controller is trained with Williams' REINFORCE on the validation score: after every
`batch_size` evaluations it takes one Adam step on

    - mean_b (advantage_b * log p(sequence_b)) - entropy_weight * mean_b entropy_b,

where the advantage is the reward minus an exponential moving average of earlier
rewards (the baseline), divided by a moving average of its own size so that the step
does not depend on whether scores are fractions or percentages. A failed evaluation is
rewarded as the worst score seen. The log-probabilities are recomputed from the stored
decisions at update time, so any number of asks may run ahead of their tells.

Besides ask/tell, `Reinforce.sample` draws architectures from the controller's own
distribution, repeats allowed, without proposing them: what ENAS
(`nasflow.oneshot.enas`) trains its shared weights on, before it tells the controller
their rewards.

The defaults were tuned on the NAS-Bench-201 table (CIFAR-10, searching on the
validation accuracy, 150 queries; benchmarks/README.md has the figures). Short
searches favour small batches, a fast learning rate and a short-memory baseline; the
entropy bonus keeps the controller from settling before it has seen enough.

At a little over 500 lines this module is one concern, the controller and its training:
sampling, the update and the exact-resume state share the token tables and the masks,
and the order of their autograd operations (see `_log_prob`) is what keeps the published
figures bit for bit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import nn

from nasflow.errors import NasflowError, check_int, check_number
from nasflow.ranges import Decay, NonNegativeFloat, PositiveFloat, PositiveInt, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, Decision, SearchSpace
from nasflow.search_strategies.base import SearchStrategy

# One emitted decision: the tokens the grammar offered there and the position chosen.
Step = tuple[tuple[int, ...], int]
# Architectures the controller samples side by side in its first round of an `ask`; the
# first not yet proposed is taken and the rest dropped.
FIRST_ROUND = 8


@dataclass(frozen=True)
class ControllerSample:
    """One architecture drawn from the controller (`Reinforce.sample`).

    Attributes:
        arch: The architecture.
        log_prob: The log-probability of its sequence of decisions under the controller.
        entropy: The summed entropy of the controller's distributions along that
            sequence, in nats.
    """

    arch: Architecture
    log_prob: float
    entropy: float


class _Offer(NamedTuple):
    """What the grammar offers at one decision, as the controller sees it."""

    tokens: tuple[int, ...]  # the offered labels' tokens, in the decision's order
    blocked: torch.Tensor  # a boolean mask over every token, True where not offered
    position: dict[int, int]  # token -> its position among the offered labels


class Controller(nn.Module):
    """An LSTM over (decision, label) tokens; token `n_tokens` is the start token.

    Args:
        n_tokens: Labels in the space's catalogue, over every decision.
        hidden_size: Width of the embedding and of the LSTM state.
    """

    def __init__(self, n_tokens: int, hidden_size: int) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.embedding = nn.Embedding(n_tokens + 1, hidden_size)
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        # One row per token: the rows of one decision form that decision's linear head.
        self.head = nn.Linear(hidden_size, n_tokens)

    def step(
        self, token: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits over every token after feeding `token` (shape [B]) to the LSTM."""
        h, c = self.lstm(self.embedding(token), state)
        return self.head(h), (h, c)


class Reinforce(SearchStrategy):
    """REINFORCE with an LSTM controller and a moving-average baseline.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds the controller's initial weights and all of its sampling.
        batch_size: Evaluations per update of the controller (Zoph & Le: one batch of
            child networks per update).
        learning_rate: Adam's step size.
        entropy_weight: Weight of the entropy bonus, which keeps the controller exploring.
        baseline_decay: How much of the baseline an update keeps (its moving average).
        hidden_size: Width of the controller's LSTM and token embeddings.
        init_range: Initial weights are drawn uniformly from +-init_range; small, so that
            the controller starts close to uniform, that is as random search.
        max_tries: Controller draws per `ask` before it falls back to as many uniform
            draws, and then concludes that the space is used up (see `ask`).
    """

    name = "reinforce"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        batch_size: PositiveInt = 10,
        learning_rate: PositiveFloat = 0.05,
        entropy_weight: NonNegativeFloat = 0.1,
        baseline_decay: Decay = 0.5,
        hidden_size: PositiveInt = 32,
        init_range: NonNegativeFloat = 0.1,
        max_tries: PositiveInt = 1000,
    ) -> None:
        super().__init__(space, budget, seed)
        _check_int("batch_size", batch_size)
        _check_int("hidden_size", hidden_size)
        _check_int("max_tries", max_tries)
        _check_float("learning_rate", learning_rate, low=0.0, open_low=True)
        _check_float("entropy_weight", entropy_weight, low=0.0)
        _check_float("baseline_decay", baseline_decay, low=0.0, high=1.0)
        _check_float("init_range", init_range, low=0.0)
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.max_tries = max_tries

        # Token ids: the catalogue's (decision, label) pairs, decision by decision.
        self._tokens: dict[str, dict[str, int]] = {}
        for decision in space.catalogue():
            first = sum(len(labels) for labels in self._tokens.values())
            self._tokens[decision.name] = {
                label: first + i for i, label in enumerate(decision.choices)
            }
        n_tokens = sum(len(labels) for labels in self._tokens.values())
        self._start = n_tokens
        self._offers: dict[Decision, _Offer] = {}
        self._by_tokens: dict[tuple[int, ...], _Offer] = {}

        # Own generators: nothing here touches torch's global random state.
        self.generator = torch.Generator().manual_seed(int(self.rng.integers(2**63)))
        init = torch.Generator().manual_seed(int(self.rng.integers(2**63)))
        with torch.device("meta"):  # built without touching torch's global generator
            controller = Controller(n_tokens, hidden_size)
        self.controller = controller.to_empty(device="cpu")
        for parameter in self.controller.parameters():
            nn.init.uniform_(parameter, -init_range, init_range, generator=init)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=learning_rate)
        self._dummy = self._make_offer((0,))

        self.seen: set[str] = set()
        # Position sequences known to give an architecture in `seen`: a cache, not state.
        self._drawn: set[tuple[int, ...]] = set()
        self.pending: dict[str, list[Step]] = {}  # asked, not yet told, by id
        self.batch: list[tuple[list[Step], float]] = []  # told since the last update
        self.baseline: float | None = None
        self.spread: float | None = None  # moving average of |reward - baseline|
        self.worst: float | None = None  # the lowest score seen, a failure's reward
        self.updates = 0
        self.latest: dict[str, float] = {}

    # -- ask / tell ----------------------------------------------------------------------

    def ask(self) -> Architecture | None:
        """A new architecture from the controller; None once the space seems used up.

        A repeat would cost the benchmark (or the trainer) a query for nothing, so repeats
        are drawn again, in rounds of 8, 16, 32, ... draws (batched, so a sure controller
        costs a few rounds, not thousands of single draws). From the third round on the
        controller's logits are divided by a temperature that doubles each round: a
        controller that has settled on a region proposes its nearest alternatives first
        and, as the temperature grows, anything. After `max_tries` such draws come
        `max_tries` uniform ones, as random search would draw. The update learns from
        those as from the controller's own draws (slightly off-policy, a bias accepted
        for not wasting the evaluation).
        """
        with _controller_mode(grad=False):
            return self._ask()

    def _ask(self) -> Architecture | None:
        rounds: list[Callable[[], list[tuple[Architecture, list[Step]]]]] = []
        total, count, temperature = 0, FIRST_ROUND, 1.0
        while total < self.max_tries:
            rounds.append(partial(self._sample, min(count, self.max_tries - total), temperature))
            total, count = total + count, 2 * count
            temperature = temperature * 2 if len(rounds) >= 2 else 1.0
        rounds += [self._uniform] * self.max_tries
        for draw in rounds:
            for arch, steps in draw():
                # Hashing an architecture costs more than drawing it: sequences already
                # drawn are recognised by their positions first.
                key = tuple(position for _, position in steps)
                if key in self._drawn:
                    continue
                self._drawn.add(key)
                if arch.id not in self.seen:
                    self.seen.add(arch.id)
                    self.pending[arch.id] = steps
                    return arch
        return None

    def discard(self, arch: Architecture) -> None:
        # Its decisions stay out of the gradient: a filter's verdict is not a reward.
        self.pending.pop(arch.id, None)

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        self.seen.add(arch.id)
        steps = self.pending.pop(arch.id, None)
        if steps is None:  # not proposed here (e.g. a seeded start): replay its labels
            steps = self._steps_of(arch)
        if evaluation.score is not None:
            reward = float(evaluation.score)
            self.worst = reward if self.worst is None else min(self.worst, reward)
        else:  # a failure is as bad as the worst architecture seen
            reward = self.worst if self.worst is not None else 0.0
        self.batch.append((steps, reward))
        if len(self.batch) >= self.batch_size:
            with _controller_mode(grad=True):
                self._update()

    def metrics(self) -> dict[str, float]:
        """The latest update's batch mean `reward`, `baseline` (after the update), mean
        `entropy` of the batch's sequences, `policy_loss` and the count of `updates`;
        empty before the first update."""
        return dict(self.latest)

    def log_probability(self, arch: Architecture) -> float:
        """The log-probability that the controller emits `arch` (a repeat aside)."""
        with _controller_mode(grad=False):
            return float(self._log_prob([self._steps_of(arch)])[0][0])

    # -- sampling ------------------------------------------------------------------------

    def _emit(self, choose: Callable[[Decision, tuple[int, ...]], int]) -> tuple[Any, list[Step]]:
        """Run the grammar, answering each decision with the position `choose` returns."""
        grammar = self.space.grammar()
        decision = next(grammar)
        steps: list[Step] = []
        while True:
            offered = self._offer(decision).tokens
            position = choose(decision, offered)
            steps.append((offered, position))
            try:
                decision = grammar.send(decision.choices[position])
            except StopIteration as done:
                return done.value, steps

    def sample(
        self, count: int, generator: torch.Generator | None = None, greedy: bool = False
    ) -> list[ControllerSample]:
        """`count` architectures from the controller's distribution, repeats allowed.

        `ask` never proposes an architecture twice (a repeat would cost an evaluation for
        nothing), which is right for a search loop but not for ENAS, whose shared weights
        are trained on the controller's own distribution, repeats and all. These draws
        are not proposals: the search's state is left as it was (bar `generator`'s), and
        telling one of them its reward replays it from its labels. They are drawn side
        by side, one batched LSTM step per decision.

        Args:
            count: How many architectures.
            generator: Draws them; the strategy's own, which `ask` draws from, if None.
            greedy: Each decision takes the controller's most likely label instead,
                drawing nothing (all `count` are then the same architecture).
        """
        with _controller_mode(grad=False):
            draws = self._draw(count, self.generator if generator is None else generator, greedy)
        return [sample for sample, _ in draws]

    def _sample(
        self, count: int, temperature: float = 1.0
    ) -> list[tuple[Architecture, list[Step]]]:
        """`count` architectures from the controller for `ask`, from its generator."""
        draws = self._draw(count, self.generator, temperature=temperature)
        return [(sample.arch, steps) for sample, steps in draws]

    def _draw(
        self,
        count: int,
        generator: torch.Generator,
        greedy: bool = False,
        temperature: float = 1.0,
    ) -> list[tuple[ControllerSample, list[Step]]]:
        """`count` architectures from the controller, sampled side by side: one batched
        LSTM step per decision, so a few more cost little more than one. Each comes with
        its decisions; its log-probability and entropy are those of the controller's
        distribution before the `temperature`."""
        grammars = [self.space.grammar() for _ in range(count)]
        decisions: list[Decision | None] = [next(g) for g in grammars]
        steps: list[list[Step]] = [[] for _ in range(count)]
        archs: list[Any] = [None] * count
        log_probs, entropies = [0.0] * count, [0.0] * count
        token = torch.full((count,), self._start)
        state = None
        while any(d is not None for d in decisions):
            logits, state = self.controller.step(token, state)
            # float32 even under a caller's autocast (ENAS samples inside training steps).
            scores = logits.float()
            # A finished sequence keeps stepping on a dummy token; it is ignored.
            offers = [self._offer(d) if d else self._dummy for d in decisions]
            blocked = torch.stack([offer.blocked for offer in offers])
            log_p = torch.log_softmax(scores.masked_fill(blocked, -math.inf), dim=1)
            log_p = log_p.masked_fill(blocked, 0.0)  # 0 * -inf would be NaN
            step_entropy = -(log_p.exp() * log_p).sum(1)
            if greedy:
                drawn = scores.masked_fill(blocked, -math.inf).argmax(1)
            else:
                # Gumbel-max: the argmax of the logits plus Gumbel noise (-log of an Exp(1)
                # draw) is a draw from their softmax, in fewer ops than torch.multinomial.
                noise = torch.empty_like(scores).exponential_(generator=generator).log_()
                drawn = (scores / temperature - noise).masked_fill_(blocked, -math.inf).argmax(1)
            token = drawn
            drawn_log_p = log_p.gather(1, drawn[:, None])[:, 0].tolist()
            drawn_entropy = step_entropy.tolist()
            for b, (decision, offer, chosen) in enumerate(
                zip(decisions, offers, drawn.tolist(), strict=True)
            ):
                if decision is None:
                    continue
                log_probs[b] += drawn_log_p[b]
                entropies[b] += drawn_entropy[b]
                position = offer.position[chosen]
                steps[b].append((offer.tokens, position))
                try:
                    decisions[b] = grammars[b].send(decision.choices[position])
                except StopIteration as stop:
                    decisions[b], archs[b] = None, stop.value
        return [
            (ControllerSample(arch, log_prob, h), arch_steps)
            for arch, log_prob, h, arch_steps in zip(
                archs, log_probs, entropies, steps, strict=True
            )
        ]

    def _steps_of(self, arch: Architecture) -> list[Step]:
        positions = iter(self.space.encode(arch))  # NasflowError if the space cannot emit it
        return self._emit(lambda _, __: next(positions))[1]

    def _uniform(self) -> list[tuple[Architecture, list[Step]]]:
        return [self._emit(lambda _, offered: int(self.rng.integers(len(offered))))]

    def _offer(self, decision: Decision) -> _Offer:
        offer = self._offers.get(decision)
        if offer is None:
            tokens = self._tokens.get(decision.name)
            if tokens is None or any(label not in tokens for label in decision.choices):
                raise NasflowError(
                    f"search_space '{self.space.name}' asked {decision.name} with "
                    f"{decision.choices}, which its catalogue does not list"
                )
            offer = self._offers[decision] = self._make_offer(
                tuple(tokens[c] for c in decision.choices)
            )
        return offer

    def _make_offer(self, tokens: tuple[int, ...]) -> _Offer:
        offer = self._by_tokens.get(tokens)
        if offer is None:
            blocked = torch.ones(self.controller.n_tokens, dtype=torch.bool)
            blocked[list(tokens)] = False
            offer = _Offer(tokens, blocked, {token: i for i, token in enumerate(tokens)})
            self._by_tokens[tokens] = offer
        return offer

    # -- learning ------------------------------------------------------------------------

    def _update(self) -> None:
        """One REINFORCE step on the batch told since the last update."""
        rewards = torch.tensor([reward for _, reward in self.batch], dtype=torch.float64)
        mean = float(rewards.mean())
        decay = self.baseline_decay
        # The baseline averages *earlier* batches, so the first batch is centred on itself.
        baseline = mean if self.baseline is None else self.baseline
        # The scale includes this batch, which bounds the advantages even when every
        # earlier reward was the same (a run of failures, say).
        deviation = float((rewards - baseline).abs().mean())
        spread = deviation if self.spread is None else decay * self.spread + (1 - decay) * deviation
        advantage = ((rewards - baseline) / max(spread, 1e-12)).float()

        log_prob, entropy = self._log_prob([steps for steps, _ in self.batch])
        policy_loss = -(advantage * log_prob).mean()
        loss = policy_loss - self.entropy_weight * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

        self.baseline = decay * baseline + (1 - decay) * mean
        self.spread = spread
        self.updates += 1
        self.batch = []
        self.latest = {
            "reward": mean,
            "baseline": self.baseline,
            "entropy": float(entropy.detach().mean()),
            "policy_loss": float(policy_loss.detach()),
            "updates": float(self.updates),
        }

    def _log_prob(self, sequences: list[list[Step]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sequence's log-probability under the controller, and its entropy (summed
        over its decisions), computed for the whole batch at once."""
        size, length = len(sequences), max(len(steps) for steps in sequences)
        # Finished sequences keep stepping on a dummy token; `active` zeroes them out.
        padded = [steps + [((0,), 0)] * (length - len(steps)) for steps in sequences]
        blocked = torch.stack(
            [torch.stack([self._make_offer(o).blocked for o, _ in steps]) for steps in padded],
            dim=1,
        )
        chosen = torch.tensor([[o[p] for o, p in steps] for steps in padded]).T
        active = torch.tensor([[float(t < len(s)) for t in range(length)] for s in sequences]).T

        log_prob = torch.zeros(size)
        entropy = torch.zeros(size)
        token = torch.full((size,), self._start)
        state = None
        for t in range(length):
            logits, state = self.controller.step(token, state)
            # The order the graph is built in sets the order gradients are summed in, so
            # reordering these ops changes the update in its last bits.
            log_p = torch.log_softmax(logits.masked_fill(blocked[t], -math.inf), dim=1)
            safe = log_p.masked_fill(blocked[t], 0.0)  # 0 * -inf would be NaN
            log_prob = log_prob + safe.gather(1, chosen[t, :, None])[:, 0] * active[t]
            entropy = entropy - (safe.exp() * safe).sum(1) * active[t]
            token = chosen[t]
        return log_prob, entropy

    # -- resume --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "controller": copy.deepcopy(self.controller.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
            "seen": sorted(self.seen),
            "pending": copy.deepcopy(self.pending),
            "batch": copy.deepcopy(self.batch),
            "baseline": self.baseline,
            "spread": self.spread,
            "worst": self.worst,
            "updates": self.updates,
            "latest": dict(self.latest),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.seen = set(state["seen"])
        self.pending = {
            key: [(tuple(offered), position) for offered, position in steps]
            for key, steps in state["pending"].items()
        }
        self.batch = [
            ([(tuple(offered), position) for offered, position in steps], reward)
            for steps, reward in state["batch"]
        ]
        self.baseline = state["baseline"]
        self.spread = state["spread"]
        self.worst = state["worst"]
        self.updates = state["updates"]
        self.latest = dict(state["latest"])


@contextmanager
def _controller_mode(grad: bool) -> Iterator[None]:
    """Gradients on or off, and one intra-op thread, while the controller works.

    Its tensors are tiny: spread over threads, each op costs more in waking the thread
    pool than it computes (ten to a hundred times more on a busy machine). Both settings
    are torch-global, so they are restored on the way out.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.set_grad_enabled(grad):
            yield
    finally:
        torch.set_num_threads(threads)


def _check_int(key: str, value: Any) -> None:
    check_int(f"strategy.{key}", value)


def _check_float(
    key: str, value: Any, low: float, high: float = math.inf, open_low: bool = False
) -> None:
    check_number(f"strategy.{key}", value, low, high, open_low)
