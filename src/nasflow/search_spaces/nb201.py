"""The NAS-Bench-201 space: one fixed-topology cell, an operation on each of its six edges.

NAS-Bench-201 (Dong & Yang, ICLR 2020) trained every one of its 5**6 = 15,625 cells to
completion, so a search here can be scored against the published table
(`nasflow.tabular.nb201`) instead of by training. That only holds if the cell and the
network around it are exactly the benchmark's, which is why this module follows the
paper's definitions to the parameter (a test checks the counts against the table):

* The cell is a DAG of 4 nodes. Node 0 is the cell's input; node i (1..3) is the sum of
  ``op_{j,i}(node j)`` over every j < i; node 3 is the cell's output. Each of the six
  edges carries one of ``none`` (no connection), ``skip_connect``, ``nor_conv_1x1``,
  ``nor_conv_3x3`` and ``avg_pool_3x3``.
* The network ("TinyNetwork"): a 3x3 convolution stem with batch norm, three stages of N
  cells at C, 2C and 4C channels with a residual block that halves the resolution between
  stages, then batch norm, ReLU, global average pooling and a linear classifier.

An architecture is written as the benchmark writes it,
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: one ``|...|`` group per node 1..3, listing the
operation on each incoming edge followed by ``~`` and the source node. That string is the
canonical JSON (``{"cell": "..."}``), the one-line description and what `parse` accepts,
so arch strings copied from the paper, the table or other tools work unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt
from nasflow.search_spaces.base import Architecture, Decision, Grammar, Graph, SearchSpace
from nasflow.search_spaces.ops import ReLUConvBN, Zero

# The benchmark's operations, in its official order (the order of its op indices).
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
# The edges (source j, target i), in the order of the official string: by target, then source.
EDGES = tuple((j, i) for i in range(1, NODES) for j in range(i))
EDGE_NAMES = tuple(f"edge{i}<-{j}" for j, i in EDGES)
EXAMPLE = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"


@dataclass(frozen=True)
class NB201Architecture(Architecture):
    """A NAS-Bench-201 cell: the operation on each of the six edges, in `EDGES` order."""

    edges: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.edges) != len(EDGES):
            raise NasflowError(
                f"an NB201 cell has {len(EDGES)} edges, got {len(self.edges)}: {self.edges}"
            )

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.describe()}

    def describe(self) -> str:
        """The official NB201 string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        groups, first = [], 0  # `first`: the index of node `target`'s first input edge
        for target in range(1, NODES):
            inputs = self.edges[first : first + target]
            groups.append("|" + "|".join(f"{op}~{j}" for j, op in enumerate(inputs)) + "|")
            first += target
        return "+".join(groups)


def parse_cell(text: str) -> tuple[str, ...]:
    """The six edge operations of an official NB201 string.

    Raises:
        NasflowError: naming the part of `text` that does not follow the format.
    """
    nodes = text.strip().split("+")
    if len(nodes) != NODES - 1:
        raise NasflowError(
            f"an NB201 cell has {NODES - 1} nodes separated by '+' (like {EXAMPLE}), "
            f"got {len(nodes)} in {text!r}"
        )
    ops: list[str] = []
    for target, node in enumerate(nodes, start=1):
        if len(node) < 2 or node[0] != "|" or node[-1] != "|":
            raise NasflowError(f"node {target} must be written |op~0|...|, got {node!r}")
        inputs = node[1:-1].split("|")
        if len(inputs) != target:
            raise NasflowError(
                f"node {target} must have {target} input edge(s), one from each earlier node, "
                f"got {len(inputs)} in {node!r}"
            )
        for source, token in enumerate(inputs):
            op, tilde, written = token.partition("~")
            if not tilde or written != str(source):
                raise NasflowError(
                    f"node {target}: input {source} must be written {{op}}~{source}, got {token!r}"
                )
            if op not in OPS:
                raise NasflowError(f"unknown NB201 op {op!r} in {token!r}; ops: {', '.join(OPS)}")
            ops.append(op)
    return tuple(ops)


class NB201Space(SearchSpace):
    """NAS-Bench-201 cells (5**6 = 15,625 with every op allowed) and their network.

    Args:
        channels: C, the channels of the first stage (2C and 4C follow); 16 in the benchmark.
        cells_per_stage: N, the cells in each of the three stages; 5 in the benchmark.
        ops: The operations an edge may take, a subset of `OPS` (kept in the official order).
    """

    name = "nb201"

    def __init__(
        self, channels: PositiveInt = 16, cells_per_stage: PositiveInt = 5, ops: Sequence[str] = OPS
    ) -> None:
        for key, value in (("channels", channels), ("cells_per_stage", cells_per_stage)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NasflowError(f"search_space.{key} must be a positive integer, got {value!r}")
        unknown = [op for op in ops if op not in OPS]
        if unknown or not ops:
            raise NasflowError(
                f"search_space.ops: {unknown or 'empty'} not allowed; choose from {', '.join(OPS)}"
            )
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.ops = tuple(op for op in OPS if op in ops)

    @classmethod
    def tiny(cls) -> NB201Space:
        return cls(channels=4, cells_per_stage=1)

    # -- the grammar --------------------------------------------------------------------

    def grammar(self) -> Grammar:
        # No constraints: every edge takes any allowed op, even one that disconnects the
        # cell's output from its input; the benchmark trained those cells too.
        edges = []
        for name in EDGE_NAMES:
            edges.append((yield Decision(name, self.ops)))
        return NB201Architecture(tuple(edges))

    def to_labels(self, arch: Architecture) -> list[str]:
        return list(_check_arch(arch).edges)

    def size(self) -> int:
        return len(self.ops) ** len(EDGES)

    def catalogue(self) -> tuple[Decision, ...]:
        return tuple(Decision(name, self.ops) for name in EDGE_NAMES)

    def reference(self, arch: Architecture) -> dict[str, float]:
        """What the NAS-Bench-201 table says of the cell (whatever data the search ran
        on): its CIFAR-10 test accuracy after 200 epochs in the benchmark's own network
        and training, and the percentage of the 15,625 cells that beat it."""
        # Imported here: a space builds networks without its benchmark (retrain and
        # evaluate never read the table, so it is no dependency of theirs).
        from nasflow.tabular.nb201 import load_table

        assert isinstance(arch, NB201Architecture)
        table = load_table()
        accuracies = table.columns["cifar10_test_acc"]
        accuracy = float(accuracies[table.index_of(arch.describe())])
        return {
            "nb201_cifar10_test_acc": accuracy,
            "nb201_top_percent": round(100.0 * float((accuracies > accuracy).mean()), 3),
        }

    def graphs(self, arch: Architecture) -> list[Graph]:
        arch = _check_arch(arch)
        edges = tuple(
            (j, i, op) for op, (j, i) in zip(arch.edges, EDGES, strict=True) if op != "none"
        )
        c, n = self.channels, self.cells_per_stage
        notes = (
            "each node sums its inputs; 'none' edges are not drawn",
            f"the cell is repeated {n} times in each of 3 stages at {c}, {2 * c} and {4 * c} "
            "channels, with a residual block halving the resolution between stages",
        )
        return [Graph("NB201 cell", ("input", "1", "2", "output"), edges, notes)]

    # -- text and JSON ------------------------------------------------------------------

    def from_json(self, data: Any) -> NB201Architecture:
        """Read ``{"cell": "<official string>"}`` or the bare official string."""
        if isinstance(data, dict) and set(data) == {"cell"} and isinstance(data["cell"], str):
            text = data["cell"]
        elif isinstance(data, str):
            text = data
        else:
            raise NasflowError(
                f'an NB201 architecture is {{"cell": "{EXAMPLE}"}}, got {repr(data)[:120]}'
            )
        arch = NB201Architecture(parse_cell(text))
        self.validate(arch)  # an op that is valid in NB201 may be outside this space's `ops`
        return arch

    def parse(self, text: str) -> NB201Architecture:
        """The official string as typed (``|nor_conv_3x3~0|+|...|``), or its JSON form.

        Text that opens like JSON (an object, array or string) is read as JSON; anything
        else as the official string, so a mistyped string gets the string format's errors.
        """
        if not text.lstrip().startswith(("{", "[", '"')):
            return self.from_json(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise NasflowError(f"not an NB201 architecture (invalid JSON: {error})") from None
        return self.from_json(data)

    # -- the network --------------------------------------------------------------------

    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        arch = _check_arch(arch)
        if len(input_shape) != 3:
            raise NasflowError(f"NB201 networks take images (C, H, W), got shape {input_shape}")
        return NB201Network(arch, input_shape[0], num_classes, self.channels, self.cells_per_stage)


def _check_arch(arch: Architecture) -> NB201Architecture:
    if not isinstance(arch, NB201Architecture):
        raise NasflowError(f"not an NB201 architecture: {type(arch).__name__}")
    return arch


def edge_op(op: str, channels: int, affine: bool = True) -> nn.Module:
    """The module of one cell edge, as the benchmark defines it (stride 1, C to C channels).

    `affine` is the convolutions' batch norm's (a search supernet turns it off, see
    `nasflow.oneshot.supernet.NB201Supernet`).
    """
    if op == "none":
        return Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    kernel = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}[op]
    return ReLUConvBN(channels, channels, kernel, stride=1, padding=kernel // 2, affine=affine)


class NB201Cell(nn.Module):
    """The cell: node i = sum of the edge ops applied to nodes j < i; node 3 is the output."""

    def __init__(self, arch: NB201Architecture, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(edge_op(op, channels) for op in arch.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        first = 0  # index in `self.edges` of the first edge into the current node
        for target in range(1, NODES):
            total = self.edges[first](nodes[0])
            for source in range(1, target):
                total = total + self.edges[first + source](nodes[source])
            nodes.append(total)
            first += target
        return nodes[-1]


class ResidualReduction(nn.Module):
    """The benchmark's block between stages: a ResNet basic block of stride 2.

    The shortcut average-pools with ``ceil_mode`` so that odd sizes (7x7 after halving a
    14x14 map, say) give the same size as the strided convolution; on even sizes, as in the
    benchmark's 32x32 images, it is exactly the reference's 2x2 pooling.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2, padding=1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1, padding=1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def stem(in_channels: int, channels: int) -> nn.Sequential:
    """The benchmark network's stem: a 3x3 convolution and batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
    )


def stages(
    channels: int, cells_per_stage: int, cell: Callable[[int], nn.Module]
) -> tuple[list[nn.Module], int]:
    """The three stages of `cells_per_stage` cells (``cell(width)``) at C, 2C and 4C
    channels with a `ResidualReduction` between stages, and the final width."""
    blocks: list[nn.Module] = []
    width = channels
    for stage in range(3):
        if stage > 0:
            blocks.append(ResidualReduction(width, 2 * width))
            width *= 2
        blocks += [cell(width) for _ in range(cells_per_stage)]
    return blocks, width


def head(width: int, num_classes: int) -> nn.Sequential:
    """The benchmark network's head: batch norm, ReLU, global pooling, a linear layer."""
    return nn.Sequential(
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


class NB201Network(nn.Module):
    """The benchmark's macro network around a cell (its "TinyNetwork")."""

    def __init__(
        self,
        arch: NB201Architecture,
        in_channels: int,
        num_classes: int,
        channels: int,
        cells_per_stage: int,
    ) -> None:
        super().__init__()
        self.stem = stem(in_channels, channels)
        blocks, width = stages(channels, cells_per_stage, lambda c: NB201Cell(arch, c))
        self.cells = nn.Sequential(*blocks)
        self.head = head(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))
