"""What every search space provides, and the architecture value it hands around.

A space describes its architectures as a *sequence of categorical decisions*: what an RNN
controller emits token by token, what grid search enumerates and what random search
samples. A space implements three things about that sequence, in terms of option labels:
which decision comes next given the labels chosen so far (`next_decision`), how a complete
sequence becomes an architecture (`from_labels`) and back (`to_labels`). Everything else
here is derived from them. Constraints live in `next_decision`: a sequence that can be
emitted is valid by construction, so strategies never have to know the rules of a space.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import nn

from nasflow.errors import NasflowError

Decisions = tuple[int, ...]


class Architecture(ABC):
    """An immutable architecture with a canonical JSON form and a stable hash.

    Subclasses are frozen dataclasses; equality and hashing come from their fields.
    """

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The JSON-compatible form that `SearchSpace.from_json` reads back."""

    @abstractmethod
    def describe(self) -> str:
        """A short one-line summary for logs, e.g. ``conv32(3x3) > max_pool > dense128``."""

    def canonical_json(self) -> str:
        """JSON with sorted keys and no whitespace: equal architectures give equal strings."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """A stable 16-hex-digit hash of the canonical JSON (same in every process and run)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Decision:
    """One categorical decision: its name (e.g. ``layer2.filters``) and its option labels."""

    name: str
    choices: tuple[str, ...]


class SearchSpace(ABC):
    """A set of architectures, seen as sequences of categorical decisions.

    A subclass writes its grammar over option *labels* (`next_decision`, `from_labels`,
    `to_labels`); strategies see decisions as option indices (`options`, `decode`,
    `encode`), which this class translates.
    """

    name: ClassVar[str]

    @abstractmethod
    def next_decision(self, labels: Sequence[str]) -> Decision | None:
        """The decision after the labels chosen so far; None once they form an architecture."""

    @abstractmethod
    def from_labels(self, labels: Sequence[str]) -> Architecture:
        """The architecture a complete sequence of labels describes."""

    @abstractmethod
    def to_labels(self, arch: Architecture) -> list[str]:
        """The labels `arch` would be emitted with (not checked against the space)."""

    @abstractmethod
    def from_json(self, data: Any) -> Architecture:
        """Parse and validate an architecture; NasflowError naming the reason if invalid."""

    @abstractmethod
    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        """A fresh, randomly initialised network for images of `input_shape` (C, H, W)."""

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
        decisions: list[int] = []
        for i, label in enumerate(labels):
            decision = self.next_decision(labels[:i])
            if decision is None:
                raise NasflowError(f"{arch.describe()}: more layers than this space allows")
            if label not in decision.choices:
                allowed = ", ".join(decision.choices)
                raise NasflowError(
                    f"{arch.describe()}: {decision.name}={label} is not allowed here "
                    f"(allowed: {allowed})"
                )
            decisions.append(decision.choices.index(label))
        if (decision := self.next_decision(labels)) is not None:
            raise NasflowError(f"{arch.describe()}: incomplete, {decision.name} is missing")
        return tuple(decisions)

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

    # -- derived: sampling, enumeration, size -------------------------------------------

    def sample(self, rng: np.random.Generator) -> Architecture:
        """Draw each decision uniformly among its options (so depth first, then layers)."""
        labels: list[str] = []
        while decision := self.next_decision(labels):
            labels.append(decision.choices[int(rng.integers(len(decision.choices)))])
        return self.from_labels(labels)

    def enumerate(self) -> Iterator[Architecture]:
        """Every architecture once, in a deterministic depth-first order."""
        stack: list[list[str]] = [[]]
        while stack:
            labels = stack.pop()
            decision = self.next_decision(labels)
            if decision is None:
                yield self.from_labels(labels)
                continue
            # Reversed so that the first option is expanded first.
            stack.extend([*labels, choice] for choice in reversed(decision.choices))

    def size(self) -> int:
        """How many architectures the space holds; spaces with a closed form override this."""
        return sum(1 for _ in self.enumerate())
