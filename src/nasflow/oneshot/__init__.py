"""Weight-sharing NAS: supernets, relaxations, DARTS' architect and derivation, and the
one-shot searches built from them.

The building blocks of DARTS (Liu et al. 2019), GDAS (Dong & Yang 2019) and DrNAS (Chen
et al. 2021) for the NB201 and DARTS spaces, each kept apart from the others:

* `supernet`: the networks with a `MixedOp` on every edge (`NB201Supernet`,
  `DartsSupernet`), driven by op weights; `build`: the supernet of a search space, and
  the one-hot op weights of one architecture.
* `relaxation`: the architecture parameters (`ArchParameters`) and how they become op
  weights (`Softmax`, `Gumbel`, `Dirichlet`, in `RELAXATIONS`).
* `architect`: DARTS' first- and second-order optimiser of the architecture parameters.
* `derive`: the discrete architecture the weights stand for.

The searches, each run once by the search stage (`OneShotStrategy.search`):

* `strategy`: the contract (`OneShotStrategy`, `OneShotResult`) and the run every method
  shares; `settings`: the supernet's weights and data (`WeightSettings`); `module`: the
  Lightning module that trains a supernet.
* `darts`: `DartsSearch`, DARTS, GDAS or DrNAS, with DARTS-PT's perturbation selection.
* `enas`: `EnasSearch`, ENAS, with the controller of `nasflow.search_strategies.reinforce`.

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
from nasflow.oneshot.build import build_supernet, one_hot_weights
from nasflow.oneshot.darts import DartsSearch
from nasflow.oneshot.derive import (
    PARAMETER_FREE,
    derive,
    derive_darts,
    derive_nb201,
    parameter_free_count,
)
from nasflow.oneshot.enas import EnasSearch
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
from nasflow.oneshot.settings import WeightSettings
from nasflow.oneshot.strategy import OneShotResult, OneShotStrategy
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
    "WeightSettings",
    "build_supernet",
    "cross_entropy_loss",
    "derive",
    "derive_darts",
    "derive_nb201",
    "edge_count",
    "entropy",
    "linear_tau",
    "make_relaxation",
    "one_hot_weights",
    "parameter_free_count",
    "supernet_logits",
]
