"""The discrete architecture a supernet's op weights stand for, derived as the papers do.

* NB201 (`derive_nb201`): per edge, the op of largest weight, ``none`` included, as DARTS
  and its successors are run on NAS-Bench-201. Letting ``none`` and the other
  parameter-free ops win is what makes plain DARTS collapse there (Dong & Yang 2020 report
  all-skip cells), which `parameter_free_count` measures.
* DARTS (`derive_darts`, DARTS' ``genotype()``): per cell type and intermediate node, the
  two incoming edges whose strongest op other than ``none`` is strongest, each with that
  op. Ties go to the lower index (edge or op), as in DARTS' code.

The weights are those of `ArchParameters.derivation_weights` (softmax, or the Dirichlet
mean for DrNAS); any monotone transform of them derives the same architecture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from nasflow.errors import NasflowError
from nasflow.oneshot.supernet import DARTS_EDGES, DartsSupernet, NB201Supernet
from nasflow.search_spaces import darts, nb201
from nasflow.search_spaces.base import Architecture
from nasflow.search_spaces.darts import DartsGenotype, Pair
from nasflow.search_spaces.nb201 import NB201Architecture

# Operations without parameters: no connection, the identity and pooling. (A skip_connect
# on a reduction cell's input is a FactorizedReduce with parameters; it still counts, as
# the literature counts skip connections by name.)
PARAMETER_FREE = frozenset({"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3"})


def _rows(weights: Tensor, rows: int, ops: Sequence[str], key: str) -> list[list[float]]:
    if weights.dim() != 2 or tuple(weights.shape) != (rows, len(ops)):
        raise NasflowError(
            f"{key} must have shape [{rows}, {len(ops)}] (edges x ops {list(ops)}), "
            f"got {list(weights.shape)}"
        )
    return [[float(w) for w in row] for row in weights.detach().cpu().tolist()]


def _argmax(values: Sequence[float], allowed: Sequence[int]) -> int:
    """The index in `allowed` of the largest value; the first one on ties."""
    best = allowed[0]
    for i in allowed[1:]:
        if values[i] > values[best]:
            best = i
    return best


def derive_nb201(weights: Tensor, ops: Sequence[str] = nb201.OPS) -> NB201Architecture:
    """The NB201 cell of the strongest op on each edge, ``none`` included.

    Args:
        weights: Op weights [6, len(ops)], rows in `nb201.EDGES` order.
        ops: The op of each column (an NB201 supernet's ``ops``).
    """
    unknown = [op for op in ops if op not in nb201.OPS]
    if unknown:
        raise NasflowError(f"unknown NB201 ops {unknown}; allowed: {', '.join(nb201.OPS)}")
    rows = _rows(weights, len(nb201.EDGES), ops, "NB201 weights")
    everything = list(range(len(ops)))
    return NB201Architecture(edges=tuple(ops[_argmax(row, everything)] for row in rows))


def _derive_darts_cell(rows: list[list[float]], ops: Sequence[str]) -> tuple[Pair, ...]:
    candidates = [k for k, op in enumerate(ops) if op != "none"]
    pairs: list[Pair] = []
    first = 0  # row of the first edge into the current node
    for node in range(2, 2 + darts.NODES):
        incoming = rows[first : first + node]
        best_op = [_argmax(row, candidates) for row in incoming]
        strength = [row[k] for row, k in zip(incoming, best_op, strict=True)]
        # Stable sort: of equally strong edges the one from the lower state wins.
        kept = sorted(range(node), key=lambda j: -strength[j])[:2]
        pairs += [(ops[best_op[j]], j) for j in kept]
        first += node
    return tuple(pairs)


def derive_darts(
    weights_normal: Tensor, weights_reduce: Tensor, ops: Sequence[str] = darts.PRIMITIVES
) -> DartsGenotype:
    """DARTS' genotype: per node the top-2 incoming edges by their strongest non-none op.

    Args:
        weights_normal, weights_reduce: Op weights [14, len(ops)] of the normal and the
            reduction cells, rows in `DARTS_EDGES` order.
        ops: The op of each column (a DARTS supernet's ``ops``); at least one besides
            ``none``.
    """
    unknown = [op for op in ops if op not in darts.PRIMITIVES]
    if unknown:
        raise NasflowError(f"unknown DARTS ops {unknown}; allowed: {', '.join(darts.PRIMITIVES)}")
    if not any(op != "none" for op in ops):
        raise NasflowError(
            f"a DARTS genotype needs an op besides 'none' to derive, got ops {list(ops)}"
        )
    normal = _rows(weights_normal, len(DARTS_EDGES), ops, "DARTS normal weights")
    reduce = _rows(weights_reduce, len(DARTS_EDGES), ops, "DARTS reduce weights")
    return DartsGenotype(
        normal=_derive_darts_cell(normal, ops),
        normal_concat=darts.CONCAT,
        reduce=_derive_darts_cell(reduce, ops),
        reduce_concat=darts.CONCAT,
    )


def derive(network: nn.Module, weights: Mapping[str, Tensor]) -> Architecture:
    """The architecture of a supernet's op weights by name (``{"cell": ...}`` for NB201,
    ``{"normal": ..., "reduce": ...}`` for DARTS), with the supernet's ops as columns."""
    if isinstance(network, NB201Supernet):
        return derive_nb201(weights["cell"], network.ops)
    if isinstance(network, DartsSupernet):
        return derive_darts(weights["normal"], weights["reduce"], network.ops)
    raise NasflowError(
        f"cannot derive an architecture from a {type(network).__name__}; "
        "supported: NB201Supernet, DartsSupernet"
    )


def parameter_free_count(arch: Architecture) -> int:
    """How many of the architecture's ops are parameter-free (`PARAMETER_FREE`).

    NB201: of the cell's six edges. DARTS: of the 16 ops of the normal and the reduction
    cell together.
    """
    if isinstance(arch, NB201Architecture):
        ops: Sequence[str] = arch.edges
    elif isinstance(arch, DartsGenotype):
        ops = [op for op, _ in (*arch.normal, *arch.reduce)]
    else:
        raise NasflowError(
            f"parameter_free_count takes an NB201 or DARTS architecture, got {type(arch).__name__}"
        )
    return sum(op in PARAMETER_FREE for op in ops)
