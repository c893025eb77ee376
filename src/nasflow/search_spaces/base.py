"""What every search space provides, and the architecture value it hands around.

A space describes its architectures as a *sequence of categorical decisions*: what an RNN
controller emits token by token, what grid search enumerates, what random search samples
and what evolution mutates. A space writes that sequence once, as a `grammar`: a generator
that yields each `Decision` in turn, receives the chosen option label, and finally returns
the architecture. Constraints live in the grammar (a decision offers only the options that
keep the architecture valid), so a sequence that can be emitted is valid by construction
and strategies never need to know a space's rules.

Everything a strategy uses is derived here from the grammar and `to_labels`: the decision
view (`options`, `decode`, `encode`), `validate`, `sample`, `mutate`, `neighbours`,
`enumerate`, `size` and a fixed-length numeric encoding (`features`) over the space's
`catalogue` of every decision it can ask.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from torch import nn

from nasflow.errors import NasflowError
from nasflow.registry import SPACES, Component

Decisions = tuple[int, ...]


class Architecture(ABC):
    """An immutable architecture with a canonical JSON form and a stable hash.

    Subclasses are frozen dataclasses; equality and hashing come from their fields.
    """

    @abstractmethod
    def to_json(self) -> Any:
        """The JSON-compatible form that `SearchSpace.from_json` reads back."""

    @abstractmethod
    def describe(self) -> str:
        """A short one-line summary for logs, e.g. ``conv32(3x3) > max_pool > dense128``."""

    def canonical_json(self) -> str:
        """JSON with sorted keys and no whitespace: equal architectures give equal strings."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @cached_property
    def id(self) -> str:
        """A stable 16-hex-digit hash of the canonical JSON (same in every process and run).

        Computed once per value (strategies ask for it on every query): `cached_property`
        stores it in the instance's __dict__, outside the dataclass fields, so equality and
        hashing are untouched.
        """
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Decision:
    """One categorical decision: its name (e.g. ``layer2.filters``) and its option labels.

    Names are unique within one architecture's sequence; they are how a mutation keeps the
    parent's later choices when an earlier one changes.
    """

    name: str
    choices: tuple[str, ...]


# Yields decisions, receives the chosen labels, returns the architecture.
Grammar = Generator[Decision, str, "Architecture"]


@dataclass(frozen=True)
class Graph:
    """A drawable view of (part of) an architecture: nodes in order and labelled edges.

    Chains are one graph with a node per layer; cell spaces give one graph per cell type.
    """

    title: str
    nodes: tuple[str, ...]
    edges: tuple[tuple[int, int, str], ...]  # (from node, to node, label)
    notes: tuple[str, ...] = field(default=())


class SearchSpace(Component, ABC):
    """A set of architectures, seen as sequences of categorical decisions.

    A subclass writes its `grammar` over option *labels* and the inverse `to_labels`;
    strategies see decisions as option indices (`options`, `decode`, `encode`), which this
    class translates.
    """

    # Every concrete space, by name; a subclass registers itself by defining `name`.
    registry = SPACES

    @classmethod
    @abstractmethod
    def tiny(cls) -> SearchSpace:
        """A small instance whose networks build and train in milliseconds, for tests."""

    @abstractmethod
    def grammar(self) -> Grammar:
        """A fresh generator over this space's decisions (see the module docstring)."""

    @abstractmethod
    def to_labels(self, arch: Architecture) -> list[str]:
        """The labels `arch` would be emitted with (not checked against the space)."""

    @abstractmethod
    def catalogue(self) -> tuple[Decision, ...]:
        """Every decision the grammar can ask, each with every label it can ever offer.

        The fixed layout of `features`: in a variable-length space (the chain) some
        decisions are absent from a given architecture.
        """

    @abstractmethod
    def from_json(self, data: Any) -> Architecture:
        """Parse and validate an architecture; NasflowError naming the reason if invalid."""

    @abstractmethod
    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        """A fresh, randomly initialised network for images of `input_shape` (C, H, W)."""

    @abstractmethod
    def graphs(self, arch: Architecture) -> list[Graph]:
        """The architecture as graphs to draw (see `nasflow.diagram`)."""

    def reference(self, arch: Architecture) -> dict[str, float]:
        """What a published benchmark says of `arch`, as metrics (logged and summarised
        beside the search's own figures); empty for a space without a benchmark."""
        return {}

    def agent_state(self, labels: Sequence[str]) -> tuple[Any, ...]:
        """What an agent that designs architectures decision by decision (MetaQNN's
        Q-learner) knows when it makes the decision after `labels`.

        By default all of them, so the agent's states form a tree: right for a cell,
        where the op on an edge matters with every op chosen before it. A space may
        summarise them into fewer states that its decisions depend on, as MetaQNN's layer
        type, depth and representation size summarise a chain; a state must fix the
        options the grammar offers next.
        """
        return tuple(labels)

    def parse(self, text: str) -> Architecture:
        """An architecture from text a person typed: JSON here; spaces may accept more."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise NasflowError(f"not a {self.name} architecture (invalid JSON: {error})") from None
        return self.from_json(data)

    # -- the grammar, driven ----------------------------------------------------------------

    def _replay(self, labels: Sequence[str]) -> tuple[list[Decision], Decision | Architecture]:
        """Feed `labels` to the grammar.

        Returns:
            The decisions the labels answered, and then either the next decision or, once
            the labels are complete, the architecture.

        Raises:
            NasflowError: a label is not among its decision's options, or there are more
                labels than decisions.
        """
        grammar = self.grammar()
        step: Decision | Architecture = next(grammar)
        asked: list[Decision] = []
        for label in labels:
            if not isinstance(step, Decision):
                raise NasflowError(f"{len(labels) - len(asked)} more labels than decisions")
            if label not in step.choices:
                allowed = ", ".join(step.choices)
                raise NasflowError(f"{step.name}={label} is not allowed here (allowed: {allowed})")
            asked.append(step)
            try:
                step = grammar.send(label)
            except StopIteration as done:
                step = done.value
        return asked, step

    def _drive(self, choose: Callable[[int, Decision], str]) -> tuple[list[str], Architecture]:
        """Run the grammar once, answering decision i with ``choose(i, decision)``."""
        grammar = self.grammar()
        decision = next(grammar)
        labels: list[str] = []
        while True:
            label = choose(len(labels), decision)
            labels.append(label)
            try:
                decision = grammar.send(label)
            except StopIteration as done:
                return labels, done.value

    def next_decision(self, labels: Sequence[str]) -> Decision | None:
        """The decision after the labels chosen so far; None once they form an architecture."""
        _, step = self._replay(labels)
        return step if isinstance(step, Decision) else None

    def from_labels(self, labels: Sequence[str]) -> Architecture:
        """The architecture a complete sequence of labels describes."""
        _, step = self._replay(labels)
        if isinstance(step, Decision):
            raise NasflowError(f"incomplete: {step.name} is missing")
        return step

    # -- the decision view, as strategies see it -----------------------------------------

    def options(self, prefix: Sequence[int]) -> tuple[str, ...]:
        """Labels of the choices after the decisions `prefix`; empty once it is complete."""
        decision = self.next_decision(self._labels(prefix))
        return decision.choices if decision else ()

    def decode(self, decisions: Sequence[int]) -> Architecture:
        """The architecture a complete decision sequence describes."""
        return self.from_labels(self._labels(decisions))

    def encode(self, arch: Architecture) -> Decisions:
        """The decision sequence of `arch`; NasflowError naming the first rule it breaks."""
        labels = self.to_labels(arch)
        try:
            asked, step = self._replay(labels)
        except NasflowError as error:
            raise NasflowError(f"{arch.describe()}: {error}") from None
        if isinstance(step, Decision):
            raise NasflowError(f"{arch.describe()}: incomplete, {step.name} is missing")
        return tuple(d.choices.index(label) for d, label in zip(asked, labels, strict=True))

    def validate(self, arch: Architecture) -> None:
        """Raise NasflowError unless this space can emit `arch`."""
        self.encode(arch)

    def _labels(self, decisions: Sequence[int]) -> list[str]:
        labels: list[str] = []
        for index in decisions:
            decision = self.next_decision(labels)
            if decision is None or not 0 <= index < len(decision.choices):
                raise ValueError(f"decision {len(labels)}={index} is out of range")
            labels.append(decision.choices[index])
        return labels

    # -- derived: sampling, mutation, neighbours ---------------------------------------

    def sample(self, rng: np.random.Generator) -> Architecture:
        """Draw each decision uniformly among its options (so, in the chain, depth first)."""
        return self._drive(lambda _, d: _pick(d.choices, rng))[1]

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A random architecture that differs from `arch` in one decision.

        One decision with more than one option is drawn uniformly and given another of its
        options. Later decisions keep the parent's labels (matched by decision name) where
        those are still allowed and are drawn afresh where not, e.g. the new layer when the
        chain's depth grows. The child always differs from `arch`.
        """
        labels = self.to_labels(arch)
        asked, _ = self._replay(labels)
        mutable = [i for i, d in enumerate(asked) if len(d.choices) > 1]
        if not mutable:
            raise NasflowError(f"{arch.describe()} has no decision with another option")
        position = mutable[int(rng.integers(len(mutable)))]
        others = [c for c in asked[position].choices if c != labels[position]]
        changed = _pick(others, rng)
        return self._resume(labels, asked, position, changed, lambda d: _pick(d.choices, rng))

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every architecture one decision away from `arch`, each once, in a fixed order.

        Like `mutate`, but over every decision and every other option; decisions a change
        brings into being take their first option, so the result is deterministic.
        """
        labels = self.to_labels(arch)
        asked, _ = self._replay(labels)
        seen = {arch}
        found: list[Architecture] = []
        for position, decision in enumerate(asked):
            for label in decision.choices:
                if label == labels[position]:
                    continue
                child = self._resume(labels, asked, position, label, lambda d: d.choices[0])
                if child not in seen:
                    seen.add(child)
                    found.append(child)
        return found

    def _resume(
        self,
        labels: list[str],
        asked: list[Decision],
        position: int,
        label: str,
        fresh: Callable[[Decision], str],
    ) -> Architecture:
        """`labels` with decision `position` set to `label`, the rest kept where allowed."""
        kept = {
            d.name: old
            for d, old in zip(asked[position + 1 :], labels[position + 1 :], strict=True)
        }

        def choose(i: int, decision: Decision) -> str:
            if i < position:
                return labels[i]
            if i == position:
                return label
            old = kept.get(decision.name)
            return old if old in decision.choices else fresh(decision)

        return self._drive(choose)[1]

    # -- derived: enumeration, size, features ------------------------------------------

    def enumerate(self) -> Iterator[Architecture]:
        """Every architecture once, in a deterministic depth-first order."""
        stack: list[list[str]] = [[]]
        while stack:
            labels = stack.pop()
            _, step = self._replay(labels)
            if not isinstance(step, Decision):
                yield step
                continue
            # Reversed so that the first option is expanded first.
            stack.extend([*labels, choice] for choice in reversed(step.choices))

    def size(self) -> int:
        """How many architectures the space holds; spaces with a closed form override this."""
        return sum(1 for _ in self.enumerate())

    def feature_names(self) -> list[str]:
        """Names of the entries of `features`: ``decision=label`` for every catalogue option."""
        return [f"{d.name}={c}" for d in self.catalogue() for c in d.choices]

    def features(self, arch: Architecture) -> np.ndarray:
        """A fixed-length 0/1 vector: one-hot per catalogue decision, zeros where absent.

        The same length for every architecture of the space, for predictors and Bayesian
        optimisation.
        """
        labels = self.to_labels(arch)
        asked, _ = self._replay(labels)
        chosen = {d.name: label for d, label in zip(asked, labels, strict=True)}
        vector: list[float] = []
        for decision in self.catalogue():
            label = chosen.get(decision.name)
            vector += [float(c == label) for c in decision.choices]
        return np.asarray(vector, dtype=np.float32)


def _pick(choices: Sequence[str], rng: np.random.Generator) -> str:
    return choices[int(rng.integers(len(choices)))]
