"""The DARTS search space: a normal and a reduction cell stacked into DARTS' network.

As in DARTS (Liu et al., ICLR 2019), a cell has two inputs (the outputs of the two previous
cells, c_{k-2} and c_{k-1}) and four intermediate nodes. Intermediate node k+2 sums two
operations, each applied to one of its predecessors 0..k+1, and the cell's output
concatenates all four intermediate nodes. A genotype is written the way DARTS writes it:
per cell type eight (op, input) pairs, two per node, plus the concatenated nodes.

DARTS derives a discrete genotype from its supernet by keeping, for every node, the two
strongest edges from *distinct* predecessors, never ``none``. The grammar below emits
exactly those genotypes: per node the first input, a second input greater than the first
(so a node has one form, whatever order its two pairs were written in), then the two
operations. The evaluation network is DARTS' NetworkCIFAR without the auxiliary head.

At a little over 500 lines this module is one concern, the space: its grammar, the
network it builds and the published genotypes (DARTS V1 and V2) must agree on the
genotype's form, and read best side by side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from annotated_types import Ge
from torch import nn

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt
from nasflow.search_spaces.base import Architecture, Decision, Grammar, Graph, SearchSpace
from nasflow.search_spaces.ops import DilConv, FactorizedReduce, ReLUConvBN, SepConv, Zero, pool

NODES = 4  # intermediate nodes per cell
CONCAT = (2, 3, 4, 5)  # DARTS concatenates every intermediate node
CELL_TYPES = ("normal", "reduce")

Pair = tuple[str, int]  # (operation, input node)
OpConstructor = Callable[[int, int, bool], nn.Module]  # (channels, stride, affine)

# The eight candidate operations, with DARTS' definitions. `affine` is False in the
# supernet (its mixed operations are weighted by the architecture parameters instead).
OPS: dict[str, OpConstructor] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: pool("max", 3, stride),
    "avg_pool_3x3": lambda c, stride, affine: pool("avg", 3, stride),
    # At stride 2 the identity cannot halve the map, so it becomes a factorized reduce.
    "skip_connect": lambda c, stride, affine: (
        nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)
    ),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}
PRIMITIVES = tuple(OPS)
# A derived genotype never contains `none`: these are the discrete space's choices.
DISCRETE_OPS = tuple(op for op in PRIMITIVES if op != "none")

_SHORT = {
    "none": "none",
    "max_pool_3x3": "max3",
    "avg_pool_3x3": "avg3",
    "skip_connect": "skip",
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "dil_conv_3x3": "dil3",
    "dil_conv_5x5": "dil5",
}


def make_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """One DARTS operation mapping `channels` to `channels`, halving the map at stride 2."""
    return OPS[name](channels, stride, affine)


@dataclass(frozen=True, kw_only=True)
class DartsGenotype(Architecture):
    """A DARTS genotype: per cell type, two (op, input) pairs per node and the concat.

    The pairs of each node are sorted by input on construction. A node's value is the sum
    of its two operations, so both orders describe the same cell; sorting gives that cell
    one JSON form and one hash.
    """

    normal: tuple[Pair, ...]
    reduce: tuple[Pair, ...]
    normal_concat: tuple[int, ...] = CONCAT
    reduce_concat: tuple[int, ...] = CONCAT

    def __post_init__(self) -> None:
        for cell in CELL_TYPES:
            object.__setattr__(self, cell, _canonical(getattr(self, cell)))
            concat = f"{cell}_concat"
            object.__setattr__(self, concat, tuple(getattr(self, concat)))

    def to_json(self) -> dict[str, Any]:
        return {
            "normal": [[op, index] for op, index in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, index] for op, index in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def describe(self) -> str:
        """E.g. ``normal: sep3(0)+sep3(1) ... | reduce: max3(0)+max3(1) ...``."""
        return " | ".join(f"{cell}: {_describe_cell(getattr(self, cell))}" for cell in CELL_TYPES)


def _canonical(pairs: Sequence[Sequence[Any]]) -> tuple[Pair, ...]:
    """The pairs as tuples, each node's two sorted by (input, op).

    Malformed genotypes (an odd number of pairs) are kept as given, so that validation
    can report them instead of failing here.
    """
    items = [(pair[0], pair[1]) for pair in pairs]
    for start in range(0, len(items) - 1, 2):
        items[start : start + 2] = sorted(items[start : start + 2], key=lambda p: (p[1], p[0]))
    return tuple(items)


def _describe_cell(pairs: Sequence[Pair]) -> str:
    terms = [f"{_SHORT.get(op, op)}({index})" for op, index in pairs]
    return " ".join("+".join(terms[i : i + 2]) for i in range(0, len(terms), 2))


# The genotypes published with DARTS (first- and second-order search on CIFAR-10), written
# in the paper's order; construction puts each node's pairs in canonical order.
DARTS_V1 = DartsGenotype(
    normal=(
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("skip_connect", 2),
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 0),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("avg_pool_3x3", 0),
    ),
)  # fmt: skip
DARTS_V2 = DartsGenotype(
    normal=(
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0),
        ("skip_connect", 0), ("dil_conv_3x3", 2),
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2),
        ("skip_connect", 2), ("max_pool_3x3", 1),
    ),
)  # fmt: skip
GENOTYPES: dict[str, DartsGenotype] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2}


class DartsSpace(SearchSpace):
    """DARTS genotypes over `ops`, built into DARTS' network of `layers` cells.

    Retraining a found genotype larger than it was searched (DARTS: searched at 16 channels
    and 8 cells, evaluated at 36 and 20) is another instance of this space.

    Args:
        channels: Channels C of the first cells; each reduction cell doubles them.
        layers: Cells in all; the reduction cells sit at layers//3 and 2*layers//3.
        stem_multiplier: The stem convolution has stem_multiplier * C channels.
        ops: The operations a genotype may use, a subset of the seven besides ``none``.
    """

    name = "darts"

    def __init__(
        self,
        channels: PositiveInt = 16,
        layers: Annotated[int, Ge(3)] = 8,  # both cell types: normal and reduction
        stem_multiplier: PositiveInt = 3,
        ops: Sequence[str] = DISCRETE_OPS,
    ) -> None:
        for key, value, low in (("channels", channels, 1), ("stem_multiplier", stem_multiplier, 1)):
            if int(value) < low:
                raise NasflowError(f"search_space.{key} must be at least {low}, got {value}")
        if int(layers) < 3:
            raise NasflowError(
                f"search_space.layers must be at least 3 (so that both cell types are used), "
                f"got {layers}"
            )
        _check_ops(ops)
        self.channels, self.layers = int(channels), int(layers)
        self.stem_multiplier = int(stem_multiplier)
        # In PRIMITIVES order whatever the configured order, so that option indices agree.
        self.ops = tuple(op for op in DISCRETE_OPS if op in ops)

    @classmethod
    def tiny(cls) -> DartsSpace:
        # Three cells are the fewest with both types: one normal cell, then two reductions.
        return cls(channels=4, layers=3)

    # -- the grammar ------------------------------------------------------------------

    def grammar(self) -> Grammar:
        cells: dict[str, tuple[Pair, ...]] = {}
        for cell in CELL_TYPES:
            pairs: list[Pair] = []
            for node in range(2, 2 + NODES):
                prefix = f"{cell}.node{node}"
                first = int((yield Decision(f"{prefix}.in0", _labels(range(node - 1)))))
                second = int((yield Decision(f"{prefix}.in1", _labels(range(first + 1, node)))))
                op0 = yield Decision(f"{prefix}.op0", self.ops)
                op1 = yield Decision(f"{prefix}.op1", self.ops)
                pairs += [(op0, first), (op1, second)]
            cells[cell] = tuple(pairs)
        return DartsGenotype(normal=cells["normal"], reduce=cells["reduce"])

    def to_labels(self, arch: Architecture) -> list[str]:
        # Only the pairs are decided; a genotype with another concat has no labels at all.
        genotype = _check_genotype(arch)
        labels: list[str] = []
        for cell in CELL_TYPES:
            pairs = getattr(genotype, cell)
            for start in range(0, len(pairs), 2):
                node = pairs[start : start + 2]
                labels += [str(index) for _, index in node] + [op for op, _ in node]
        return labels

    def size(self) -> int:
        # Node k+2 picks 2 of its k+2 predecessors and an op for each; two cell types.
        per_cell = math.prod(math.comb(node, 2) * len(self.ops) ** 2 for node in range(2, 6))
        return per_cell**2

    def catalogue(self) -> tuple[Decision, ...]:
        decisions = []
        for cell in CELL_TYPES:
            for node in range(2, 2 + NODES):
                prefix = f"{cell}.node{node}"
                # The second input can be any predecessor but the first one (input 0).
                decisions += [
                    Decision(f"{prefix}.in0", _labels(range(node - 1))),
                    Decision(f"{prefix}.in1", _labels(range(1, node))),
                    Decision(f"{prefix}.op0", self.ops),
                    Decision(f"{prefix}.op1", self.ops),
                ]
        return tuple(decisions)

    def graphs(self, arch: Architecture) -> list[Graph]:
        genotype = _check_genotype(arch)
        nodes = ("c_{k-2}", "c_{k-1}", *(str(k) for k in range(NODES)), "c_{k}")
        graphs = []
        for cell, title in zip(CELL_TYPES, ("normal cell", "reduction cell"), strict=True):
            pairs = getattr(genotype, cell)
            edges = [(index, 2 + i // 2, op) for i, (op, index) in enumerate(pairs)]
            concat = getattr(genotype, f"{cell}_concat")
            edges += [(node, len(nodes) - 1, "") for node in concat]  # "" = concatenation
            graphs.append(Graph(title, nodes, tuple(edges)))
        return graphs

    # -- text and JSON ------------------------------------------------------------------

    def parse(self, text: str) -> Architecture:
        """A genotype's JSON, or the name of a published one (e.g. ``DARTS_V2``)."""
        published = GENOTYPES.get(text.strip())
        if published is not None:
            self.validate(published)
            return published
        return super().parse(text)

    def from_json(self, data: Any) -> DartsGenotype:
        keys = ("normal", "normal_concat", "reduce", "reduce_concat")
        if not isinstance(data, dict) or set(data) != set(keys):
            got = sorted(data) if isinstance(data, dict) else repr(data)[:80]
            raise NasflowError(f"a DARTS genotype has the keys {', '.join(keys)}; got {got}")
        for cell in CELL_TYPES:
            _check_pairs_json(cell, data[cell])
            _check_concat_json(f"{cell}_concat", data[f"{cell}_concat"])
        genotype = DartsGenotype(
            normal=tuple((op, index) for op, index in data["normal"]),
            reduce=tuple((op, index) for op, index in data["reduce"]),
        )
        self.validate(genotype)
        return genotype

    # -- the network ----------------------------------------------------------------------

    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        genotype = _check_genotype(arch)
        return DartsNetwork(
            genotype,
            num_classes,
            in_channels=int(input_shape[0]),
            channels=self.channels,
            layers=self.layers,
            stem_multiplier=self.stem_multiplier,
        )


def _labels(indices: range) -> tuple[str, ...]:
    return tuple(str(i) for i in indices)


def _check_ops(ops: Sequence[str]) -> None:
    if "none" in ops:
        raise NasflowError(
            "search_space.ops: 'none' is not allowed (a derived DARTS genotype never "
            f"contains it); choose from {', '.join(DISCRETE_OPS)}"
        )
    unknown = [op for op in ops if op not in PRIMITIVES]
    if unknown or not ops:
        raise NasflowError(
            f"search_space.ops: {unknown or 'empty'} not allowed; "
            f"choose from {', '.join(DISCRETE_OPS)}"
        )


def _check_genotype(arch: Architecture) -> DartsGenotype:
    if not isinstance(arch, DartsGenotype):
        raise NasflowError(f"not a DARTS genotype: {type(arch).__name__}")
    for cell in CELL_TYPES:
        pairs, concat = getattr(arch, cell), getattr(arch, f"{cell}_concat")
        if len(pairs) != 2 * NODES:
            raise NasflowError(f"{cell}: expected {2 * NODES} (op, input) pairs, got {len(pairs)}")
        if concat != CONCAT:
            raise NasflowError(
                f"{cell}_concat must be {list(CONCAT)} (DARTS concatenates every "
                f"intermediate node), got {list(concat)}"
            )
    return arch


def _check_pairs_json(cell: str, pairs: Any) -> None:
    """Name the first malformed pair, input or op of one cell's JSON list of pairs."""
    if not isinstance(pairs, list) or len(pairs) != 2 * NODES:
        got = f"{len(pairs)} items" if isinstance(pairs, list) else repr(pairs)[:80]
        raise NasflowError(f"{cell}: expected {2 * NODES} [op, input] pairs, got {got}")
    for i, pair in enumerate(pairs):
        # `type(...) is int`: JSON true is a Python int, but not a node index.
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)):
            raise NasflowError(f"{cell}[{i}]: expected an [op, input] pair, got {pair!r}")
        op, index = pair
        node = 2 + i // 2
        if op == "none":
            raise NasflowError(
                f"{cell}[{i}]: op 'none' is not allowed (a derived DARTS genotype never "
                "contains it)"
            )
        if op not in DISCRETE_OPS:
            raise NasflowError(
                f"{cell}[{i}]: unknown op {op!r}; allowed: {', '.join(DISCRETE_OPS)}"
            )
        if type(index) is not int or not 0 <= index < node:
            raise NasflowError(
                f"{cell}[{i}]: input {index!r} is out of range; node {node} takes "
                f"inputs 0..{node - 1}"
            )
        if i % 2 == 1 and index == pairs[i - 1][1]:
            raise NasflowError(
                f"{cell}: node {node} has input {index} twice; its two inputs must differ"
            )


def _check_concat_json(key: str, concat: Any) -> None:
    ints = isinstance(concat, list | tuple) and all(type(i) is int for i in concat)
    if not ints or tuple(concat) != CONCAT:
        raise NasflowError(
            f"{key} must be {list(CONCAT)} (DARTS concatenates every intermediate node), "
            f"got {concat!r}"
        )


class DartsCell(nn.Module):
    """One cell of DARTS' network: two preprocessed inputs, four summing nodes, a concat.

    Args:
        pairs: (op, input) pairs, two per intermediate node.
        concat: The nodes whose outputs are concatenated into the cell's output.
        c_prev_prev: Channels of the cell's first input (two cells back).
        c_prev: Channels of its second input (the previous cell).
        channels: Channels C of each node; the output has len(concat) * C.
        reduction: Whether this cell halves the map (its ops on the inputs have stride 2).
        reduction_prev: Whether the previous cell did, so the first input is twice as large.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_prev_prev, channels)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.ops = nn.ModuleList(
            make_op(op, channels, 2 if reduction and index < 2 else 1) for op, index in pairs
        )
        self.inputs = tuple(index for _, index in pairs)
        self.concat = tuple(concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for first in range(0, len(self.ops), 2):
            second = first + 1
            states.append(
                self.ops[first](states[self.inputs[first]])
                + self.ops[second](states[self.inputs[second]])
            )
        return torch.cat([states[i] for i in self.concat], dim=1)


def stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """DARTS' stem: a 3x3 convolution and batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


@dataclass(frozen=True)
class CellSlot:
    """Where one cell sits in a DARTS network: its inputs' channels (two cells back and
    the previous cell), its node channels, whether it and the previous cell reduce, and
    the channels of its output."""

    c_prev_prev: int
    c_prev: int
    channels: int
    reduction: bool
    reduction_prev: bool
    out_channels: int


def cell_slots(
    channels: int, layers: int, stem_multiplier: int, outputs: Callable[[bool], int]
) -> list[CellSlot]:
    """The cells of a DARTS network (evaluation or search) in order: reduction cells at
    layers//3 and 2*layers//3 double the channels; a cell's output concatenates
    ``outputs(reduction)`` nodes; the first two cells read the stem's
    ``stem_multiplier * channels``."""
    stem_channels = stem_multiplier * channels
    c_prev_prev, c_prev, c_cell = stem_channels, stem_channels, channels
    reductions = {layers // 3, 2 * layers // 3}
    reduction_prev = False
    slots = []
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_cell *= 2
        out = outputs(reduction) * c_cell
        slots.append(CellSlot(c_prev_prev, c_prev, c_cell, reduction, reduction_prev, out))
        c_prev_prev, c_prev = c_prev, out
        reduction_prev = reduction
    return slots


class DartsNetwork(nn.Module):
    """DARTS' evaluation network (NetworkCIFAR), without the auxiliary head or drop-path.

    A stem convolution, `layers` cells (reduction cells at layers//3 and 2*layers//3, where
    the channels double), global average pooling and a linear classifier.

    Args:
        genotype: The cells to stack.
        num_classes: Outputs of the classifier.
        in_channels: Channels of the input images (3 for CIFAR, 1 for digits).
        channels: Channels C of the first cells.
        layers: Cells in all.
        stem_multiplier: The stem has stem_multiplier * C channels.
    """

    def __init__(
        self,
        genotype: DartsGenotype,
        num_classes: int,
        in_channels: int = 3,
        channels: int = 36,
        layers: int = 20,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        concats = {False: genotype.normal_concat, True: genotype.reduce_concat}
        self.stem = stem(in_channels, stem_multiplier * channels)
        slots = cell_slots(channels, layers, stem_multiplier, lambda r: len(concats[r]))
        cells = []
        for slot in slots:
            pairs = genotype.reduce if slot.reduction else genotype.normal
            cells.append(
                DartsCell(
                    pairs,
                    concats[slot.reduction],
                    slot.c_prev_prev,
                    slot.c_prev,
                    slot.channels,
                    slot.reduction,
                    slot.reduction_prev,
                )
            )
        c_prev = slots[-1].out_channels
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))
