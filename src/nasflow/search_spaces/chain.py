"""The global, chain-structured space: a sequence of layers of variable depth.

As the NAS overview (Elsken et al. 2019) describes it: each layer is a convolution (number
of filters, kernel height and width, optional skip connection), max or average pooling,
global average pooling, or a dense layer with an activation; a linear classifier follows
the last one. The grammar below enforces the usual constraints:

* the first layer is a convolution: no pooling first, no dense layer before a convolution;
* once the feature map is flattened (global pooling or dense), only dense layers follow;
* no two pooling layers in a row, and at most `max_pooling` of them, so small images
  (8x8 digits) are not pooled away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

from nasflow.errors import NasflowError
from nasflow.ranges import NonNegativeInt, PositiveInt
from nasflow.search_spaces.base import Architecture, Decision, Grammar, Graph, SearchSpace

OPS = ("conv", "max_pool", "avg_pool", "gap", "dense")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
# Which fields each operation carries, in decision order.
OP_FIELDS = {
    "conv": ("filters", "kernel_h", "kernel_w", "skip"),
    "max_pool": (),
    "avg_pool": (),
    "gap": (),
    "dense": ("units", "activation"),
}
FIELD_TYPES = {
    "filters": int,
    "kernel_h": int,
    "kernel_w": int,
    "skip": bool,
    "units": int,
    "activation": str,
}


@dataclass(frozen=True)
class Layer:
    """One layer of a chain; fields that the operation does not use keep their defaults."""

    op: str
    filters: int = 0
    kernel_h: int = 0
    kernel_w: int = 0
    skip: bool = False
    units: int = 0
    activation: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, **{name: getattr(self, name) for name in OP_FIELDS[self.op]}}

    def describe(self) -> str:
        if self.op == "conv":
            skip = "+skip" if self.skip else ""
            return f"conv{self.filters}({self.kernel_h}x{self.kernel_w}){skip}"
        if self.op == "dense":
            return f"dense{self.units}({self.activation})"
        return self.op


@dataclass(frozen=True)
class ChainArchitecture(Architecture):
    """A chain of layers, input to classifier."""

    layers: tuple[Layer, ...]

    def to_json(self) -> dict[str, Any]:
        return {"layers": [layer.to_json() for layer in self.layers]}

    def describe(self) -> str:
        return " > ".join(layer.describe() for layer in self.layers)


# Where the chain stands after a layer: nothing yet, after a convolution, after a pooling
# layer, or flattened. With the number of pooling layers so far it decides what may follow.
_START, _CONV, _POOL, _FLAT = "start", "conv", "pool", "flat"


class ChainSpace(SearchSpace):
    """Chains of `min_layers`..`max_layers` layers drawn from the configured choices.

    Args:
        min_layers: Fewest layers (before the classifier).
        max_layers: Most layers.
        ops: Operations allowed, a subset of conv, max_pool, avg_pool, gap, dense.
        filters: Choices for a convolution's number of filters.
        kernel_sizes: Choices for a convolution's kernel height and, separately, its width.
        skip: Whether a convolution may carry a residual skip connection.
        dense_units: Choices for a dense layer's width.
        activations: Choices for a dense layer's activation.
        max_pooling: Most pooling layers in one chain (each halves the feature map).
    """

    name = "chain"

    def __init__(
        self,
        min_layers: PositiveInt = 1,
        max_layers: PositiveInt = 4,
        ops: Sequence[str] = OPS,
        filters: Sequence[PositiveInt] = (32, 64),
        kernel_sizes: Sequence[PositiveInt] = (3, 5),
        skip: bool = True,
        dense_units: Sequence[PositiveInt] = (128,),
        activations: Sequence[str] = ("relu",),
        max_pooling: NonNegativeInt = 2,
    ) -> None:
        if not 1 <= min_layers <= max_layers:
            raise NasflowError(
                f"search_space: need 1 <= min_layers <= max_layers, got {min_layers}..{max_layers}"
            )
        _check_subset("ops", ops, OPS)
        if "conv" not in ops:
            raise NasflowError("search_space.ops must include 'conv': every chain starts with one")
        _check_subset("activations", activations, tuple(ACTIVATIONS))
        for key, values in (("filters", filters), ("kernel_sizes", kernel_sizes)):
            if not values or any(int(v) < 1 for v in values):
                raise NasflowError(f"search_space.{key} must be positive integers, got {values}")
        if "dense" in ops and (not dense_units or any(int(v) < 1 for v in dense_units)):
            raise NasflowError(f"search_space.dense_units must be positive, got {dense_units}")
        self.min_layers, self.max_layers = min_layers, max_layers
        self.ops = tuple(op for op in OPS if op in ops)
        self.max_pooling = max_pooling
        # The option labels of each layer field, in the order the fields are decided.
        self.field_choices: dict[str, tuple[str, ...]] = {
            "filters": tuple(str(int(f)) for f in filters),
            "kernel_h": tuple(str(int(k)) for k in kernel_sizes),
            "kernel_w": tuple(str(int(k)) for k in kernel_sizes),
            "skip": ("false", "true") if skip else ("false",),
            "units": tuple(str(int(u)) for u in dense_units),
            "activation": tuple(activations),
        }
        # Memoised per instance: the grammar asks the same counts for every decision.
        self._count = cache(self._count_uncached)

    def __getstate__(self) -> dict[str, Any]:
        # The memo is rebuilt where the space is unpickled (a Ray worker, say).
        return {k: v for k, v in self.__dict__.items() if k != "_count"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._count = cache(self._count_uncached)

    @classmethod
    def tiny(cls) -> ChainSpace:
        return cls(min_layers=1, max_layers=3, filters=[4, 8], kernel_sizes=[1, 3], dense_units=[8])

    # -- the grammar ------------------------------------------------------------------

    def _next_state(self, state: tuple[str, int], op: str) -> tuple[str, int] | None:
        """The state after appending `op`, or None where the constraints forbid it."""
        phase, pools = state
        if op == "conv":
            return (_CONV, pools) if phase != _FLAT else None
        if op in ("max_pool", "avg_pool"):
            ok = phase == _CONV and pools < self.max_pooling
            return (_POOL, pools + 1) if ok else None
        if op == "gap":
            return (_FLAT, pools) if phase in (_CONV, _POOL) else None
        return (_FLAT, pools) if phase != _START else None  # dense

    def _variants(self, op: str) -> int:
        return math.prod(len(self.field_choices[f]) for f in OP_FIELDS[op])

    def _count_uncached(self, state: tuple[str, int], remaining: int) -> int:
        """How many ways `remaining` more layers can follow `state` (0 = a dead end)."""
        if remaining == 0:
            return 1
        total = 0
        for op in self.ops:
            if (nxt := self._next_state(state, op)) is not None:
                total += self._variants(op) * self._count(nxt, remaining - 1)
        return total

    def _allowed_ops(self, state: tuple[str, int], remaining: int) -> tuple[str, ...]:
        # Only operations after which the rest of the chain can still be completed.
        return tuple(
            op
            for op in self.ops
            if (nxt := self._next_state(state, op)) is not None
            and self._count(nxt, remaining - 1) > 0
        )

    def grammar(self) -> Grammar:
        depths = tuple(
            str(d)
            for d in range(self.min_layers, self.max_layers + 1)
            if self._count((_START, 0), d) > 0
        )
        depth = int((yield Decision("depth", depths)))
        state, layers = (_START, 0), []
        for i in range(depth):
            op = yield Decision(f"layer{i}.op", self._allowed_ops(state, depth - i))
            values: dict[str, Any] = {}
            for field in OP_FIELDS[op]:
                values[field] = yield Decision(f"layer{i}.{field}", self.field_choices[field])
            layers.append(_layer_from_labels(op, values))
            state = self._next_state(state, op)  # type: ignore[assignment]
        return ChainArchitecture(tuple(layers))

    def agent_state(self, labels: Sequence[str]) -> tuple[Any, ...]:
        """MetaQNN's state of a chain (Baker et al. 2017): the depth chosen, which layer
        is being decided, the previous layer (its op and fields), the representation size
        (how many poolings so far) and what is decided of the current layer."""
        if not labels:
            return ("depth",)
        rest, index, pools = tuple(labels[1:]), 0, 0
        previous: tuple[str, ...] = ()
        # Whole layers first (an op and its fields), then what there is of the current one.
        while rest and len(rest) > (size := len(OP_FIELDS[rest[0]])):
            previous, rest = rest[: 1 + size], rest[1 + size :]
            pools += previous[0] in ("max_pool", "avg_pool")
            index += 1
        return (labels[0], index, pools, previous, rest)

    def to_labels(self, arch: Architecture) -> list[str]:
        if not isinstance(arch, ChainArchitecture):
            raise NasflowError(f"not a chain architecture: {type(arch).__name__}")
        labels = [str(len(arch.layers))]
        for layer in arch.layers:
            labels.append(layer.op)
            for field in OP_FIELDS[layer.op]:
                value = getattr(layer, field)
                labels.append(str(value).lower() if isinstance(value, bool) else str(value))
        return labels

    def size(self) -> int:
        return sum(self._count((_START, 0), d) for d in range(self.min_layers, self.max_layers + 1))

    def catalogue(self) -> tuple[Decision, ...]:
        depths = tuple(str(d) for d in range(self.min_layers, self.max_layers + 1))
        decisions = [Decision("depth", depths)]
        for i in range(self.max_layers):
            decisions.append(Decision(f"layer{i}.op", self.ops))
            fields = dict.fromkeys(f for op in self.ops for f in OP_FIELDS[op])
            decisions += [Decision(f"layer{i}.{f}", self.field_choices[f]) for f in fields]
        return tuple(decisions)

    def graphs(self, arch: Architecture) -> list[Graph]:
        if not isinstance(arch, ChainArchitecture):
            raise NasflowError(f"not a chain architecture: {type(arch).__name__}")
        nodes = ("input", *(layer.describe() for layer in arch.layers), "classifier")
        edges = [(i, i + 1, "") for i in range(len(nodes) - 1)]
        return [Graph("chain", nodes, tuple(edges))]

    # -- JSON -----------------------------------------------------------------------------

    def from_json(self, data: Any) -> ChainArchitecture:
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise NasflowError('a chain architecture is {"layers": [...]}, got ' + repr(data)[:80])
        layers = []
        for i, item in enumerate(data["layers"]):
            if not isinstance(item, dict) or item.get("op") not in OP_FIELDS:
                raise NasflowError(f"layer {i}: 'op' must be one of {', '.join(OPS)}; got {item}")
            expected = {"op", *OP_FIELDS[item["op"]]}
            if set(item) != expected:
                got = sorted(item)
                raise NasflowError(
                    f"layer {i} ({item['op']}): expected keys {sorted(expected)}, got {got}"
                )
            layers.append(_layer_from_json(i, item))
        arch = ChainArchitecture(tuple(layers))
        self.validate(arch)
        return arch

    # -- the network ----------------------------------------------------------------------

    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        if not isinstance(arch, ChainArchitecture):
            raise NasflowError(f"not a chain architecture: {type(arch).__name__}")
        return ChainNetwork(arch, tuple(input_shape), num_classes)


def _check_subset(key: str, values: Sequence[str], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        choices = ", ".join(allowed)
        raise NasflowError(
            f"search_space.{key}: {unknown or 'empty'} not allowed; choose from {choices}"
        )


def _layer_from_labels(op: str, values: dict[str, str]) -> Layer:
    parsed: dict[str, Any] = {}
    for name, label in values.items():
        if name == "skip":
            parsed[name] = label == "true"
        elif name == "activation":
            parsed[name] = label
        else:
            parsed[name] = int(label)
    return Layer(op=op, **parsed)


def _layer_from_json(i: int, item: dict[str, Any]) -> Layer:
    for name in OP_FIELDS[item["op"]]:
        value, wanted = item[name], FIELD_TYPES[name]
        # `type(...) is` on purpose: JSON true is a Python int, but not a filter count.
        if type(value) is not wanted:
            raise NasflowError(f"layer {i}: {name} must be {wanted.__name__}, got {value!r}")
    return Layer(**item)


class ChainNetwork(nn.Module):
    """The network of a chain architecture; shapes are tracked as layers are added."""

    def __init__(self, arch: ChainArchitecture, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        channels, height, width = input_shape
        features: int | None = None  # set once the map is flattened
        blocks: list[nn.Module] = []
        # Where each layer's weights are in `self.layers` (None for pooling): what a
        # morphism (`nasflow.morphism`) copies from a parent.
        self._weights: list[int | None] = []
        for layer in arch.layers:
            self._weights.append(
                None if layer.op in ("max_pool", "avg_pool", "gap")
                else len(blocks) + (layer.op == "dense" and features is None)
            )  # fmt: skip
            if layer.op == "conv":
                blocks.append(ConvBlock(channels, layer))
                channels = layer.filters
            elif layer.op in ("max_pool", "avg_pool"):
                pool = nn.MaxPool2d if layer.op == "max_pool" else nn.AvgPool2d
                # ceil_mode keeps a 1x1 map 1x1 instead of failing on odd or tiny inputs.
                blocks.append(pool(kernel_size=2, stride=2, ceil_mode=True))
                height, width = math.ceil(height / 2), math.ceil(width / 2)
            elif layer.op == "gap":
                blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
                features = channels
            else:  # dense
                if features is None:
                    blocks.append(nn.Flatten())
                    features = channels * height * width
                blocks += [nn.Linear(features, layer.units), ACTIVATIONS[layer.activation]()]
                features = layer.units
        if features is None:
            blocks.append(nn.Flatten())
            features = channels * height * width
        blocks.append(nn.Linear(features, num_classes))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def layer_module(self, index: int) -> nn.Module | None:
        """The module holding layer `index`'s weights (its ConvBlock or Linear); None for
        a pooling layer."""
        where = self._weights[index]
        return None if where is None else self.layers[where]

    @property
    def classifier(self) -> nn.Linear:
        classifier = self.layers[-1]
        assert isinstance(classifier, nn.Linear)
        return classifier


class ConvBlock(nn.Module):
    """Convolution, batch norm and ReLU, with an optional (projected) residual connection."""

    def __init__(self, in_channels: int, layer: Layer):
        super().__init__()
        kernel = (layer.kernel_h, layer.kernel_w)
        self.conv = nn.Conv2d(in_channels, layer.filters, kernel, padding="same", bias=False)
        self.norm = nn.BatchNorm2d(layer.filters)
        self.shortcut: nn.Module | None = None
        if layer.skip:
            self.shortcut = (
                nn.Identity()
                if in_channels == layer.filters
                else nn.Sequential(
                    nn.Conv2d(in_channels, layer.filters, 1, bias=False),
                    nn.BatchNorm2d(layer.filters),
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return torch.relu(y)
