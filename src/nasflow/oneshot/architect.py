"""DARTS' architect: the optimiser of the architecture parameters, apart from the network.

DARTS (Liu et al. 2019) alternates a step on the network weights w (training loss) with
a step on the architecture parameters alpha (validation loss). This module is the latter;
the caller owns the network's optimiser and its step. Both orders of the paper:

* First order: the gradient of ``L_val(w, alpha)`` with respect to alpha at the current w.
* Second order (unrolled): the gradient of ``L_val(w', alpha)`` with respect to alpha,
  where ``w' = w - xi * grad_w L_train(w, alpha)`` is one look-ahead step on the weights::

      grad = grad_alpha L_val(w', alpha) - xi * H v,    v = grad_w' L_val(w', alpha),
      H v  ~ (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 eps),
      w+- = w +- eps * v,  eps = 0.01 / ||v||

  (the mixed second derivative ``d^2 L_train / d alpha d w`` times v, by central finite
  differences, as DARTS' code does). `exact_gradient` computes the same gradient with
  autograd through the look-ahead step (double backward) to check it.

The look-ahead step is the step the network's optimiser would take: with a
``torch.optim.SGD`` its weight decay, momentum (buffer included), dampening, Nesterov and
maximize settings, as DARTS' code unrolls its SGD (exactly, also where DARTS neglects the
factor Nesterov puts on the gradient); without an optimiser, a plain gradient step on every
trainable parameter. Parameters the optimiser does not hold stay where they are.

The architect never changes the network: every loss is evaluated with
``torch.func.functional_call`` on the given weights and on *copies* of the buffers, so the
network's parameters, their ``.grad`` and its batch-norm statistics are exactly as before a
step (the validation batches do not update the running statistics, unlike DARTS' code).
Only the architecture parameters and their Adam state change.

A relaxation with a regulariser (DrNAS' KL term, `Relaxation.regularizer`) has its
gradient added to the architecture gradient at either order.

The loss is a function ``loss_fn(network, weights, batch) -> Tensor`` of the supernet, its
op weights by name (see `ArchParameters.weights`) and a batch; `cross_entropy_loss` is the
usual one, for ``(images, labels)`` batches and either supernet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from nasflow.errors import NasflowError
from nasflow.oneshot.relaxation import ArchParameters, Relaxation
from nasflow.oneshot.supernet import supernet_logits

LossFn = Callable[[nn.Module, Mapping[str, Tensor], Any], Tensor]
# DARTS' finite-difference step: eps = FINITE_DIFFERENCE_R / ||v||.
FINITE_DIFFERENCE_R = 0.01


def cross_entropy_loss(network: nn.Module, weights: Mapping[str, Tensor], batch: Any) -> Tensor:
    """The mean cross-entropy of a supernet with op `weights` on an ``(inputs, labels)`` batch."""
    inputs, labels = batch[0], batch[1]
    return F.cross_entropy(supernet_logits(network, inputs, weights), labels)


class _Objective(nn.Module):
    """`loss_fn` on `network` as a module, so `functional_call` can swap its tensors."""

    def __init__(self, network: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.network = network
        self.loss_fn = loss_fn

    def forward(self, weights: Mapping[str, Tensor], batch: Any) -> Tensor:
        return self.loss_fn(self.network, weights, batch)


@dataclass(frozen=True)
class _StepRule:
    """One parameter's SGD update direction d(w, g), so that w' = w - lr * d.

    ``torch.optim.SGD``'s single-tensor rule; all zeros is the plain gradient step.
    """

    weight_decay: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    maximize: bool = False
    buffer: Tensor | None = None  # the momentum buffer, None before the first step

    def direction(self, w: Tensor, g: Tensor) -> Tensor:
        d = -g if self.maximize else g
        if self.weight_decay:
            d = d + self.weight_decay * w
        if self.momentum:
            if self.buffer is None:
                buf = d
            else:
                buf = self.momentum * self.buffer + (1 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        return d

    @property
    def slope(self) -> float:
        """d direction / d g, a scalar: how the step responds to the gradient."""
        slope = -1.0 if self.maximize else 1.0
        if self.momentum:
            inner = 1.0 if self.buffer is None else 1.0 - self.dampening
            slope *= 1.0 + self.momentum * inner if self.nesterov else inner
        return slope


class Architect:
    """Adam on the architecture parameters, with DARTS' first- or second-order gradient.

    Args:
        network: The supernet (its weights are read, never changed).
        arch_params: The architecture parameters alpha, updated by `step`.
        relaxation: How alpha becomes op weights (`Softmax` for DARTS, ...).
        loss_fn: ``loss_fn(network, weights, batch) -> Tensor``; `cross_entropy_loss` by
            default.
        lr, betas, weight_decay: Adam's settings for alpha (DARTS: 3e-4, (0.5, 0.999),
            1e-3).
        order: 1 (first order) or 2 (unrolled, second order).
        xi: The look-ahead step size of order 2; the network's learning rate `w_lr` of
            each step if None (as DARTS).
        generator: Draws the noise of a stochastic relaxation. A second-order step
            evaluates the relaxed weights several times and replays the generator's state
            for each, so that all see the same sample; it is therefore required for order
            2 with a stochastic relaxation.
        fd_radius: The finite-difference step of order 2, eps = fd_radius / ||v|| (so the
            weights move by fd_radius in norm): DARTS' 0.01 by default. The central
            difference is exact up to O(eps^2) where the loss is smooth, but a step that
            moves ReLU inputs across zero changes the gradient abruptly; tiny networks,
            whose few weights each move a lot, need a smaller one (the tests use 1e-4 in
            float64).
    """

    def __init__(
        self,
        network: nn.Module,
        arch_params: ArchParameters,
        relaxation: Relaxation,
        loss_fn: LossFn = cross_entropy_loss,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        order: int = 1,
        xi: float | None = None,
        generator: torch.Generator | None = None,
        fd_radius: float = FINITE_DIFFERENCE_R,
    ) -> None:
        if order not in (1, 2):
            raise NasflowError(f"architect order must be 1 or 2, got {order!r}")
        if xi is not None and not xi >= 0:
            raise NasflowError(f"architect xi must be a number >= 0 or None, got {xi!r}")
        if not fd_radius > 0:
            raise NasflowError(f"architect fd_radius must be a positive number, got {fd_radius!r}")
        if order == 2 and relaxation.stochastic and generator is None:
            raise NasflowError(
                f"a second-order architect with the stochastic {relaxation.name!r} relaxation "
                "needs a generator (to replay one sample in every unrolled evaluation)"
            )
        self.network = network
        self.arch_params = arch_params
        self.relaxation = relaxation
        self.loss_fn = loss_fn
        self.order = order
        self.xi = xi
        self.generator = generator
        self.fd_radius = fd_radius
        self.optimizer = torch.optim.Adam(
            arch_params.parameters(), lr=lr, betas=betas, weight_decay=weight_decay
        )
        self._objective = _Objective(network, loss_fn)

    # -- the step ------------------------------------------------------------------------

    def step(
        self,
        train_batch: Any,
        val_batch: Any,
        w_lr: float | None = None,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> Tensor:
        """One Adam step on alpha along `gradient`; returns the validation loss (detached;
        at the look-ahead weights w' for order 2).

        `w_lr` and `w_optimizer` (the network's learning rate and optimiser) are used by
        order 2 only; see `gradient`.
        """
        grads, loss = self._gradient(train_batch, val_batch, w_lr, w_optimizer)
        for name, alpha in self.arch_params.items():
            alpha.grad = grads[name]
        self.optimizer.step()
        return loss

    def _regularized(self, grads: dict[str, Tensor]) -> dict[str, Tensor]:
        """`grads` plus the gradient of the relaxation's regularizer (if it has one)."""
        result = dict(grads)
        for name, alpha in self.arch_params.items():
            term = self.relaxation.regularizer(alpha)
            if term is not None:
                result[name] = result[name] + torch.autograd.grad(term, alpha)[0]
        return result

    def gradient(
        self,
        train_batch: Any,
        val_batch: Any,
        w_lr: float | None = None,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> dict[str, Tensor]:
        """The architecture gradient of this architect's order, by parameter name.

        Order 1 uses `val_batch` only. Order 2 unrolls one step of `w_optimizer` (a
        ``torch.optim.SGD``, or None for a plain gradient step) of size xi (`w_lr` unless
        the architect's `xi` is set) on `train_batch`, and approximates the second-order
        term by finite differences.
        """
        return self._gradient(train_batch, val_batch, w_lr, w_optimizer)[0]

    def exact_gradient(
        self,
        train_batch: Any,
        val_batch: Any,
        w_lr: float | None = None,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> dict[str, Tensor]:
        """The second-order gradient with autograd through the look-ahead step.

        ``d/d alpha L_val(w - xi * d(grad_w L_train(w, alpha)), alpha)`` by double
        backward (``create_graph=True``): what `gradient` approximates at order 2, for
        tests. Costs a backward pass through a backward pass.
        """
        xi = self._xi(w_lr)
        params, rules = self._moving(w_optimizer)
        state = self._generator_state()
        train_loss = self._loss(params, self._weights(state), train_batch)
        grads: tuple[Tensor, ...] = ()
        if params:
            grads = torch.autograd.grad(
                train_loss, list(params.values()), create_graph=True, materialize_grads=True
            )
        unrolled = {
            name: w - xi * rules[name].direction(w, g)
            for (name, w), g in zip(params.items(), grads, strict=True)
        }
        val_loss = self._loss(unrolled, self._weights(state), val_batch)
        alphas = [alpha for _, alpha in self.arch_params.items()]
        exact = torch.autograd.grad(val_loss, alphas)
        names = self.arch_params.keys()
        return self._regularized({n: g.detach() for n, g in zip(names, exact, strict=True)})

    # -- the gradients -------------------------------------------------------------------

    def _gradient(
        self,
        train_batch: Any,
        val_batch: Any,
        w_lr: float | None,
        w_optimizer: torch.optim.Optimizer | None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The architecture gradient (the validation loss's plus the regulariser's) and
        the validation loss."""
        grads, loss = self._loss_gradient(train_batch, val_batch, w_lr, w_optimizer)
        return self._regularized(grads), loss

    def _loss_gradient(
        self,
        train_batch: Any,
        val_batch: Any,
        w_lr: float | None,
        w_optimizer: torch.optim.Optimizer | None,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The validation loss's architecture gradient at this architect's order."""
        names = self.arch_params.keys()
        alphas = [alpha for _, alpha in self.arch_params.items()]
        params, rules = self._moving(w_optimizer) if self.order == 2 else ({}, {})
        if not params:  # first order, or nothing to look ahead with (w' = w)
            state = self._generator_state()
            loss = self._loss(self._current_params(), self._weights(state), val_batch)
            grads = torch.autograd.grad(loss, alphas)
            return dict(zip(names, grads, strict=True)), loss.detach()

        xi = self._xi(w_lr)
        state = self._generator_state()
        w = list(params.values())

        # The look-ahead weights w' = w - xi * d(grad_w L_train(w, alpha)).
        train_loss = self._loss(params, self._weights(state), train_batch)
        train_grads = torch.autograd.grad(train_loss, w, materialize_grads=True)
        unrolled = {
            name: (p - xi * rules[name].direction(p, g)).detach().requires_grad_(True)
            for (name, p), g in zip(params.items(), train_grads, strict=True)
        }

        # grad_alpha L_val(w', alpha) and v = grad_w' L_val(w', alpha).
        val_loss = self._loss(unrolled, self._weights(state), val_batch)
        both = torch.autograd.grad(
            val_loss, alphas + list(unrolled.values()), materialize_grads=True
        )
        alpha_grads, v = both[: len(alphas)], both[len(alphas) :]

        # The implicit term: d w' / d alpha = -xi * slope * d^2 L_train / d w d alpha, so the
        # mixed second derivative is taken along u = slope * v (u = v for plain SGD).
        u = [rules[name].slope * g for name, g in zip(params, v, strict=True)]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in u]))
        if xi == 0 or not norm > 0:
            return dict(zip(names, alpha_grads, strict=True)), val_loss.detach()
        eps = self.fd_radius / norm
        with torch.no_grad():
            plus = {name: p + eps * g for (name, p), g in zip(params.items(), u, strict=True)}
            minus = {name: p - eps * g for (name, p), g in zip(params.items(), u, strict=True)}
        grads_plus = torch.autograd.grad(
            self._loss(plus, self._weights(state), train_batch), alphas
        )
        grads_minus = torch.autograd.grad(
            self._loss(minus, self._weights(state), train_batch), alphas
        )
        result = {
            name: g - xi * (gp - gm) / (2 * eps)
            for name, g, gp, gm in zip(names, alpha_grads, grads_plus, grads_minus, strict=True)
        }
        return result, val_loss.detach()

    # -- helpers -------------------------------------------------------------------------

    def _xi(self, w_lr: float | None) -> float:
        xi = self.xi if self.xi is not None else w_lr
        if xi is None or not xi >= 0:
            raise NasflowError(
                f"a second-order architect step needs w_lr >= 0 (or the architect's xi), "
                f"got w_lr={w_lr!r}"
            )
        return float(xi)

    def _current_params(self) -> dict[str, Tensor]:
        return dict(self.network.named_parameters())

    def _moving(
        self, optimizer: torch.optim.Optimizer | None
    ) -> tuple[dict[str, Tensor], dict[str, _StepRule]]:
        """The variables of the look-ahead step and each one's update rule.

        The variables are the trainable network parameters that `optimizer` holds (all
        trainable ones without an optimiser), detached copies that require grad; the other
        parameters do not move and keep the network's own values in every evaluation.
        """
        if optimizer is not None and not isinstance(optimizer, torch.optim.SGD):
            raise NasflowError(
                f"a second-order architect unrolls an SGD step; w_optimizer is "
                f"{type(optimizer).__name__}: pass a torch.optim.SGD, or None for a plain "
                "gradient step"
            )
        groups: dict[int, dict[str, Any]] = {}
        if optimizer is not None:
            groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        params: dict[str, Tensor] = {}
        rules: dict[str, _StepRule] = {}
        for name, p in self.network.named_parameters():
            if not p.requires_grad:
                continue
            if optimizer is None:
                rules[name] = _StepRule()
            elif id(p) in groups:
                group = groups[id(p)]
                rules[name] = _StepRule(
                    weight_decay=float(group.get("weight_decay", 0.0)),
                    momentum=float(group.get("momentum", 0.0)),
                    dampening=float(group.get("dampening", 0.0)),
                    nesterov=bool(group.get("nesterov", False)),
                    maximize=bool(group.get("maximize", False)),
                    buffer=optimizer.state.get(p, {}).get("momentum_buffer"),
                )
            else:
                continue
            params[name] = p.detach().requires_grad_(True)
        return params, rules

    def _generator_state(self) -> Tensor | None:
        return self.generator.get_state() if self.generator is not None else None

    def _weights(self, state: Tensor | None) -> dict[str, Tensor]:
        """The relaxed op weights, each call replaying the generator from `state`."""
        if self.generator is not None and state is not None:
            self.generator.set_state(state)
        return self.arch_params.weights(self.relaxation, self.generator)

    def _loss(
        self, params: Mapping[str, Tensor], weights: Mapping[str, Tensor], batch: Any
    ) -> Tensor:
        """`loss_fn` with the network's parameters replaced by `params` (the others kept)
        and its buffers by copies, so the network itself is left untouched."""
        tensors = {f"network.{name}": p for name, p in params.items()}
        for name, buffer in self.network.named_buffers():
            tensors[f"network.{name}"] = buffer.clone()
        return functional_call(self._objective, tensors, (weights, batch))
