"""Zero-cost proxies: scores of an untrained network from one minibatch, higher = better.

Each proxy is ``proxy(network, images, labels, num_classes) -> float`` and is registered in
`PROXIES` (`nasflow.registry`) by name. The definitions follow the papers and the
reference code of Abdelfattah et al. 2021 ("Zero-Cost Proxies for Lightweight NAS"):

* ``synflow`` (Tanaka et al. 2020): no data; weights made positive, an all-ones input,
  sum over conv/linear weights of |theta * dR/dtheta| with R the sum of the outputs.
* ``naswot`` (Mellor et al. 2021): log-determinant of the Hamming-similarity kernel of the
  images' binary ReLU codes.
* ``jacob_cov`` (Mellor et al. 2021, v1): how decorrelated the input Jacobians of the
  images are.
* ``snip`` (Lee et al. 2019), ``grad_norm``, ``fisher`` (Theis et al. 2018, Turner et al.
  2020) and ``grasp`` (Wang et al. 2020): saliencies of the conv/linear weights under the
  cross-entropy loss of the minibatch, summed over the network.
* ``params`` and ``flops``: the costs of `nasflow.measure`, as baselines.

Every proxy works on a deep copy of the network (so the caller's weights, gradients,
batch-norm statistics and train/eval mode are untouched) and uses no random state: the
minibatch is the only input. Data proxies run the copy in training mode, so batch norm
normalises with the minibatch's statistics as it does at the start of training; this is
what the reference code does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from nasflow.measure import count_flops, count_params
from nasflow.registry import PROXIES

Proxy = Callable[[nn.Module, Tensor, Tensor, int], float]
LossFn = Callable[[Tensor, Tensor], Tensor]

# The layers whose weights the saliency proxies score, as in the reference code.
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# What naswot returns when the codes' kernel is singular (some images share a code, or
# the network has no ReLU). The kernel is an integer positive semi-definite matrix, so a
# non-singular one has determinant >= 1 and log-determinant >= 0: this ranks below all.
NASWOT_SINGULAR = -1.0
# jacob_cov's ridge k, from the reference.
JACOB_COV_K = 1e-5


def _working_copy(network: nn.Module, training: bool) -> nn.Module:
    """A deep copy in the given mode with every parameter trainable and no stale gradient."""
    clone = copy.deepcopy(network)
    clone.train(training)
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
        parameter.grad = None
    return clone


def _weights(network: nn.Module) -> list[Tensor]:
    """The weights of the conv and linear layers, each shared module once."""
    return [m.weight for m in network.modules() if isinstance(m, WEIGHTED)]


def _weight_gradients(
    network: nn.Module, images: Tensor, labels: Tensor, loss_fn: LossFn
) -> tuple[list[Tensor], list[Tensor]]:
    """The conv/linear weights of `network` and the loss's gradient for each (zeros if unused)."""
    weights = _weights(network)
    loss = loss_fn(network(images), labels)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return weights, [
        torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads, strict=True)
    ]


# -- proxies without labels ----------------------------------------------------------------


@PROXIES.register("synflow")
def synflow(network: nn.Module, images: Tensor, labels: Tensor, num_classes: int) -> float:
    """SynFlow: sum over conv/linear weights of |theta * dR/dtheta|, R = sum(f_|theta|(1)).

    Every parameter is replaced by its absolute value and the network is fed a single
    all-ones image, so the score depends on the architecture and the weights' magnitudes
    only. Batch norm is put in eval mode with reset statistics, which makes it a positive
    per-channel scale (as Tanaka et al. do), and the pass runs in float64, as the reference
    does, so that the products of many layers do not overflow.
    """
    clone = _working_copy(network, training=False)
    clone.double()
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.abs_()
        for module in clone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                module.reset_running_stats()
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64, device=images.device)
    weights = _weights(clone)
    grads = torch.autograd.grad(clone(ones).sum(), weights, allow_unused=True)
    return float(
        sum(
            (w.detach() * g).abs().sum()
            for w, g in zip(weights, grads, strict=True)
            if g is not None
        )
    )


class _ReLUCodes(TorchFunctionMode):
    """Records the binary code (output > 0) of every ReLU applied while it is active.

    A function mode rather than module hooks: it sees ``nn.ReLU`` modules *and* the
    functional ``torch.relu`` / ``F.relu`` some networks call (the chain's conv blocks and
    NASNet's head), which forward hooks on ``nn.ReLU`` would miss.
    """

    RELUS = frozenset(
        {torch.relu, torch.relu_, F.relu, F.relu_, Tensor.relu, Tensor.relu_}  # type: ignore[arg-type]
    )

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.kernel = torch.zeros(batch, batch, dtype=torch.float64)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in self.RELUS and isinstance(out, Tensor) and out.dim() > 0:
            self.add(out)
        return out

    def add(self, activations: Tensor) -> None:
        codes = (activations.detach() > 0).flatten(1).to(torch.float32)
        if codes.shape[0] != self.kernel.shape[0]:
            return  # not a per-image activation (e.g. a ReLU on a parameter)
        # codes @ codes.T + (1 - codes) @ (1 - codes).T, with one matrix product.
        # Exact in float32: a layer has far fewer than 2**24 units.
        agree = codes @ codes.T
        ones = codes.sum(1, keepdim=True)
        layer = 2 * agree - ones - ones.T + codes.shape[1]
        self.kernel += layer.to(torch.float64).cpu()


@PROXIES.register("naswot")
def naswot(network: nn.Module, images: Tensor, labels: Tensor, num_classes: int) -> float:
    """NASWOT: log det K, K[i, j] = units where images i and j are on the same side of 0.

    The binary code of an image is whether each ReLU output is positive, over every ReLU
    the network applies (modules and functional calls, see `_ReLUCodes`); K = N_A minus
    the Hamming distance of two codes. Networks whose codes are linearly dependent (two
    images with one code, or no ReLU at all) get `NASWOT_SINGULAR`.
    """
    clone = _working_copy(network, training=True)
    recorder = _ReLUCodes(images.shape[0])
    with torch.no_grad(), recorder:
        clone(images)
    eigenvalues = torch.linalg.eigvalsh(recorder.kernel)
    tolerance = eigenvalues.abs().max() * len(eigenvalues) * torch.finfo(torch.float64).eps
    if eigenvalues.min() <= tolerance:
        return NASWOT_SINGULAR
    return float(eigenvalues.log().sum())


@PROXIES.register("jacob_cov")
def jacob_cov(network: nn.Module, images: Tensor, labels: Tensor, num_classes: int) -> float:
    """-sum(log(v + k) + 1 / (v + k)) over eigenvalues v of the Jacobians' correlations.

    The Jacobian row of an image is the gradient of the sum of its outputs with respect to
    its pixels (computed, as in the reference, as the gradient of the sum over the batch).
    An image whose row is constant has no correlation with the others (a zero row and
    diagonal), where `numpy.corrcoef` would give NaN; it costs the score the penalty of a
    zero eigenvalue.
    """
    clone = _working_copy(network, training=True)
    inputs = images.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(clone(inputs).sum(), inputs)
    rows = grad.reshape(grad.shape[0], -1).to(torch.float64)
    rows = rows - rows.mean(1, keepdim=True)
    norms = rows.norm(dim=1, keepdim=True)
    rows = torch.where(norms > 0, rows / norms.clamp_min(1e-300), torch.zeros_like(rows))
    eigenvalues = torch.linalg.eigvalsh(rows @ rows.T).clamp_min(0)
    shifted = eigenvalues + JACOB_COV_K
    return float(-(shifted.log() + 1 / shifted).sum())


# -- proxies of the loss's gradients -------------------------------------------------------


@PROXIES.register("snip")
def snip(
    network: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    loss_fn: LossFn = F.cross_entropy,
) -> float:
    """SNIP: sum over conv/linear weights of |theta * dL/dtheta|, L the minibatch's loss."""
    clone = _working_copy(network, training=True)
    weights, grads = _weight_gradients(clone, images, labels, loss_fn)
    return float(sum((w.detach() * g).abs().sum() for w, g in zip(weights, grads, strict=True)))


@PROXIES.register("grad_norm")
def grad_norm(
    network: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    loss_fn: LossFn = F.cross_entropy,
) -> float:
    """Sum over conv/linear layers of the L2 (Frobenius) norm of dL/d(weight)."""
    clone = _working_copy(network, training=True)
    _, grads = _weight_gradients(clone, images, labels, loss_fn)
    return float(sum(g.norm() for g in grads))


@PROXIES.register("fisher")
def fisher(
    network: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    loss_fn: LossFn = F.cross_entropy,
) -> float:
    """Fisher: sum over conv/linear output channels of 0.5 * mean_n (sum_xy a * dL/da)^2.

    a is a layer's output activation and the inner sum runs over its spatial positions:
    per image, the estimated change in loss from removing the channel (Theis et al.);
    squared, averaged over the batch and halved, as in the reference (Turner et al.).
    """
    clone = _working_copy(network, training=True)
    total: list[Tensor] = []

    def on_output(module: nn.Module, inputs: Any, output: Tensor) -> None:
        activation = output.detach()

        def on_grad(grad: Tensor) -> None:
            product = activation * grad
            per_channel = (
                product.sum(tuple(range(2, product.dim()))) if product.dim() > 2 else product
            )
            total.append(0.5 * per_channel.pow(2).mean(0).sum())

        if output.requires_grad:
            output.register_hook(on_grad)

    handles = [
        m.register_forward_hook(on_output) for m in clone.modules() if isinstance(m, WEIGHTED)
    ]
    try:
        loss = loss_fn(clone(images), labels)
        inputs = list(clone.parameters())
        torch.autograd.grad(loss, inputs, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    return float(sum(total)) if total else 0.0


@PROXIES.register("grasp")
def grasp(
    network: nn.Module,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    loss_fn: LossFn = F.cross_entropy,
) -> float:
    """GraSP: sum over conv/linear weights of -theta * (H g), H and g the loss's Hessian and
    gradient (a Hessian-vector product, by differentiating g . stop_grad(g)).

    Not an absolute value: the sign matters (Wang et al. prune the weights with the
    largest -theta * Hg, the ones whose removal least reduces the gradient flow).
    """
    clone = _working_copy(network, training=True)
    _, grads = _weight_gradients(clone, images, labels, loss_fn)
    fixed = [g.detach() for g in grads]
    weights = _weights(clone)
    loss = loss_fn(clone(images), labels)
    live = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    dot = sum((g * f).sum() for g, f in zip(live, fixed, strict=True) if g is not None)
    if not isinstance(dot, Tensor) or not dot.requires_grad:
        return 0.0
    hessian_g = torch.autograd.grad(dot, weights, allow_unused=True)
    return float(
        sum(
            (-w.detach() * hg).sum()
            for w, hg in zip(weights, hessian_g, strict=True)
            if hg is not None
        )
    )


# -- costs ---------------------------------------------------------------------------------


@PROXIES.register("params")
def params(network: nn.Module, images: Tensor, labels: Tensor, num_classes: int) -> float:
    """Trainable parameters (`nasflow.measure.count_params`)."""
    return float(count_params(network))


@PROXIES.register("flops")
def flops(network: nn.Module, images: Tensor, labels: Tensor, num_classes: int) -> float:
    """FLOPs of one image's forward pass (`nasflow.measure.count_flops`), on a copy."""
    return float(count_flops(copy.deepcopy(network), tuple(images.shape[1:])))
