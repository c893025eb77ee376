"""Network morphism by hill climbing (NASH: Elsken, Metzen & Hutter, "Simple and
efficient architecture search for convolutional neural networks", ICLR workshop 2018).

From the incumbent, each child is made by a few random network morphisms (deeper, wider,
a skip connection: `nasflow.morphism`) and trained for the estimator's epochs starting
from the incumbent's trained weights. A morphism preserves the function, so a child
starts where its parent ended and needs only a few epochs: over the generations a
network is trained for many epochs in all, while each candidate costs a few. Once
`children` children of the incumbent are told, the best of them and the incumbent
becomes the next incumbent: hill climbing in the space of trained networks.

Morphisms only grow a network, so the climb starts small, as NASH's does: the first
candidate is the smallest (fewest parameters) of `start_samples` random architectures,
trained from scratch. Each child takes between one and `morphisms` morphisms (NASH
takes exactly its n_NM = 5 in an unbounded space; in a bounded one a fixed count would
leave a grown network a single child). Where no new child can be made by morphisms
(the network is as deep, wide and connected as the space allows), and on the spaces that
have none (the cell spaces), a child is a one-decision mutation that inherits every
parameter of its parent whose name and shape it keeps (weight inheritance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from nasflow.errors import NasflowError
from nasflow.measure import count_params
from nasflow.ranges import PositiveInt, Seed
from nasflow.records import Evaluation, Lineage, MorphStep
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.base import SearchStrategy, check_positive, score_or_worst

if TYPE_CHECKING:
    from nasflow.searching import SearchContext, SearchOutcome


class Morphism(SearchStrategy):
    """NASH's hill climbing with function-preserving children, through ask/tell.

    Asks may run ahead of tells (parallel executors): until the first candidate is told,
    each ask samples another random start (the best start becomes the incumbent), and
    a generation keeps making children of its incumbent until `children` of them are
    told. A child told after its generation closed still replaces the incumbent if it
    beats it, so no result is wasted. A failed candidate scores the worst.

    Args:
        space: The search space.
        budget: The most evaluations.
        seed: Seeds the starts, the morphisms and the mutations.
        children: Children of each incumbent trained before the best is chosen (NASH's
            neighbours, 8 in the paper).
        morphisms: The most random morphisms in a row that make one child (NASH's 5);
            each child draws how many, from 1.
        operators: Which morphisms to draw from: deeper, wider, skip.
        start_samples: Random architectures the start is the smallest of (1: a random
            start).
        max_tries: Children drawn per `ask` by morphism, then as many by mutation, before
            a random architecture is proposed instead (every child drawn had been
            proposed before).
    """

    name = "morphism"

    def __init__(
        self,
        space: SearchSpace,
        budget: PositiveInt,
        seed: Seed = 0,
        children: PositiveInt = 8,
        morphisms: PositiveInt = 5,
        operators: Sequence[str] = ("deeper", "wider", "skip"),
        start_samples: PositiveInt = 10,
        max_tries: PositiveInt = 100,
    ) -> None:
        from nasflow.morphism import OPERATORS

        super().__init__(space, budget, seed)
        check_positive("children", children)
        check_positive("morphisms", morphisms)
        check_positive("max_tries", max_tries)
        check_positive("start_samples", start_samples)
        names = tuple(str(name) for name in operators)
        unknown = [name for name in names if name not in OPERATORS]
        if unknown or not names:
            raise NasflowError(
                f"strategy.operators must name some of {', '.join(OPERATORS)}; got "
                f"{', '.join(map(str, unknown)) or 'none'}"
            )
        self.children = children
        self.morphisms = morphisms
        self.operators = names
        self.max_tries = max_tries
        self.start_samples = start_samples
        # The image shape and classes the morphisms are drawn for (a first convolution's
        # width may depend on the input channels): the search sets the data's.
        self.input_shape: tuple[int, ...] = (3, 32, 32)
        self.num_classes = 10
        self.incumbent: tuple[Architecture, float] | None = None
        self.generation = 0
        self.told: list[tuple[Architecture, float]] = []  # the generation's children so far
        self.pending: dict[str, int] = {}  # asked, not told: generation (-1: a start)
        self.seen: set[str] = set()
        self._lineages: dict[str, Lineage] = {}  # asked, until the loop takes its lineage

    def run(self, context: SearchContext) -> SearchOutcome:
        info = context.data.info
        self.input_shape, self.num_classes = tuple(info.input_shape), int(info.num_classes)
        return super().run(context)

    def ask(self) -> Architecture | None:
        if self.incumbent is not None:
            parent = self.incumbent[0]
            for make in (self._child, self._mutant):
                for _ in range(self.max_tries):
                    child, lineage = make(parent)
                    if child.id not in self.seen:
                        self._lineages[child.id] = lineage
                        return self._propose(child, self.generation)
        if self.incumbent is None and not self.pending:
            start = self._start()
            if start is not None:
                return self._propose(start, -1)
        # Every child drawn had been proposed, or a start is out: a random architecture.
        for _ in range(self.max_tries):
            arch = self.space.sample(self.rng)
            if arch.id not in self.seen:
                return self._propose(arch, -1)
        return None

    def lineage(self, arch: Architecture) -> Lineage | None:
        return self._lineages.pop(arch.id, None)

    def weights_kept(self) -> int:
        # The incumbent is the best so far, so the best `children` always hold it.
        return self.children

    def tell(self, arch: Architecture, evaluation: Evaluation) -> None:
        self.seen.add(arch.id)
        score = score_or_worst(evaluation)
        generation = self.pending.pop(arch.id, -1)
        if generation == self.generation and self.incumbent is not None:
            self.told.append((arch, score))
            if len(self.told) >= self.children:
                self._climb(max(self.told, key=lambda member: member[1]))
                self.generation += 1
                self.told = []
        else:  # a start, a straggler of a closed generation or a random fallback
            self._climb((arch, score))

    def discard(self, arch: Architecture) -> None:
        # Filtered (a constraint, a pre-filter): never told, and never proposed again.
        self.pending.pop(arch.id, None)
        self._lineages.pop(arch.id, None)

    def metrics(self) -> dict[str, float]:
        if self.incumbent is None:
            return {}
        return {"generation": float(self.generation), "incumbent_score": self.incumbent[1]}

    def _climb(self, candidate: tuple[Architecture, float]) -> None:
        """`candidate` becomes the incumbent if it beats it (the incumbent wins ties)."""
        if self.incumbent is None or candidate[1] > self.incumbent[1]:
            self.incumbent = candidate

    def _propose(self, arch: Architecture, generation: int) -> Architecture:
        self.seen.add(arch.id)
        self.pending[arch.id] = generation
        return arch

    def _start(self) -> Architecture | None:
        """The smallest of `start_samples` unproposed random architectures (by
        parameters, built for the data's shape); None if none is left."""
        drawn = [self.space.sample(self.rng) for _ in range(self.start_samples)]
        fresh = [arch for arch in drawn if arch.id not in self.seen]
        if len(fresh) <= 1:
            return fresh[0] if fresh else None
        with torch.random.fork_rng():
            sizes = [
                count_params(self.space.build(a, self.input_shape, self.num_classes)) for a in fresh
            ]
        return fresh[sizes.index(min(sizes))]

    def _mutant(self, parent: Architecture) -> tuple[Architecture, Lineage]:
        """A one-decision mutation of `parent` that inherits by name and shape."""
        return self.space.mutate(parent, self.rng), Lineage(parent)

    def _child(self, parent: Architecture) -> tuple[Architecture, Lineage]:
        """A child of `parent` and how it derives: 1 to `morphisms` random morphisms on
        the chain space, else (none applies, or another space) a mutation (`_mutant`).
        The morphisms are drawn by architecture alone: the worker replays them on the
        parent's trained weights."""
        from nasflow.morphism import random_step
        from nasflow.search_spaces.chain import ChainArchitecture, ChainSpace

        if isinstance(self.space, ChainSpace) and isinstance(parent, ChainArchitecture):
            arch: ChainArchitecture = parent
            steps: list[MorphStep] = []
            for _ in range(int(self.rng.integers(1, self.morphisms + 1))):
                drawn = random_step(self.space, arch, self.rng, self.operators, self.input_shape[0])
                if drawn is None:
                    break
                arch, step = drawn
                steps.append(step)
            if steps:
                return arch, Lineage(parent, tuple(steps))
        return self._mutant(parent)

    def state_dict(self) -> dict[str, Any]:
        incumbent = self.incumbent
        return {
            **super().state_dict(),
            "incumbent": None if incumbent is None else (incumbent[0].to_json(), incumbent[1]),
            "generation": self.generation,
            "told": [(arch.to_json(), score) for arch, score in self.told],
            "pending": dict(self.pending),
            "seen": sorted(self.seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        incumbent = state["incumbent"]
        self.incumbent = (
            None if incumbent is None else (self.space.from_json(incumbent[0]), incumbent[1])
        )
        self.generation = state["generation"]
        self.told = [(self.space.from_json(data), score) for data, score in state["told"]]
        self.pending = dict(state["pending"])
        self.seen = set(state["seen"])
