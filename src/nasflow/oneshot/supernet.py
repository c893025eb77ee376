"""Supernets: every candidate operation on every edge, mixed by architecture weights.

Weight-sharing NAS (DARTS, Liu et al. 2019; GDAS, Dong & Yang 2019; DrNAS, Chen et al.
2021) trains one network that contains every architecture of a cell space. Each edge of a
cell is a `MixedOp` that holds one module per candidate operation and outputs their sum
weighted by that edge's row of an op-weight matrix::

    mixed(x) = sum_i weights[i] * op_i(x)

The networks here only *consume* op weights: how architecture parameters become weights
(softmax, a Gumbel sample, a Dirichlet sample) is `nasflow.oneshot.relaxation`'s business,
so one supernet serves every method. A row with zeros (a one-hot sample, as GDAS and ENAS
draw) skips the zero-weight operations entirely, which is what makes sampling methods cheap.

* `NB201Supernet`: NAS-Bench-201's macro network ("TinyNetwork": stem, three stages of N
  cells with a residual reduction block between them, the same head) whose six cell edges
  are mixed operations. Every cell shares one [6, len(ops)] weight matrix, as on NB201 the
  architecture is one cell repeated.
* `DartsSupernet`: DARTS' search network (``model_search.Network``): a stem, `layers` cells
  of which those at layers//3 and 2*layers//3 are reduction cells, each cell with two
  preprocessing layers and 14 mixed edges (intermediate node k+2 takes every earlier
  state), non-affine operations, the concatenated four nodes as the cell's output, global
  pooling and a classifier. Normal and reduction cells have their own [14, len(ops)]
  weights.

Both follow the reference implementations' definitions; the tests build them at a few
channels on 8x8 inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from nasflow.errors import NasflowError, check_int
from nasflow.search_spaces import darts, nb201
from nasflow.search_spaces.ops import FactorizedReduce, ReLUConvBN

# DARTS' mixed edges as (source state, target node), in the order of the weight rows: by
# target node 2..5, then by source 0..target-1 (states 0 and 1 are the cell's inputs).
DARTS_EDGES = tuple((j, node) for node in range(2, 2 + darts.NODES) for j in range(node))
# How many mixed edges (weight rows) one cell of each space has.
EDGE_COUNTS = {"nb201": len(nb201.EDGES), "darts": len(DARTS_EDGES)}


def edge_count(kind: str) -> int:
    """The number of mixed edges in one cell of space `kind` (``nb201``: 6, ``darts``: 14)."""
    if kind not in EDGE_COUNTS:
        raise NasflowError(f"unknown cell space {kind!r}; choose from {', '.join(EDGE_COUNTS)}")
    return EDGE_COUNTS[kind]


def active_ops(weights: Tensor) -> list[list[int]]:
    """Per row of `weights`, the indices of its nonzero entries (the ops worth computing).

    Computed once per forward pass of a supernet (one device-to-host copy), not per edge.
    """
    return [[i for i, nonzero in enumerate(row) if nonzero] for row in weights.ne(0).tolist()]


class MixedOp(nn.Module):
    """One edge of a supernet: every candidate operation, mixed by a row of weights.

    ``forward(x, weights)`` returns ``sum_i weights[i] * op_i(x)`` over the ops whose weight
    is nonzero: a zero-weight op adds nothing to the value, so it is not computed at all.
    With a one-hot row (a sampled architecture, as in GDAS and ENAS) that is a single op,
    ``weights[k] * op_k(x)``, and the chosen weight still gets its gradient (with GDAS'
    straight-through weights this is what carries the gradient to every architecture
    parameter). The skipped ops' weights get no gradient from this edge. A row of all zeros
    is computed densely, which gives zeros of the right shape.

    Args:
        candidates: One module per candidate operation, each mapping the edge's input to
            an output of the same shape as the others.
    """

    def __init__(self, candidates: Sequence[nn.Module]) -> None:
        super().__init__()
        if not candidates:
            raise ValueError("a mixed operation needs at least one candidate")
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: Tensor, weights: Tensor, active: Sequence[int] | None = None) -> Tensor:
        """Mix the candidates' outputs on `x`.

        Args:
            x: The edge's input.
            weights: One weight per candidate, shape [len(candidates)].
            active: The indices of the nonzero weights, if the caller already knows them
                (see `active_ops`); found from `weights` otherwise.
        """
        if weights.shape != (len(self.candidates),):
            raise ValueError(
                f"expected {len(self.candidates)} op weights, got shape {tuple(weights.shape)}"
            )
        if active is None:
            active = active_ops(weights[None])[0]
        if not active:
            active = range(len(self.candidates))
        total: Tensor | None = None
        for i in active:
            term = weights[i] * self.candidates[i](x)
            total = term if total is None else total + term
        assert total is not None  # `active` is never empty
        return total


def _check_weights(name: str, weights: Tensor, rows: int, columns: int) -> None:
    if weights.shape != (rows, columns):
        raise ValueError(
            f"{name} must have shape [{rows}, {columns}] (edges x ops), got {list(weights.shape)}"
        )


def _check_ops(key: str, ops: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """`ops` in the order of `allowed` (that order numbers the weight columns)."""
    if isinstance(ops, str):
        ops = [ops]
    unknown = [op for op in ops if op not in allowed]
    if unknown or not ops:
        raise NasflowError(
            f"{key}: {unknown or 'empty'} not allowed; choose from {', '.join(allowed)}"
        )
    return tuple(op for op in allowed if op in ops)


class NB201SearchCell(nn.Module):
    """The NB201 cell with a mixed operation on each of its six edges (in `nb201.EDGES` order).

    Node i (1..3) sums the mixed edges from every node j < i; node 3 is the output.
    """

    def __init__(self, channels: int, ops: Sequence[str], affine: bool = False) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp([nb201.edge_op(op, channels, affine) for op in ops]) for _ in nb201.EDGES
        )

    def forward(self, x: Tensor, weights: Tensor, active: Sequence[Sequence[int]]) -> Tensor:
        nodes = [x]
        first = 0  # index of the first edge into the current node
        for target in range(1, nb201.NODES):
            total = self.edges[first](nodes[0], weights[first], active[first])
            for source in range(1, target):
                edge = first + source
                total = total + self.edges[edge](nodes[source], weights[edge], active[edge])
            nodes.append(total)
            first += target
        return nodes[-1]


class NB201Supernet(nn.Module):
    """NAS-Bench-201's network with every cell a supernet cell sharing one weight matrix.

    The stem, the three stages of `cells_per_stage` cells at C, 2C and 4C channels, the
    `nb201.ResidualReduction` blocks between stages and the head are exactly those of
    `nb201.NB201Network`; the edge operations are `nb201.edge_op`'s, by default with
    non-affine batch norm: as DARTS argues, a learnable scale lets a convolution rescale
    its own output and so undo its op weight, which a parameter-free op cannot (the
    DARTS and DrNAS searches on NB201 turn it off too).

    ``forward(x, weights)`` takes the op weights, shape [6, len(ops)]: row e mixes edge e
    (`nb201.EDGES` order), column k is ``self.ops[k]``.

    Args:
        in_channels: Channels of the input images (3 for CIFAR, 1 for digits).
        num_classes: Outputs of the classifier.
        channels: C, the channels of the first stage.
        cells_per_stage: N, the cells in each stage.
        ops: The candidate operations, a subset of `nb201.OPS`; kept in the official order,
            which is the order of the weight columns.
        affine: Whether the edge convolutions' batch norms have a learnable scale and
            shift.
    """

    arch_keys: ClassVar[tuple[str, ...]] = ("cell",)

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 16,
        cells_per_stage: int = 5,
        ops: Sequence[str] = nb201.OPS,
        affine: bool = False,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes)
        check_int("channels", channels)
        check_int("cells_per_stage", cells_per_stage)
        self.ops = _check_ops("ops", ops, nb201.OPS)
        self.stem = nb201.stem(in_channels, channels)
        blocks, width = nb201.stages(
            channels, cells_per_stage, lambda c: NB201SearchCell(c, self.ops, affine)
        )
        self.cells = nn.ModuleList(blocks)
        self.head = nb201.head(width, num_classes)

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """The shape of each op-weight matrix `forward` takes, in argument order."""
        return {"cell": (len(nb201.EDGES), len(self.ops))}

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        _check_weights("weights", weights, len(nb201.EDGES), len(self.ops))
        active = active_ops(weights)
        x = self.stem(x)
        for block in self.cells:
            x = block(x, weights, active) if isinstance(block, NB201SearchCell) else block(x)
        return self.head(x)


class DartsSearchCell(nn.Module):
    """A cell of DARTS' search network: two preprocessed inputs, 14 mixed edges, a concat.

    Intermediate node k+2 (k = 0..3) sums the mixed edges from every earlier state
    0..k+1; the cell's output concatenates the four intermediate nodes. In a reduction
    cell the edges from the two inputs have stride 2. As in DARTS' ``MixedOp``, pooling
    candidates are followed by a non-affine batch norm.

    Args:
        c_prev_prev: Channels of the first input (two cells back).
        c_prev: Channels of the second input (the previous cell).
        channels: Channels C of each node; the output has 4 * C.
        reduction: Whether this cell halves the map.
        reduction_prev: Whether the previous cell did (the first input is then twice as
            large and is reduced by a `FactorizedReduce`).
        ops: The candidate operations, names in `darts.OPS`.
    """

    def __init__(
        self,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        ops: Sequence[str],
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_prev_prev, channels, affine=False)
            if reduction_prev
            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp([_darts_candidate(op, channels, 2 if reduction and j < 2 else 1) for op in ops])
            for j, _ in DARTS_EDGES
        )

    def forward(
        self, s0: Tensor, s1: Tensor, weights: Tensor, active: Sequence[Sequence[int]]
    ) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        first = 0  # index of the first edge into the current node
        for _ in range(darts.NODES):
            terms = [
                self.edges[first + j](state, weights[first + j], active[first + j])
                for j, state in enumerate(states)
            ]
            first += len(states)
            states.append(sum(terms[1:], terms[0]))
        return torch.cat(states[2:], dim=1)


def _darts_candidate(op: str, channels: int, stride: int) -> nn.Module:
    """A non-affine DARTS operation; pooling gets a non-affine batch norm, as in DARTS."""
    module = darts.make_op(op, channels, stride, affine=False)
    if "pool" in op:
        return nn.Sequential(module, nn.BatchNorm2d(channels, affine=False))
    return module


class DartsSupernet(nn.Module):
    """DARTS' search network (``model_search.Network``) over the candidate `ops`.

    ``forward(x, weights_normal, weights_reduce)`` takes the op weights of the normal and
    of the reduction cells, each of shape [14, len(ops)]: row e mixes edge e
    (`DARTS_EDGES` order), column k is ``self.ops[k]``.

    Args:
        in_channels: Channels of the input images (3 for CIFAR, 1 for digits).
        num_classes: Outputs of the classifier.
        channels: Channels C of the first cells; each reduction cell doubles them.
        layers: Cells in all (at least 3, so that both cell types occur); the reduction
            cells sit at layers//3 and 2*layers//3. Each halves the map, so 8x8 inputs end
            at 2x2.
        stem_multiplier: The stem convolution has stem_multiplier * C channels.
        ops: The candidate operations, a subset of `darts.PRIMITIVES` (``none`` included,
            as in DARTS); kept in that order, which is the order of the weight columns.
    """

    arch_keys: ClassVar[tuple[str, ...]] = ("normal", "reduce")

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        ops: Sequence[str] = darts.PRIMITIVES,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("num_classes", num_classes)
        check_int("channels", channels)
        check_int("stem_multiplier", stem_multiplier)
        check_int("layers", layers, minimum=3)
        self.ops = _check_ops("ops", ops, darts.PRIMITIVES)
        self.stem = darts.stem(in_channels, stem_multiplier * channels)
        slots = darts.cell_slots(channels, layers, stem_multiplier, lambda _: darts.NODES)
        cells = [
            DartsSearchCell(
                slot.c_prev_prev,
                slot.c_prev,
                slot.channels,
                slot.reduction,
                slot.reduction_prev,
                self.ops,
            )
            for slot in slots
        ]
        c_prev = slots[-1].out_channels
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """The shape of each op-weight matrix `forward` takes, in argument order."""
        shape = (len(DARTS_EDGES), len(self.ops))
        return {"normal": shape, "reduce": shape}

    def forward(self, x: Tensor, weights_normal: Tensor, weights_reduce: Tensor) -> Tensor:
        rows, columns = len(DARTS_EDGES), len(self.ops)
        _check_weights("weights_normal", weights_normal, rows, columns)
        _check_weights("weights_reduce", weights_reduce, rows, columns)
        active_normal, active_reduce = active_ops(weights_normal), active_ops(weights_reduce)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            if cell.reduction:
                s0, s1 = s1, cell(s0, s1, weights_reduce, active_reduce)
            else:
                s0, s1 = s1, cell(s0, s1, weights_normal, active_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))


def supernet_logits(network: nn.Module, inputs: Tensor, weights: Mapping[str, Tensor]) -> Tensor:
    """Call a supernet with its op weights given by name (``{"cell": ...}`` for NB201,
    ``{"normal": ..., "reduce": ...}`` for DARTS), whatever its `forward`'s signature.

    `network` must name its weight arguments in a class attribute ``arch_keys``, in
    `forward`'s order, as both supernets here do.
    """
    keys: tuple[str, ...] | None = getattr(network, "arch_keys", None)
    if keys is None:
        raise TypeError(f"{type(network).__name__} has no `arch_keys`: not a supernet")
    missing = [key for key in keys if key not in weights]
    if missing:
        raise KeyError(f"op weights {missing} missing; {type(network).__name__} takes {keys}")
    return network(inputs, *(weights[key] for key in keys))
