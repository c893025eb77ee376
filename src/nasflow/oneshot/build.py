"""A search space's supernet, and the op weights that make it compute one architecture.

`nasflow.oneshot.supernet` defines the networks in terms of cells and ops; this module
builds the right one for a search space and the data's image shape, and translates
between the space's discrete architectures and the supernet's op weights: one-hot
weights run a single architecture on the shared weights (how ENAS trains and how every
method scores its derived architecture).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch
from torch import Tensor, nn

from nasflow.errors import NasflowError
from nasflow.oneshot.supernet import DARTS_EDGES, DartsSupernet, NB201Supernet
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_spaces.darts import DartsGenotype, DartsSpace
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Space

# The spaces a supernet exists for.
SPACES = ("nb201", "darts")

# The supernet of either space.
Supernet: TypeAlias = NB201Supernet | DartsSupernet


def build_supernet(
    space: SearchSpace,
    input_shape: Sequence[int],
    num_classes: int,
    channels: int | None = None,
    cells: int | None = None,
    affine: bool = False,
) -> Supernet:
    """The supernet of `space` for images of `input_shape` (C, H, W).

    `channels` and `cells` (NB201: cells per stage; DARTS: layers) size the supernet, the
    space's own values if None. The candidate ops are the space's; a DARTS supernet adds
    ``none``, which DARTS' derivation needs and never picks. `affine` is the NB201 edge
    convolutions' batch norm's (DARTS' supernet is always non-affine).
    """
    if len(input_shape) != 3:
        raise NasflowError(f"a supernet takes images (C, H, W), got input shape {input_shape}")
    in_channels = int(input_shape[0])
    if isinstance(space, NB201Space):
        return NB201Supernet(
            in_channels,
            num_classes,
            channels=channels or space.channels,
            cells_per_stage=cells or space.cells_per_stage,
            ops=space.ops,
            affine=affine,
        )
    if isinstance(space, DartsSpace):
        if cells is not None and cells < 3:
            raise NasflowError(
                f"strategy.cells must be at least 3 for a DARTS supernet, got {cells}"
            )
        return DartsSupernet(
            in_channels,
            num_classes,
            channels=channels or space.channels,
            layers=cells or space.layers,
            stem_multiplier=space.stem_multiplier,
            ops=("none", *space.ops),
        )
    raise NasflowError(f"no supernet for search_space '{space.name}'; allowed: {', '.join(SPACES)}")


def init_network(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """`build()` with torch's global generator seeded, leaving the caller's state alone.

    The modules draw their initial weights from the global generator; forking it is the
    only way to seed them without changing what the caller draws next.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def one_hot_weights(
    network: nn.Module, arch: Architecture, device: torch.device | None = None
) -> dict[str, Tensor]:
    """The op weights that make `network` (a supernet) compute `arch` alone.

    NB201: one 1 per edge, at the edge's op. DARTS: per cell type, a 1 at the chosen op of
    each of the genotype's eight edges and at ``none`` on the other six, so every unused
    edge adds nothing and costs (almost) nothing.
    """
    if isinstance(network, NB201Supernet) and isinstance(arch, NB201Architecture):
        weights = torch.zeros(len(arch.edges), len(network.ops), device=device)
        for edge, op in enumerate(arch.edges):
            weights[edge, network.ops.index(op)] = 1.0
        return {"cell": weights}
    if isinstance(network, DartsSupernet) and isinstance(arch, DartsGenotype):
        if "none" not in network.ops:
            raise NasflowError("a DARTS supernet needs the 'none' op to compute one genotype")
        result = {}
        for cell in ("normal", "reduce"):
            weights = torch.zeros(len(DARTS_EDGES), len(network.ops), device=device)
            weights[:, network.ops.index("none")] = 1.0
            for i, (op, source) in enumerate(getattr(arch, cell)):
                row = DARTS_EDGES.index((source, 2 + i // 2))
                weights[row] = 0.0
                weights[row, network.ops.index(op)] = 1.0
            result[cell] = weights
        return result
    raise NasflowError(
        f"cannot put a {type(arch).__name__} on a {type(network).__name__}; "
        "NB201 architectures go on an NB201Supernet, DARTS genotypes on a DartsSupernet"
    )
