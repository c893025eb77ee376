"""The NASNet search space: a normal and a reduction cell of B blocks, stacked N-R-N-R-N.

As in NASNet (Zoph, Vasudevan, Shlens & Le, CVPR 2018), a cell turns the outputs of the two
previous cells into a new one through B blocks. Each block picks two inputs among the cell's
hidden states so far, applies an operation to each and combines the two results by
addition or concatenation; the result becomes a new hidden state. The cell's output
concatenates the hidden states that no block used.

Hidden states are numbered as in the reference implementation: **0 is h_{i-1}** (the
previous cell's output), **1 is h_{i-2}** (the one before), and 2 + k is block k's output.

A block is written as two (input, op) pairs. Both orders give the same block, so the pairs
are kept sorted by (input, op index), and the grammar enforces that order: the second pair
is never smaller than the first. The same pair twice is allowed (NASNet-A uses it).

The cell output is *not* a decision: the grammar always produces the paper's rule (every
unused state). An architecture may still list used states in its concat, because the
released NASNet-A does: its normal cell also concatenates h_{i-2}, its reduction cell also
block 1, although blocks use both. Such a concat is kept with the architecture and built,
but the search never produces or changes it (`decode(encode(NASNET_A))` has the paper's
rule), since the paper's controller does not choose the output.

The network is the reference's CIFAR one (no auxiliary head, no drop-path): a 3x3 stem of
3F channels, N normal cells at F filters, a reduction cell, N at 2F, a reduction, N at 4F,
then ReLU, global average pooling and a linear classifier. The "penultimate filters" P the
paper quotes are the channels of the last cell's output: 4F per concatenated state, so
P = 24 F for NASNet-A's six-state normal-cell concat ("6 @ 768" is N=6, F=32).

At about 600 lines this module is one concern, the space: its grammar, the network it
builds and the published NASNet-A genotype must agree on the block encoding, and read
best side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveInt
from nasflow.search_spaces.base import Architecture, Decision, Grammar, Graph, SearchSpace
from nasflow.search_spaces.ops import FactorizedReduce, ReLUConvBN, SepConv, pool

CELL_TYPES = ("normal", "reduce")
COMBINATIONS = ("add", "concat")
STEM_MULTIPLIER = 3  # the stem has 3F channels, as in the reference CIFAR network
STAGES = 3  # N normal cells per stage, a reduction cell between stages
OpConstructor = Callable[[int, int, int], nn.Module]  # (in channels, filters, stride)


class FactorizedConv(nn.Sequential):
    """ReLU, a 1xk then a kx1 convolution, batch norm: a kxk receptive field for 2k weights.

    At stride 2 each convolution halves one dimension, so the two together halve both.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, (1, kernel), (1, stride), (0, pad), bias=False),
            nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), (pad, 0), bias=False),
            nn.BatchNorm2d(c_out),
        )


def _identity(c_in: int, c_out: int, stride: int) -> nn.Module:
    # Only a real identity when nothing has to change; otherwise the reference's 1x1 conv.
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return ReLUConvBN(c_in, c_out, 1, stride)


def _pooling(kind: str, kernel: int) -> OpConstructor:
    def make(c_in: int, c_out: int, stride: int) -> nn.Module:
        if c_in == c_out:
            return pool(kind, kernel, stride)
        # Pooling keeps the channels, so a wider input (a `concat` block) is projected after.
        return nn.Sequential(
            pool(kind, kernel, stride),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    return make


# The operations of the NASNet paper, in the paper's order (the order of op indices), plus
# 5x5 and 7x7 average pooling beside the max pooling of those sizes: the paper's list has
# average pooling at 3x3 only (its 13 operations are `PAPER_OPS`).
# Every one maps its input's channels to the cell's filters and halves the map at stride 2.
OPS: dict[str, OpConstructor] = {
    "identity": _identity,
    "conv_1x3_3x1": lambda c_in, c, stride: FactorizedConv(c_in, c, 3, stride),
    "conv_1x7_7x1": lambda c_in, c, stride: FactorizedConv(c_in, c, 7, stride),
    "dil_conv_3x3": lambda c_in, c, stride: ReLUConvBN(c_in, c, 3, stride, 2, dilation=2),
    "avg_pool_3x3": _pooling("avg", 3),
    "avg_pool_5x5": _pooling("avg", 5),
    "avg_pool_7x7": _pooling("avg", 7),
    "max_pool_3x3": _pooling("max", 3),
    "max_pool_5x5": _pooling("max", 5),
    "max_pool_7x7": _pooling("max", 7),
    "conv_1x1": lambda c_in, c, stride: ReLUConvBN(c_in, c, 1, stride, 0),
    "conv_3x3": lambda c_in, c, stride: ReLUConvBN(c_in, c, 3, stride, 1),
    "sep_conv_3x3": lambda c_in, c, stride: SepConv(c_in, c, 3, stride, 1),
    "sep_conv_5x5": lambda c_in, c, stride: SepConv(c_in, c, 5, stride, 2),
    "sep_conv_7x7": lambda c_in, c, stride: SepConv(c_in, c, 7, stride, 3),
}
OP_NAMES = tuple(OPS)
PAPER_OPS = tuple(op for op in OP_NAMES if op not in ("avg_pool_5x5", "avg_pool_7x7"))
_SHORT = {
    "identity": "id",
    "conv_1x3_3x1": "1x3/3x1",
    "conv_1x7_7x1": "1x7/7x1",
    "dil_conv_3x3": "dil3",
    "avg_pool_3x3": "avg3",
    "avg_pool_5x5": "avg5",
    "avg_pool_7x7": "avg7",
    "max_pool_3x3": "max3",
    "max_pool_5x5": "max5",
    "max_pool_7x7": "max7",
    "conv_1x1": "conv1",
    "conv_3x3": "conv3",
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "sep_conv_7x7": "sep7",
}


def _pair_key(pair: tuple[int, str]) -> tuple[int, int]:
    # Unknown ops sort last instead of failing, so that validation can name them.
    index, op = pair
    return index, OP_NAMES.index(op) if op in OPS else len(OPS)


@dataclass(frozen=True)
class Block:
    """Two (input, op) pairs and how their results combine; the pairs kept in sorted order."""

    inputs: tuple[int, int]
    ops: tuple[str, str]
    combine: str = "add"

    def __post_init__(self) -> None:
        first, second = sorted(zip(self.inputs, self.ops, strict=True), key=_pair_key)
        object.__setattr__(self, "inputs", (first[0], second[0]))
        object.__setattr__(self, "ops", (first[1], second[1]))

    def pairs(self) -> tuple[tuple[int, str], ...]:
        """The (input, op) pairs, in canonical order."""
        return tuple(zip(self.inputs, self.ops, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "ops": list(self.ops), "combine": self.combine}

    def describe(self) -> str:
        """E.g. ``sep3(0)+id(1)`` when added, ``cat(sep3(0),id(1))`` when concatenated."""
        terms = [f"{_SHORT.get(op, op)}({i})" for i, op in self.pairs()]
        return "+".join(terms) if self.combine == "add" else f"cat({','.join(terms)})"


def unused_states(blocks: Sequence[Block]) -> tuple[int, ...]:
    """The hidden states no block takes as an input: the paper's cell output."""
    used = {i for block in blocks for i in block.inputs}
    return tuple(s for s in range(2 + len(blocks)) if s not in used)


@dataclass(frozen=True, kw_only=True)
class NASNetArchitecture(Architecture):
    """A normal and a reduction cell, and the hidden states each concatenates as output.

    An empty concat (the default) means the paper's rule, the unused states; it is filled
    in on construction, so equal cells have equal JSON and hash however they were written.
    """

    normal: tuple[Block, ...]
    reduce: tuple[Block, ...]
    normal_concat: tuple[int, ...] = field(default=())
    reduce_concat: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        for cell in CELL_TYPES:
            blocks = tuple(getattr(self, cell))
            concat = tuple(getattr(self, f"{cell}_concat")) or unused_states(blocks)
            object.__setattr__(self, cell, blocks)
            object.__setattr__(self, f"{cell}_concat", concat)

    def to_json(self) -> dict[str, Any]:
        return {
            "normal": [block.to_json() for block in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [block.to_json() for block in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def describe(self) -> str:
        """E.g. ``normal: sep5(0)+sep3(1) ... +out(1) | reduce: ...``.

        ``+out(...)`` lists the used states a cell also concatenates, beyond the paper's rule.
        """
        parts = []
        for cell in CELL_TYPES:
            blocks, concat = getattr(self, cell), getattr(self, f"{cell}_concat")
            text = f"{cell}: " + " ".join(block.describe() for block in blocks)
            extra = [str(s) for s in concat if s not in unused_states(blocks)]
            parts.append(text + (f" +out({','.join(extra)})" if extra else ""))
        return " | ".join(parts)


def _cell(*blocks: tuple[int, str, int, str]) -> tuple[Block, ...]:
    return tuple(Block((a, b), (op_a, op_b)) for a, op_a, b, op_b in blocks)


# NASNet-A as released with the paper (the reference model's cell definitions), every block
# combined by addition. 0 = h_{i-1}, 1 = h_{i-2}, 2 + k = block k. The concat is the
# reference's, not the paper's rule: the normal cell also outputs h_{i-2} (six states, hence
# P = 24 F), the reduction cell also block 1, which block 3 uses.
NASNET_A = NASNetArchitecture(
    normal=_cell(
        (0, "sep_conv_5x5", 1, "sep_conv_3x3"),
        (1, "sep_conv_5x5", 1, "sep_conv_3x3"),
        (0, "avg_pool_3x3", 1, "identity"),
        (1, "avg_pool_3x3", 1, "avg_pool_3x3"),
        (0, "sep_conv_3x3", 0, "identity"),
    ),
    normal_concat=(1, 2, 3, 4, 5, 6),
    reduce=_cell(
        (0, "sep_conv_5x5", 1, "sep_conv_7x7"),
        (0, "max_pool_3x3", 1, "sep_conv_7x7"),
        (0, "avg_pool_3x3", 1, "sep_conv_5x5"),
        (3, "identity", 2, "avg_pool_3x3"),
        (2, "sep_conv_3x3", 0, "max_pool_3x3"),
    ),
    reduce_concat=(3, 4, 5, 6),
)
PUBLISHED: dict[str, NASNetArchitecture] = {"NASNET_A": NASNET_A}


class NASNetSpace(SearchSpace):
    """NASNet cells of `blocks` blocks over `ops`, built into the reference CIFAR network.

    A cell searched on a small network is retrained stacked larger: that is another
    instance of this space (NASNet-A "6 @ 768" on CIFAR-10 is cells_per_stage=6, filters=32).

    Args:
        cells_per_stage: N, the normal cells in each of the three stages.
        filters: F, the filters of the first stage's cells; each reduction cell doubles them.
            The last cell outputs 4F per concatenated state (8F for a ``concat`` block), so
            the paper's penultimate filters are P = 24 F for NASNet-A's six.
        blocks: B, the blocks of each cell (NASNet: 5).
        ops: The operations a block may apply, a subset of `OP_NAMES` (None: all 15).
        combinations: How a block may combine its two results: ``add`` and/or ``concat``.
    """

    name = "nasnet"

    def __init__(
        self,
        cells_per_stage: PositiveInt = 2,
        filters: PositiveInt = 8,
        blocks: PositiveInt = 5,
        ops: Sequence[str] | None = None,
        combinations: Sequence[str] = COMBINATIONS,
    ) -> None:
        for key, value in (
            ("cells_per_stage", cells_per_stage),
            ("filters", filters),
            ("blocks", blocks),
        ):
            if int(value) < 1:
                raise NasflowError(f"search_space.{key} must be at least 1, got {value}")
        ops = OP_NAMES if ops is None else ops
        _check_subset("ops", ops, OP_NAMES)
        _check_subset("combinations", combinations, COMBINATIONS)
        self.cells_per_stage, self.filters, self.blocks = (
            int(cells_per_stage),
            int(filters),
            int(blocks),
        )
        # In the canonical order whatever the configured order, so that option indices and
        # the order of a block's pairs agree across instances.
        self.ops = tuple(op for op in OP_NAMES if op in ops)
        self.combinations = tuple(c for c in COMBINATIONS if c in combinations)

    @classmethod
    def tiny(cls) -> NASNetSpace:
        return cls(cells_per_stage=1, filters=4, blocks=2)

    # -- the grammar ------------------------------------------------------------------

    def grammar(self) -> Grammar:
        cells: dict[str, tuple[Block, ...]] = {}
        for cell in CELL_TYPES:
            blocks = []
            for b in range(self.blocks):
                prefix, inputs = f"{cell}.block{b}", _labels(range(2 + b))
                in0 = int((yield Decision(f"{prefix}.in0", inputs)))
                op0 = yield Decision(f"{prefix}.op0", self.ops)
                # The second pair is never below the first: a block has one form.
                in1 = int((yield Decision(f"{prefix}.in1", inputs[in0:])))
                ops1 = self.ops[self.ops.index(op0) :] if in1 == in0 else self.ops
                op1 = yield Decision(f"{prefix}.op1", ops1)
                combine = yield Decision(f"{prefix}.combine", self.combinations)
                blocks.append(Block((in0, in1), (op0, op1), combine))
            cells[cell] = tuple(blocks)
        return NASNetArchitecture(normal=cells["normal"], reduce=cells["reduce"])

    def to_labels(self, arch: Architecture) -> list[str]:
        # The concat is not decided (see the module docstring); it is only checked.
        arch = self._check_arch(arch)
        labels: list[str] = []
        for cell in CELL_TYPES:
            for block in getattr(arch, cell):
                (in0, in1), (op0, op1) = block.inputs, block.ops
                labels += [str(in0), op0, str(in1), op1, block.combine]
        return labels

    def size(self) -> int:
        # Block b chooses an unordered pair, repetition allowed, of m = (2 + b) * |ops|
        # (input, op) pairs: m (m + 1) / 2 ways, times the combinations. Two cell types.
        per_cell = 1
        for b in range(self.blocks):
            m = (2 + b) * len(self.ops)
            per_cell *= m * (m + 1) // 2 * len(self.combinations)
        return per_cell**2

    def catalogue(self) -> tuple[Decision, ...]:
        decisions = []
        for cell in CELL_TYPES:
            for b in range(self.blocks):
                prefix, inputs = f"{cell}.block{b}", _labels(range(2 + b))
                decisions += [
                    Decision(f"{prefix}.in0", inputs),
                    Decision(f"{prefix}.op0", self.ops),
                    Decision(f"{prefix}.in1", inputs),
                    Decision(f"{prefix}.op1", self.ops),
                    Decision(f"{prefix}.combine", self.combinations),
                ]
        return tuple(decisions)

    def graphs(self, arch: Architecture) -> list[Graph]:
        arch = self._check_arch(arch)
        graphs = []
        for cell, title in zip(CELL_TYPES, ("normal cell", "reduction cell"), strict=True):
            blocks, concat = getattr(arch, cell), getattr(arch, f"{cell}_concat")
            # Drawn h_{i-2} first, as the papers do; hidden state s is node _node(s).
            nodes = ("h_{i-2}", "h_{i-1}", *(f"{b}: {x.combine}" for b, x in enumerate(blocks)))
            edges = [
                (_node(i), 2 + b, op) for b, block in enumerate(blocks) for i, op in block.pairs()
            ]
            output = len(nodes)
            edges += [(_node(s), output, "") for s in concat]  # "" = concatenation
            notes = ["the output concatenates the states with unlabelled edges"]
            if cell == "reduce":
                notes.append("ops on h_{i-2} and h_{i-1} have stride 2")
            graphs.append(Graph(title, (*nodes, "h_{i}"), tuple(edges), tuple(notes)))
        return graphs

    # -- text and JSON ------------------------------------------------------------------

    def parse(self, text: str) -> Architecture:
        """An architecture's JSON, or the name of a published one (``NASNET_A``)."""
        published = PUBLISHED.get(text.strip().upper().replace("-", "_"))
        if published is not None:
            self.validate(published)
            return published
        return super().parse(text)

    def from_json(self, data: Any) -> NASNetArchitecture:
        """Read `NASNetArchitecture.to_json`; the concats may be left out (the paper's rule)."""
        required, optional = {"normal", "reduce"}, {"normal_concat", "reduce_concat"}
        if not isinstance(data, dict) or not required <= set(data) <= required | optional:
            got = sorted(data) if isinstance(data, dict) else repr(data)[:80]
            raise NasflowError(
                "a NASNet architecture has the keys normal, reduce and optionally "
                f"normal_concat, reduce_concat; got {got}"
            )
        cells = {cell: self._blocks_from_json(cell, data[cell]) for cell in CELL_TYPES}
        concats = {}
        for cell in CELL_TYPES:
            concat = data.get(f"{cell}_concat", [])
            if not isinstance(concat, list) or any(type(s) is not int for s in concat):
                raise NasflowError(f"{cell}_concat must be a list of state indices, got {concat!r}")
            concats[cell] = tuple(concat)
        arch = NASNetArchitecture(
            normal=cells["normal"],
            reduce=cells["reduce"],
            normal_concat=concats["normal"],
            reduce_concat=concats["reduce"],
        )
        self.validate(arch)
        return arch

    def _blocks_from_json(self, cell: str, items: Any) -> tuple[Block, ...]:
        """One cell's blocks, naming the first malformed block, input, op or combination."""
        if not isinstance(items, list) or len(items) != self.blocks:
            got = f"{len(items)} blocks" if isinstance(items, list) else repr(items)[:80]
            raise NasflowError(f"{cell}: expected {self.blocks} blocks, got {got}")
        blocks = []
        for b, item in enumerate(items):
            where = f"{cell} block {b}"
            if not isinstance(item, dict) or set(item) != {"inputs", "ops", "combine"}:
                raise NasflowError(
                    f'{where}: expected {{"inputs": [i, j], "ops": [a, b], "combine": c}}, '
                    f"got {item!r}"
                )
            inputs, ops, combine = item["inputs"], item["ops"], item["combine"]
            if not isinstance(inputs, list) or len(inputs) != 2:
                raise NasflowError(f"{where}: inputs must be two state indices, got {inputs!r}")
            if not isinstance(ops, list) or len(ops) != 2:
                raise NasflowError(f"{where}: ops must be two operation names, got {ops!r}")
            for index in inputs:
                # `type(...) is int`: JSON true is a Python int, but not a state index.
                if type(index) is not int or not 0 <= index < 2 + b:
                    raise NasflowError(
                        f"{where}: input {index!r} is out of range; block {b} takes inputs "
                        f"0..{1 + b} (0 = h_{{i-1}}, 1 = h_{{i-2}}, 2.. = earlier blocks)"
                    )
            for op in ops:
                if op not in self.ops:
                    raise NasflowError(
                        f"{where}: op {op!r} is not allowed; allowed: {', '.join(self.ops)}"
                    )
            if combine not in self.combinations:
                raise NasflowError(
                    f"{where}: combine {combine!r} is not allowed; "
                    f"allowed: {', '.join(self.combinations)}"
                )
            blocks.append(Block((inputs[0], inputs[1]), (ops[0], ops[1]), combine))
        return tuple(blocks)

    def _check_arch(self, arch: Architecture) -> NASNetArchitecture:
        """`arch` if its cells have this space's block count and valid concats.

        The grammar checks the rest (ops, inputs, combinations) when `arch` is encoded.
        """
        if not isinstance(arch, NASNetArchitecture):
            raise NasflowError(f"not a NASNet architecture: {type(arch).__name__}")
        for cell in CELL_TYPES:
            blocks, concat = getattr(arch, cell), getattr(arch, f"{cell}_concat")
            if len(blocks) != self.blocks:
                raise NasflowError(f"{cell}: expected {self.blocks} blocks, got {len(blocks)}")
            states = 2 + self.blocks
            if list(concat) != sorted(set(concat)) or not all(0 <= s < states for s in concat):
                raise NasflowError(
                    f"{cell}_concat must list distinct states 0..{states - 1} in increasing "
                    f"order, got {list(concat)}"
                )
            missing = [s for s in unused_states(blocks) if s not in concat]
            if missing:
                raise NasflowError(
                    f"{cell}_concat {list(concat)} leaves out the unused states {missing}; "
                    "a cell's output must include every state no block uses"
                )
        return arch

    # -- the network ----------------------------------------------------------------------

    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        arch = self._check_arch(arch)
        if len(input_shape) != 3 or any(int(n) < 1 for n in input_shape):
            raise NasflowError(f"input_shape must be (channels, height, width), got {input_shape}")
        return NASNetNetwork(
            arch, int(input_shape[0]), num_classes, self.cells_per_stage, self.filters
        )


def _labels(indices: range) -> tuple[str, ...]:
    return tuple(str(i) for i in indices)


def _node(state: int) -> int:
    # Graph nodes are h_{i-2}, h_{i-1}, blocks...; hidden states are h_{i-1}, h_{i-2}, blocks.
    return {0: 1, 1: 0}.get(state, state)


def _check_subset(key: str, values: Sequence[str], allowed: tuple[str, ...]) -> None:
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise NasflowError(
            f"search_space.{key}: {unknown or 'empty'} not allowed; "
            f"choose from {', '.join(allowed)}"
        )


class NASNetCell(nn.Module):
    """One cell: its two inputs brought to `filters` channels, B blocks, the concat.

    Args:
        blocks: The cell's blocks.
        concat: The hidden states concatenated into the output.
        c_prev_prev: Channels of h_{i-2}.
        c_prev: Channels of h_{i-1}.
        filters: Channels of every operation's output (a `concat` block has twice as many).
        reduction: Whether the cell halves the map: ops on the cell's inputs have stride 2,
            and inputs that go into the concat are reduced to match.
        reduction_prev: Whether the previous cell halved it, so h_{i-2} is twice as large.
    """

    def __init__(
        self,
        blocks: Sequence[Block],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        filters: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.preprocess_prev = ReLUConvBN(c_prev, filters, 1)
        self.preprocess_prev_prev: nn.Module = (
            FactorizedReduce(c_prev_prev, filters)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, filters, 1)
        )
        channels = [filters, filters]  # of each hidden state
        ops = []
        for block in blocks:
            for index, op in block.pairs():
                stride = 2 if reduction and index < 2 else 1
                ops.append(OPS[op](channels[index], filters, stride))
            channels.append(2 * filters if block.combine == "concat" else filters)
        self.ops = nn.ModuleList(ops)
        self.blocks = tuple(blocks)
        self.concat = tuple(concat)
        # In a reduction cell, cell inputs in the output are still at the input resolution.
        self.shrink = nn.ModuleDict(
            {str(s): FactorizedReduce(channels[s], channels[s]) for s in concat if s < 2}
            if reduction
            else {}
        )
        self.out_channels = sum(channels[s] for s in self.concat)

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess_prev(prev), self.preprocess_prev_prev(prev_prev)]
        for b, block in enumerate(self.blocks):
            left = self.ops[2 * b](states[block.inputs[0]])
            right = self.ops[2 * b + 1](states[block.inputs[1]])
            states.append(left + right if block.combine == "add" else torch.cat([left, right], 1))
        outputs = [
            self.shrink[str(s)](states[s]) if str(s) in self.shrink else states[s]
            for s in self.concat
        ]
        return torch.cat(outputs, dim=1)


class NASNetNetwork(nn.Module):
    """The reference CIFAR network of NASNet, without the auxiliary head or drop-path.

    Args:
        arch: The cells to stack.
        in_channels: Channels of the input images (3 for CIFAR, 1 for digits).
        num_classes: Outputs of the classifier.
        cells_per_stage: N normal cells per stage.
        filters: F, the first stage's filters; doubled by each reduction cell.
    """

    def __init__(
        self,
        arch: NASNetArchitecture,
        in_channels: int,
        num_classes: int,
        cells_per_stage: int,
        filters: int,
    ) -> None:
        super().__init__()
        stem = STEM_MULTIPLIER * filters
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem)
        )
        c_prev_prev, c_prev = stem, stem
        reduction_prev = False
        cells = []
        for stage in range(STAGES):
            kinds = ["normal"] * cells_per_stage
            if stage > 0:
                filters *= 2
                kinds.insert(0, "reduce")
            for kind in kinds:
                reduction = kind == "reduce"
                blocks, concat = getattr(arch, kind), getattr(arch, f"{kind}_concat")
                cell = NASNetCell(
                    blocks, concat, c_prev_prev, c_prev, filters, reduction, reduction_prev
                )
                cells.append(cell)
                c_prev_prev, c_prev = c_prev, cell.out_channels
                reduction_prev = reduction
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev_prev = prev = self.stem(x)
        for cell in self.cells:
            prev_prev, prev = prev, cell(prev_prev, prev)
        features = torch.relu(prev).mean(dim=(2, 3))  # ReLU, then global average pooling
        return self.classifier(features)
