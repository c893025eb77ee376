"""Weight-sharing NAS: supernets, relaxations, DARTS' architect and derivation.

The building blocks of DARTS (Liu et al. 2019), GDAS (Dong & Yang 2019) and DrNAS (Chen
et al. 2021) for the NB201 and DARTS spaces, each kept apart from the others:

* `supernet`: the networks with a `MixedOp` on every edge (`NB201Supernet`,
  `DartsSupernet`), driven by op weights.
* `relaxation`: the architecture parameters (`ArchParameters`) and how they become op
  weights (`Softmax`, `Gumbel`, `Dirichlet`, in `RELAXATIONS`).
* `architect`: DARTS' first- and second-order optimiser of the architecture parameters.
* `derive`: the discrete architecture the weights stand for.

A DARTS search step, in outline::

    net = NB201Supernet(1, 10, channels=16, cells_per_stage=5)
    alpha = ArchParameters.for_network(net, generator)
    architect = Architect(net, alpha, Softmax(), order=2)
    w_opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    for train_batch, val_batch in batches:
        architect.step(train_batch, val_batch, w_lr=0.025, w_optimizer=w_opt)
        w_opt.zero_grad()
        cross_entropy_loss(net, alpha.weights(Softmax()), train_batch).backward()
        w_opt.step()
    arch = derive(net, alpha.derivation_weights(Softmax()))
"""

from nasflow.oneshot.architect import Architect, cross_entropy_loss
from nasflow.oneshot.derive import (
    PARAMETER_FREE,
    derive,
    derive_darts,
    derive_nb201,
    parameter_free_count,
)
from nasflow.oneshot.relaxation import (
    RELAXATIONS,
    ArchParameters,
    Dirichlet,
    Gumbel,
    Relaxation,
    Softmax,
    entropy,
    linear_tau,
    make_relaxation,
)
from nasflow.oneshot.search import DartsSearch, EnasSearch, OneShotResult, OneShotStrategy
from nasflow.oneshot.supernet import (
    DARTS_EDGES,
    DartsSupernet,
    MixedOp,
    NB201Supernet,
    edge_count,
    supernet_logits,
)

__all__ = [
    "DARTS_EDGES",
    "PARAMETER_FREE",
    "RELAXATIONS",
    "ArchParameters",
    "Architect",
    "DartsSearch",
    "DartsSupernet",
    "Dirichlet",
    "EnasSearch",
    "Gumbel",
    "MixedOp",
    "NB201Supernet",
    "OneShotResult",
    "OneShotStrategy",
    "Relaxation",
    "Softmax",
    "cross_entropy_loss",
    "derive",
    "derive_darts",
    "derive_nb201",
    "edge_count",
    "entropy",
    "linear_tau",
    "make_relaxation",
    "parameter_free_count",
    "supernet_logits",
]
