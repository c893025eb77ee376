"""Architecture parameters and the relaxations that turn them into op weights.

A supernet (`nasflow.oneshot.supernet`) mixes its candidate operations with op weights,
one row per edge. The methods differ only in how those weights come from the architecture
parameters alpha (one row of logits per edge):

* `Softmax` (DARTS, Liu et al. 2019): ``softmax(alpha)``, every op on every edge.
* `Gumbel` (GDAS, Dong & Yang 2019): a one-hot sample per edge from
  ``softmax((log_softmax(alpha) + g) / tau)`` with Gumbel noise g, whose gradient is the
  soft sample's (straight-through). The caller anneals `tau` (GDAS: linearly from 10 to
  0.1, see `linear_tau`).
* `Dirichlet` (DrNAS, Chen et al. 2021): a reparameterised sample of
  ``Dirichlet(elu(alpha) + 1)`` per edge.

Each relaxation also gives the deterministic weights a discrete architecture is derived
from (`derivation_weights`): the softmax for DARTS and GDAS, the Dirichlet mean for DrNAS.

Randomness comes from an explicit `torch.Generator` wherever torch allows it, so a search
is reproducible from its seed: the initial alpha (`ArchParameters`), the Gumbel noise and,
through a seed drawn from the generator, the Dirichlet samples (see `Dirichlet`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Dirichlet as DirichletDistribution
from torch.distributions import kl_divergence

from nasflow.errors import NasflowError, check_int

# DARTS initialises alpha as 1e-3 * N(0, 1): all ops start (almost) equally weighted.
INIT_SCALE = 1e-3


class ArchParameters(nn.Module):
    """Named architecture parameters alpha, one [edges, ops] matrix of logits per cell type.

    ``{"cell": (6, n)}`` for an NB201 supernet, ``{"normal": (14, n), "reduce": (14, n)}``
    for DARTS; `for_network` reads the shapes from a supernet's ``arch_shapes()``. Kept
    apart from the supernet so that its optimiser (`nasflow.oneshot.architect.Architect`)
    and the network's are separate, as in DARTS.

    Args:
        shapes: The name and shape of each parameter, in the supernet's argument order.
        generator: Draws the initial values (``scale * randn``, as DARTS); torch's global
            generator if None.
        scale: The initial values' standard deviation.
        dtype: Their dtype (`.double()` and `.to()` work as on any module).
    """

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        generator: torch.Generator | None = None,
        scale: float = INIT_SCALE,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not shapes:
            raise NasflowError("architecture parameters need at least one named shape, got none")
        device = generator.device if generator is not None else None
        self.alphas = nn.ParameterDict()
        for name, shape in shapes.items():
            values = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
            self.alphas[name] = nn.Parameter(scale * values)
            # Which ops are still candidates (all until `prune`); a buffer, so it moves
            # with the module and is in its state dict.
            self.register_buffer(_mask_key(name), torch.ones(tuple(shape), dtype=torch.bool))

    @classmethod
    def for_network(
        cls, network: nn.Module, generator: torch.Generator | None = None, **kwargs: Any
    ) -> ArchParameters:
        """Parameters shaped for a supernet (any module with an ``arch_shapes()`` method)."""
        shapes = getattr(network, "arch_shapes", None)
        if shapes is None:
            raise TypeError(f"{type(network).__name__} has no arch_shapes(): not a supernet")
        return cls(shapes(), generator, **kwargs)

    def __getitem__(self, name: str) -> nn.Parameter:
        return self.alphas[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.alphas)

    def __len__(self) -> int:
        return len(self.alphas)

    def keys(self) -> list[str]:
        return list(self.alphas.keys())

    def items(self) -> list[tuple[str, nn.Parameter]]:
        return [(name, self.alphas[name]) for name in self.alphas]

    def mask(self, name: str) -> Tensor:
        """The candidate ops of parameter `name`: True where an op is still in the search."""
        mask = getattr(self, _mask_key(name))
        assert isinstance(mask, Tensor)
        return mask

    def weights(
        self, relaxation: Relaxation, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The op weights of every parameter under `relaxation` (for training steps).

        Parameters are relaxed in their order, all from the one `generator`; pruned ops
        get weight 0.
        """
        return {
            name: relaxation.weights(alpha, generator, self._live_mask(name))
            for name, alpha in self.items()
        }

    def derivation_weights(self, relaxation: Relaxation) -> dict[str, Tensor]:
        """The deterministic op weights a discrete architecture is derived from (detached;
        pruned ops get 0)."""
        with torch.no_grad():
            return {
                name: relaxation.derivation_weights(alpha, self._live_mask(name))
                for name, alpha in self.items()
            }

    def prune(self, relaxation: Relaxation, keep: int) -> None:
        """Keep only each edge's `keep` strongest candidate ops by derivation weight
        (DrNAS' progressive shrinking); the others get weight 0 from now on. Ties go to
        the lower op index."""
        check_int("keep", keep)
        weights = self.derivation_weights(relaxation)
        for name in self.keys():
            mask = self.mask(name)
            scores = weights[name].float().masked_fill(~mask, -math.inf)
            # Stable: of equal scores, the lower index ranks first.
            order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
            kept = torch.zeros_like(mask).scatter_(-1, order[..., :keep], True)
            mask.copy_(kept & mask)

    def fix(self, name: str, row: int, op: int) -> None:
        """Decide edge `row` of parameter `name`: op `op` is its only candidate from now
        on (weight exactly 1)."""
        mask = self.mask(name)
        mask[row] = False
        mask[row, op] = True

    @contextmanager
    def without(self, name: str, row: int, op: int) -> Iterator[None]:
        """Within the block, op `op` of edge `row` of parameter `name` is removed (the
        edge's other candidates share its weight, see `Relaxation.weights`)."""
        mask = self.mask(name)
        was = bool(mask[row, op])
        mask[row, op] = False
        try:
            yield
        finally:
            mask[row, op] = was

    def _live_mask(self, name: str) -> Tensor | None:
        """The mask if some op is pruned (None otherwise, so nothing extra is computed)."""
        mask = self.mask(name)
        return None if bool(mask.all()) else mask


def _mask_key(name: str) -> str:
    return f"mask_{name}"


class Relaxation(ABC):
    """How one matrix of architecture logits alpha [edges, ops] becomes op weights.

    Every row of the result sums to 1. `stochastic` says whether `weights` draws random
    numbers (so a second-order architect must replay them, see `Architect`).
    """

    name: ClassVar[str]
    stochastic: ClassVar[bool] = False

    @abstractmethod
    def weights(
        self, alpha: Tensor, generator: torch.Generator | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """The op weights for a training step, differentiable with respect to `alpha`.

        `mask` (bool, alpha's shape) marks the ops still in the search; the others get
        weight exactly 0, and the relaxation is that of the kept ops alone.
        """

    def derivation_weights(self, alpha: Tensor, mask: Tensor | None = None) -> Tensor:
        """The deterministic weights the discrete architecture is derived from: the
        softmax (of the kept ops) unless a relaxation says otherwise."""
        return F.softmax(_masked(alpha, mask), dim=-1)

    def regularizer(self, alpha: Tensor) -> Tensor | None:
        """A term the architect adds to the validation loss (None: nothing to add)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Softmax(Relaxation):
    """DARTS: ``softmax(alpha)`` per edge, a continuous mixture of every op."""

    name = "softmax"

    def weights(
        self, alpha: Tensor, generator: torch.Generator | None = None, mask: Tensor | None = None
    ) -> Tensor:
        return F.softmax(_masked(alpha, mask), dim=-1)


def _masked(alpha: Tensor, mask: Tensor | None) -> Tensor:
    """alpha with the logits of pruned ops at -inf (their softmax weight is exactly 0)."""
    return alpha if mask is None else alpha.masked_fill(~mask, -math.inf)


class Gumbel(Relaxation):
    """GDAS: one op per edge, sampled with the Gumbel-max trick, straight-through gradient.

    Per edge, with Gumbel noise ``g = -log(-log(u))``, ``u ~ U(0, 1)`` drawn from the
    given generator::

        soft = softmax((log_softmax(alpha) + g) / tau)
        hard = one_hot(argmax(soft)) - soft.detach() + soft

    so the forward value is one-hot (the supernet computes the chosen op only) and the
    gradient is the soft sample's. The sampled op is distributed as ``softmax(alpha)``
    whatever tau; tau sets how close the soft sample, and so the gradient, is to one-hot.
    GDAS anneals it linearly from 10 to 0.1 over the search: the caller sets `tau` (e.g.
    to `linear_tau(epoch, epochs)`) before each epoch.

    Args:
        tau: The softmax temperature, > 0.
        hard: One-hot weights with the straight-through gradient (GDAS); if False, the soft
            sample itself (the Gumbel-softmax of SNAS).
    """

    name = "gumbel"
    stochastic = True

    def __init__(self, tau: float = 10.0, hard: bool = True) -> None:
        self.tau = tau
        self.hard = hard

    @property
    def tau(self) -> float:
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise NasflowError(f"gumbel tau must be a positive number, got {value!r}")
        self._tau = float(value)

    def weights(
        self, alpha: Tensor, generator: torch.Generator | None = None, mask: Tensor | None = None
    ) -> Tensor:
        device = generator.device if generator is not None else alpha.device
        uniform = torch.rand(alpha.shape, generator=generator, device=device, dtype=alpha.dtype)
        # Clamped away from 0 so the noise is finite (torch.rand is already below 1).
        uniform = uniform.to(alpha.device).clamp_(min=torch.finfo(alpha.dtype).tiny)
        gumbel = -torch.log(-torch.log(uniform))
        logits = F.log_softmax(_masked(alpha, mask), dim=-1)
        soft = F.softmax((logits + gumbel) / self.tau, dim=-1)
        if not self.hard:
            return soft
        one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
        # The zero entries are exactly 0 (x - x), so the supernet skips their ops.
        return one_hot - soft.detach() + soft

    def __repr__(self) -> str:
        return f"Gumbel(tau={self.tau}, hard={self.hard})"


def linear_tau(step: int, steps: int, tau_max: float = 10.0, tau_min: float = 0.1) -> float:
    """GDAS' schedule: tau falls linearly from `tau_max` at step 0 to `tau_min` at steps-1."""
    check_int("steps", steps)
    if steps == 1:
        return tau_min
    return tau_max - (tau_max - tau_min) * step / (steps - 1)


class Dirichlet(Relaxation):
    """DrNAS: op weights sampled from a Dirichlet distribution per edge.

    The concentration is ``elu(alpha) + 1`` (DrNAS' code; positive for any alpha) or
    ``softplus(alpha)``; training weights are a reparameterised sample
    (``torch.distributions.Dirichlet.rsample``, whose gradient reaches alpha through
    implicit reparameterisation), and a discrete architecture is derived from the mean,
    ``concentration / concentration.sum()``.

    Randomness: torch's Dirichlet sampler takes no generator; it draws from torch's global
    generator of alpha's device. Without a `generator` that is what `weights` does, so seed
    torch (``torch.manual_seed``) for reproducible samples. With one, `weights` draws a seed
    from it and samples under ``torch.random.fork_rng`` with the global generator seeded
    from that seed: the sample is then reproducible from the explicit generator and the
    global generator's state is left as it was (CPU and CUDA tensors; on other devices the
    global generator is used as without a `generator`).

    Regularisation: DrNAS keeps the concentration from growing without bound, by default
    with an l2 penalty on alpha (the architect's Adam weight decay, ``arch_weight_decay``)
    and optionally with ``kl_weight * KL(Dirichlet(concentration) || Dirichlet(1))``
    summed over edges, which `regularizer` returns for the architect to add to the
    validation loss.

    Args:
        concentration: ``"elu"`` (elu(alpha) + 1, as DrNAS) or ``"softplus"``.
        kl_weight: The weight of the KL term, >= 0 (0: none, DrNAS' default l2 only).
    """

    name = "dirichlet"
    stochastic = True
    CONCENTRATIONS = ("elu", "softplus")

    def __init__(self, concentration: str = "elu", kl_weight: float = 0.0) -> None:
        if concentration not in self.CONCENTRATIONS:
            raise NasflowError(
                f"dirichlet concentration {concentration!r} unknown; "
                f"choose from {', '.join(self.CONCENTRATIONS)}"
            )
        if (
            isinstance(kl_weight, bool)
            or not isinstance(kl_weight, int | float)
            or not (kl_weight >= 0 and math.isfinite(kl_weight))
        ):
            raise NasflowError(f"dirichlet kl_weight must be a number >= 0, got {kl_weight!r}")
        self.concentration_kind = concentration
        self.kl_weight = float(kl_weight)

    def concentration(self, alpha: Tensor) -> Tensor:
        """The Dirichlet concentration of each edge, positive, from alpha."""
        if self.concentration_kind == "elu":
            return F.elu(alpha) + 1
        return F.softplus(alpha)

    def weights(
        self, alpha: Tensor, generator: torch.Generator | None = None, mask: Tensor | None = None
    ) -> Tensor:
        # A Dirichlet sample restricted to the kept ops and renormalised is distributed as
        # the Dirichlet of their concentrations alone (the aggregation property).
        return _restrict(self._sample(alpha, generator), mask)

    def _sample(self, alpha: Tensor, generator: torch.Generator | None) -> Tensor:
        distribution = DirichletDistribution(self.concentration(alpha))
        device = alpha.device
        if generator is None or device.type not in ("cpu", "cuda"):
            return distribution.rsample()
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        if device.type == "cpu":
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed)
                return distribution.rsample()
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.cuda.default_generators[index].manual_seed(seed)
            return distribution.rsample()

    def derivation_weights(self, alpha: Tensor, mask: Tensor | None = None) -> Tensor:
        return _restrict(self.concentration(alpha), mask)

    def regularizer(self, alpha: Tensor) -> Tensor | None:
        if not self.kl_weight:
            return None
        concentration = self.concentration(alpha)
        prior = DirichletDistribution(torch.ones_like(concentration))
        kl = kl_divergence(DirichletDistribution(concentration), prior)
        return self.kl_weight * kl.sum()

    def __repr__(self) -> str:
        return f"Dirichlet(concentration={self.concentration_kind!r}, kl_weight={self.kl_weight})"


def _restrict(values: Tensor, mask: Tensor | None) -> Tensor:
    """`values` (positive) with the pruned entries zeroed, each row normalised to sum 1."""
    if mask is not None:
        values = values * mask
    return values / values.sum(dim=-1, keepdim=True)


# Every relaxation by name.
RELAXATIONS: dict[str, type[Relaxation]] = {cls.name: cls for cls in (Softmax, Gumbel, Dirichlet)}


def make_relaxation(name: str, **options: Any) -> Relaxation:
    """The relaxation registered as `name` in `RELAXATIONS`, built with `options`."""
    if name not in RELAXATIONS:
        raise NasflowError(f"unknown relaxation {name!r}; choose from {', '.join(RELAXATIONS)}")
    return RELAXATIONS[name](**options)


def entropy(weights: Tensor) -> Tensor:
    """The mean over edges (rows) of the entropy of each row of op weights, in nats.

    log(ops) for uniform rows, 0 for one-hot ones; zero weights contribute 0 (0 log 0 = 0).
    """
    return -torch.special.xlogy(weights, weights).sum(dim=-1).mean()
