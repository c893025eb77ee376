"""Zero-cost proxies: finite, side-effect free and deterministic on every space; known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nasflow.search_spaces  # noqa: F401  (imports, and so registers, every space)
from nasflow.measure import count_flops, count_params
from nasflow.proxies import NASWOT_SINGULAR, PROXIES, grad_norm, naswot, snip, synflow
from nasflow.search_spaces.base import SearchSpace
from nasflow.search_spaces.nb201 import NB201Space

SHAPE = (3, 8, 8)
CLASSES = 3


def batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, *SHAPE, generator=generator)
    return images, torch.arange(n) % CLASSES


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, CLASSES),
    )


def space_networks() -> list[tuple[str, nn.Module]]:
    torch.manual_seed(0)
    networks = []
    for name in sorted(SearchSpace.registry):
        space = SearchSpace.registry[name].tiny()
        rng = np.random.default_rng(1)
        for i in range(2):
            networks.append((f"{name}-{i}", space.build(space.sample(rng), SHAPE, CLASSES)))
    return [*networks, ("small_cnn", small_cnn())]


NETWORKS = space_networks()


@pytest.mark.parametrize("proxy", sorted(PROXIES))
@pytest.mark.parametrize("training", [True, False])
def test_finite_side_effect_free_and_deterministic(proxy: str, training: bool) -> None:
    images, labels = batch()
    for name, network in NETWORKS:
        network.train(training)
        before = {k: v.clone() for k, v in network.state_dict().items()}
        first = PROXIES[proxy](network, images, labels, CLASSES)
        second = PROXIES[proxy](network, images, labels, CLASSES)
        assert isinstance(first, float) and math.isfinite(first), (name, first)
        assert first == second, name
        assert network.training is training
        assert all(m.training is training for m in network.modules())
        after = network.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name  # incl. BN stats
        assert all(p.grad is None for p in network.parameters()), name


def test_params_and_flops_match_measure() -> None:
    images, labels = batch()
    for _, network in NETWORKS:
        assert PROXIES["params"](network, images, labels, CLASSES) == count_params(network)
        assert PROXIES["flops"](network, images, labels, CLASSES) == count_flops(network, SHAPE)


def test_synflow_of_zero_weights_is_zero() -> None:
    network = NB201Space.tiny().build(NB201Space.tiny().sample(np.random.default_rng(0)), SHAPE, 3)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
    images, labels = batch()
    assert synflow(network, images, labels, CLASSES) == 0.0


def test_synflow_ignores_data_and_weight_signs() -> None:
    network = small_cnn()
    images, labels = batch()
    score = synflow(network, images, labels, CLASSES)
    assert synflow(network, batch(seed=5)[0], labels, CLASSES) == score
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.neg_()
    assert synflow(network, images, labels, CLASSES) == pytest.approx(score)


class ConstantCode(nn.Module):
    """Applies ReLU to a learned constant: every image gets the same code."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Parameter(torch.randn(1, 32))
        self.relu = nn.ReLU()
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.features.expand(x.shape[0], -1)))


def test_naswot_prefers_distinct_codes() -> None:
    images, labels = batch()
    assert naswot(ConstantCode(), images, labels, CLASSES) == NASWOT_SINGULAR
    assert naswot(small_cnn(), images, labels, CLASSES) > 0


def test_naswot_sees_functional_relu() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv
            self.head = nn.Linear(8, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    modular = nn.Sequential(conv, nn.ReLU())
    images, labels = batch()
    assert naswot(Functional(), images, labels, CLASSES) == naswot(modular, images, labels, CLASSES)


def test_naswot_is_the_log_determinant_of_the_hamming_kernel() -> None:
    network = nn.Sequential(nn.Flatten(), nn.ReLU())
    images = torch.tensor([[1.0, -1, 1], [-1.0, 1, 1], [1.0, 1, -1]]).reshape(3, 3, 1, 1)
    codes = (images.flatten(1) > 0).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T  # [[3,1,1],[1,3,1],[1,1,3]]
    expected = math.log(torch.linalg.det(kernel).item())
    assert naswot(network, images, torch.zeros(3, dtype=torch.long), 1) == pytest.approx(expected)


@pytest.mark.parametrize("proxy, power", [(snip, 1), (grad_norm, 1)])
def test_gradient_proxies_scale_with_the_loss(proxy: object, power: int) -> None:
    network = small_cnn()
    images, labels = batch()
    plain = proxy(network, images, labels, CLASSES)  # type: ignore[operator]
    scaled = proxy(  # type: ignore[operator]
        network, images, labels, CLASSES, loss_fn=lambda o, t: 3.0 * F.cross_entropy(o, t)
    )
    assert scaled == pytest.approx(3.0**power * plain, rel=1e-5)


def test_fisher_scales_with_the_square_of_the_loss() -> None:
    network = small_cnn()
    images, labels = batch()
    fisher = PROXIES["fisher"]
    plain = fisher(network, images, labels, CLASSES)
    scaled = fisher(  # type: ignore[call-arg]
        network, images, labels, CLASSES, loss_fn=lambda o, t: 3.0 * F.cross_entropy(o, t)
    )
    assert plain > 0
    assert scaled == pytest.approx(9.0 * plain, rel=1e-5)
