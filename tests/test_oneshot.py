"""Weight-sharing NAS building blocks: supernets, relaxations, the architect, derivation.

Every network here is tiny (a few channels, 8x8 inputs, batches of 4), so the whole file
runs in seconds on one CPU thread.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasflow.errors import NasflowError
from nasflow.oneshot import (
    DARTS_EDGES,
    RELAXATIONS,
    Architect,
    ArchParameters,
    DartsSupernet,
    Dirichlet,
    Gumbel,
    MixedOp,
    NB201Supernet,
    Softmax,
    cross_entropy_loss,
    derive,
    derive_darts,
    derive_nb201,
    edge_count,
    entropy,
    linear_tau,
    make_relaxation,
    parameter_free_count,
)
from nasflow.search_spaces import darts, nb201
from nasflow.search_spaces.darts import DARTS_V2, DartsGenotype
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Network

CLASSES = 3


def _batch(g: torch.Generator, shape: tuple[int, ...] = (1, 8, 8), dtype=torch.float32):
    images = torch.randn((4, *shape), generator=g, dtype=dtype)
    return images, torch.randint(CLASSES, (4,), generator=g)


def _nb201(dtype: torch.dtype = torch.float32, seed: int = 0) -> NB201Supernet:
    torch.manual_seed(seed)
    return NB201Supernet(1, CLASSES, channels=2, cells_per_stage=1).to(dtype)


def _darts(dtype: torch.dtype = torch.float32, seed: int = 0, **kwargs) -> DartsSupernet:
    torch.manual_seed(seed)
    in_channels = kwargs.pop("in_channels", 1)
    options = {"channels": 2, "layers": 3, "stem_multiplier": 1, **kwargs}
    return DartsSupernet(in_channels, CLASSES, **options).to(dtype)


def _flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([g.flatten() for g in grads.values()])


def _snapshot(network: nn.Module) -> dict[str, Tensor]:
    return {name: t.detach().clone() for name, t in network.state_dict().items()}


def _assert_unchanged(network: nn.Module, before: dict[str, Tensor]) -> None:
    after = network.state_dict()
    assert set(after) == set(before)
    for name, value in before.items():
        assert torch.equal(after[name], value), f"{name} changed"


# -- supernets ---------------------------------------------------------------------------


def test_edge_counts() -> None:
    assert edge_count("nb201") == 6
    assert edge_count("darts") == 14 == len(DARTS_EDGES)
    with pytest.raises(NasflowError, match="unknown cell space 'nasnet'"):
        edge_count("nasnet")


def test_nb201_supernet_forward_backward() -> None:
    g = torch.Generator().manual_seed(0)
    net = _nb201()
    alpha = ArchParameters.for_network(net, g)
    assert net.arch_shapes() == {"cell": (6, 5)} and alpha["cell"].shape == (6, 5)
    images, labels = _batch(g)
    logits = net(images, F.softmax(alpha["cell"], dim=-1))
    assert logits.shape == (4, CLASSES)
    F.cross_entropy(logits, labels).backward()
    assert alpha["cell"].grad is not None and alpha["cell"].grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())
    # The cells are NB201 cells with five candidates on each of six edges.
    assert len(net.cells[0].edges) == 6 and len(net.cells[0].edges[0].candidates) == 5
    # Their batch norms are non-affine (DARTS'), so an op cannot rescale its own output.
    norms = [m for m in net.cells[0].modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 12 and not any(m.affine for m in norms)


def test_nb201_supernet_checks_its_arguments() -> None:
    net = NB201Supernet(1, CLASSES, channels=2, cells_per_stage=1, ops=["nor_conv_3x3", "none"])
    assert net.ops == ("none", "nor_conv_3x3")  # the official order numbers the columns
    with pytest.raises(ValueError, match=r"weights must have shape \[6, 2\]"):
        net(torch.zeros(4, 1, 8, 8), torch.zeros(6, 5))
    with pytest.raises(NasflowError, match=r"'conv_7x7'.*choose from none"):
        NB201Supernet(1, CLASSES, ops=["conv_7x7"])
    with pytest.raises(NasflowError, match="channels must be a positive integer, got 0"):
        NB201Supernet(1, CLASSES, channels=0)


def test_nb201_supernet_with_one_hot_weights_is_the_discrete_network() -> None:
    arch = NB201Architecture(
        edges=("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "none")
    )
    torch.manual_seed(0)
    # With affine batch norm, as the discrete network has (a search supernet's is not).
    net = NB201Supernet(1, CLASSES, channels=2, cells_per_stage=1, affine=True)
    discrete = NB201Network(arch, 1, CLASSES, channels=2, cells_per_stage=1)
    # The discrete network's weights are the supernet's chosen candidates'.
    state = net.state_dict()
    mapped = {}
    for name in discrete.state_dict():
        parts = name.split(".")
        if parts[0] == "cells" and parts[2] == "edges":
            op = arch.edges[int(parts[3])]
            parts[4:4] = ["candidates", str(net.ops.index(op))]
        mapped[name] = state[".".join(parts)]
    discrete.load_state_dict(mapped)
    one_hot = torch.zeros(6, 5)
    one_hot[range(6), [nb201.OPS.index(op) for op in arch.edges]] = 1.0
    images, _ = _batch(torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(images, one_hot), discrete(images))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16)])
def test_darts_supernet_forward_backward(shape: tuple[int, int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    net = _darts(in_channels=shape[0])
    assert net.arch_shapes() == {"normal": (14, 8), "reduce": (14, 8)}
    alpha = ArchParameters.for_network(net, g)
    images, labels = _batch(g, shape)
    weights = alpha.weights(Softmax())
    logits = net(images, weights["normal"], weights["reduce"])
    assert logits.shape == (4, CLASSES)
    F.cross_entropy(logits, labels).backward()
    for name in ("normal", "reduce"):
        grad = alpha[name].grad
        assert grad is not None and grad.shape == (14, 8) and grad.abs().sum() > 0
    # Reduction cells at layers//3 and 2*layers//3; their input edges have stride 2.
    assert [cell.reduction for cell in net.cells] == [False, True, True]
    assert len(net.cells[1].edges) == 14


def test_darts_supernet_checks_its_arguments() -> None:
    with pytest.raises(NasflowError, match="layers must be an integer >= 3, got 2"):
        DartsSupernet(1, CLASSES, channels=2, layers=2)
    with pytest.raises(NasflowError, match=r"'conv'.*choose from none"):
        DartsSupernet(1, CLASSES, ops=["conv"])
    net = _darts(ops=["sep_conv_3x3", "skip_connect"])
    assert net.ops == ("skip_connect", "sep_conv_3x3")
    with pytest.raises(ValueError, match=r"weights_reduce must have shape \[14, 2\]"):
        net(torch.zeros(4, 1, 8, 8), torch.zeros(14, 2), torch.zeros(14, 3))


class _Counting(nn.Module):
    """Multiplies by `scale` and counts its calls."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.scale * x


def test_mixed_op_sums_weighted_candidates() -> None:
    mixed = MixedOp([_Counting(1.0), _Counting(2.0), _Counting(3.0)])
    x = torch.ones(2, 1, 2, 2)
    out = mixed(x, torch.tensor([0.5, 0.25, 0.25]))
    torch.testing.assert_close(out, (0.5 + 0.5 + 0.75) * x)
    assert [op.calls for op in mixed.candidates] == [1, 1, 1]


def test_mixed_op_with_one_hot_weights_computes_only_the_chosen_op() -> None:
    mixed = MixedOp([_Counting(1.0), _Counting(2.0), _Counting(3.0)])
    weights = torch.tensor([0.0, 1.0, 0.0], requires_grad=True)
    x = torch.ones(2, 1, 2, 2)
    out = mixed(x, weights)
    torch.testing.assert_close(out, 2.0 * x)
    assert [op.calls for op in mixed.candidates] == [0, 1, 0]
    out.sum().backward()
    assert weights.grad is not None
    assert weights.grad[1] == 2.0 * x.numel()  # d out / d w_1 = op_1(x)
    assert weights.grad[0] == weights.grad[2] == 0.0  # skipped ops get no gradient


def test_supernet_with_gumbel_weights_runs_one_op_per_edge() -> None:
    g = torch.Generator().manual_seed(0)
    net = _nb201()
    alpha = ArchParameters.for_network(net, g)
    calls = {"n": 0}

    def count(*_: object) -> None:
        calls["n"] += 1

    for cell in (net.cells[0], net.cells[2], net.cells[4]):
        for edge in cell.edges:
            for op in edge.candidates:
                op.register_forward_hook(count)
    images, labels = _batch(g)
    weights = alpha.weights(Gumbel(tau=1.0), g)
    F.cross_entropy(net(images, weights["cell"]), labels).backward()
    assert calls["n"] == 3 * 6  # one candidate per edge in each of the three cells
    assert alpha["cell"].grad is not None and alpha["cell"].grad.abs().sum() > 0


# -- relaxations ---------------------------------------------------------------------------


def test_arch_parameters_are_initialised_as_darts_and_reproducibly() -> None:
    shapes = {"normal": (14, 8), "reduce": (14, 8)}
    first = ArchParameters(shapes, torch.Generator().manual_seed(3))
    second = ArchParameters(shapes, torch.Generator().manual_seed(3))
    assert first.keys() == ["normal", "reduce"]
    assert [name for name, _ in first.named_parameters()] == ["alphas.normal", "alphas.reduce"]
    for name in shapes:
        assert torch.equal(first[name], second[name])
        assert 1e-4 < first[name].std().item() < 1e-2
    with pytest.raises(NasflowError, match="at least one named shape"):
        ArchParameters({})


def test_softmax_rows_sum_to_one() -> None:
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    weights = Softmax().weights(alpha)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    assert math.isclose(entropy(torch.full((6, 5), 0.2)).item(), math.log(5), rel_tol=1e-6)
    assert entropy(torch.eye(5)).item() == 0.0


def test_gumbel_is_one_hot_with_a_straight_through_gradient() -> None:
    alpha = torch.randn(14, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    relaxation = Gumbel(tau=1.0)
    weights = relaxation.weights(alpha, torch.Generator().manual_seed(1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(14))
    assert ((weights == 0).sum(-1) == 7).all()  # exactly one nonzero entry per row
    torch.testing.assert_close(weights.detach(), F.one_hot(weights.argmax(-1), 8).float())
    (weights * torch.arange(8.0)).sum().backward()
    assert alpha.grad is not None and (alpha.grad != 0).all()  # every alpha gets a gradient
    # Reproducible from the generator; another draw differs.
    again = relaxation.weights(alpha, torch.Generator().manual_seed(1))
    other = relaxation.weights(alpha, torch.Generator().manual_seed(2))
    assert torch.equal(weights, again) and not torch.equal(weights, other)


def test_gumbel_samples_ops_with_the_softmax_probabilities() -> None:
    alpha = torch.tensor([[2.0, 0.0, -1.0, 0.5]]).expand(2000, 4)
    weights = Gumbel(tau=0.5).weights(alpha, torch.Generator().manual_seed(0))
    frequencies = weights.mean(0)
    torch.testing.assert_close(frequencies, F.softmax(alpha[0], -1), atol=0.04, rtol=0)


def test_gumbel_tau_schedule_and_checks() -> None:
    assert linear_tau(0, 50) == 10.0 and math.isclose(linear_tau(49, 50), 0.1)
    with pytest.raises(NasflowError, match="tau must be a positive number, got 0"):
        Gumbel(tau=0)
    soft = Gumbel(tau=5.0, hard=False).weights(torch.zeros(3, 4), torch.Generator())
    assert (soft > 0).all()
    torch.testing.assert_close(soft.sum(-1), torch.ones(3))


def test_dirichlet_samples_rows_on_the_simplex_reproducibly() -> None:
    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    relaxation = Dirichlet()
    global_state = torch.random.get_rng_state()
    weights = relaxation.weights(alpha, torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), global_state)  # global stream untouched
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    again = relaxation.weights(alpha, torch.Generator().manual_seed(1))
    assert torch.equal(weights, again)
    (weights[:, 0]).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0  # reparameterised
    # Derivation uses the mean, concentration / its sum, with concentration = elu + 1.
    concentration = F.elu(alpha.detach()) + 1
    mean = relaxation.derivation_weights(alpha.detach())
    torch.testing.assert_close(mean, concentration / concentration.sum(-1, keepdim=True))
    softplus = Dirichlet("softplus").derivation_weights(alpha.detach())
    torch.testing.assert_close(softplus.sum(-1), torch.ones(6))


def test_dirichlet_kl_regulariser_is_the_kl_to_the_flat_dirichlet() -> None:
    from torch.distributions import Dirichlet as Dist
    from torch.distributions import kl_divergence

    alpha = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    assert Dirichlet().regularizer(alpha) is None  # DrNAS' default: l2 (Adam's decay) only
    term = Dirichlet(kl_weight=0.5).regularizer(alpha)
    assert term is not None
    concentration = F.elu(alpha) + 1
    expected = 0.5 * kl_divergence(Dist(concentration), Dist(torch.ones(6, 5))).sum()
    torch.testing.assert_close(term, expected)
    # Zero at the flat Dirichlet (elu(0) + 1 = 1), positive elsewhere.
    assert float(Dirichlet(kl_weight=1.0).regularizer(torch.zeros(2, 5))) == pytest.approx(0.0)
    assert float(term) > 0
    with pytest.raises(NasflowError, match="kl_weight must be a number >= 0, got -1"):
        Dirichlet(kl_weight=-1)


def test_architect_adds_the_regulariser_gradient() -> None:
    net = _nb201()
    g = torch.Generator().manual_seed(0)
    batch = _batch(g)

    def gradient(kl_weight: float) -> Tensor:
        alpha = ArchParameters.for_network(net, torch.Generator().manual_seed(1))
        relaxation = Dirichlet(kl_weight=kl_weight)
        architect = Architect(net, alpha, relaxation, generator=torch.Generator().manual_seed(2))
        return architect.gradient(batch, batch)["cell"]

    alpha = ArchParameters.for_network(net, torch.Generator().manual_seed(1))["cell"].detach()
    alpha.requires_grad_(True)
    term = Dirichlet(kl_weight=2.0).regularizer(alpha)
    assert term is not None
    (expected,) = torch.autograd.grad(term, alpha)
    torch.testing.assert_close(gradient(2.0) - gradient(0.0), expected)


@pytest.mark.parametrize("relaxation", [Softmax(), Gumbel(tau=1.0), Dirichlet()])
def test_pruned_ops_get_zero_weight_and_the_rest_are_renormalised(relaxation) -> None:
    alpha = ArchParameters({"cell": (6, 5)}, torch.Generator().manual_seed(0), scale=1.0)
    before = alpha.derivation_weights(relaxation)["cell"]
    alpha.prune(relaxation, keep=2)
    mask = alpha.mask("cell")
    assert mask.sum(-1).tolist() == [2] * 6
    # The two strongest ops of each edge are kept.
    assert torch.equal(mask, torch.zeros_like(mask).scatter_(-1, before.topk(2).indices, True))
    derived = alpha.derivation_weights(relaxation)["cell"]
    kept = before * mask
    torch.testing.assert_close(derived, kept / kept.sum(-1, keepdim=True))
    for seed in range(5):
        weights = alpha.weights(relaxation, torch.Generator().manual_seed(seed))["cell"]
        assert torch.all(weights[~mask] == 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    # Pruning again keeps a subset of what is left.
    alpha.prune(relaxation, keep=1)
    assert torch.all(alpha.mask("cell") <= mask) and alpha.mask("cell").sum() == 6


def test_relaxation_registry() -> None:
    assert set(RELAXATIONS) == {"softmax", "gumbel", "dirichlet"}
    assert isinstance(make_relaxation("gumbel", tau=2.0), Gumbel)
    with pytest.raises(NasflowError, match="unknown relaxation 'snas'; choose from softmax"):
        make_relaxation("snas")
    with pytest.raises(NasflowError, match="concentration 'exp' unknown"):
        Dirichlet("exp")


# -- derivation ----------------------------------------------------------------------------


def test_derive_nb201_takes_the_argmax_none_included() -> None:
    skip = torch.zeros(6, 5)
    skip[:, nb201.OPS.index("skip_connect")] = 1.0
    arch = derive_nb201(skip)
    assert arch == NB201Architecture(edges=("skip_connect",) * 6)
    assert arch.describe() == (
        "|skip_connect~0|+|skip_connect~0|skip_connect~1|"
        "+|skip_connect~0|skip_connect~1|skip_connect~2|"
    )
    assert parameter_free_count(arch) == 6
    weights = torch.tensor(
        [
            [0.5, 0.1, 0.1, 0.2, 0.1],  # none wins: NB201 derivation keeps it
            [0.1, 0.1, 0.1, 0.6, 0.1],
            [0.1, 0.1, 0.6, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.1, 0.6],
            [0.1, 0.6, 0.1, 0.1, 0.1],
            [0.2, 0.2, 0.2, 0.2, 0.2],  # a tie: the first op
        ]
    )
    arch = derive(_nb201(), {"cell": weights})
    assert arch.describe() == (
        "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|skip_connect~1|none~2|"
    )
    assert parameter_free_count(arch) == 4
    with pytest.raises(NasflowError, match=r"must have shape \[6, 5\]"):
        derive_nb201(torch.zeros(14, 5))


def test_derive_darts_keeps_the_top_two_edges_per_node_without_none() -> None:
    ops = darts.PRIMITIVES
    g = torch.Generator().manual_seed(0)
    expected: dict[str, list[tuple[str, int]]] = {}
    weights: dict[str, Tensor] = {}
    for cell in ("normal", "reduce"):
        # Small random weights, "none" the largest on every edge, and per node two chosen
        # edges with a clearly strongest op.
        w = 0.01 * torch.rand(14, len(ops), generator=g)
        w[:, ops.index("none")] = 1.0
        pairs = []
        first = 0
        for node in range(2, 6):
            sources = torch.randperm(node, generator=g)[:2].tolist()
            for rank, j in enumerate(sources):
                op = ops[1 + int(torch.randint(len(ops) - 1, (1,), generator=g))]
                w[first + j, ops.index(op)] = 0.5 - 0.1 * rank
                pairs.append((op, j))
            first += node
        expected[cell], weights[cell] = pairs, w
    genotype = derive(_darts(), weights)
    assert genotype == DartsGenotype(normal=expected["normal"], reduce=expected["reduce"])
    assert all(op != "none" for op, _ in (*genotype.normal, *genotype.reduce))
    assert genotype.normal_concat == genotype.reduce_concat == darts.CONCAT
    assert darts.DartsSpace().validate(genotype) is None  # a genotype of the DARTS space


def test_derive_darts_all_skip_and_parameter_free_count() -> None:
    skip = torch.zeros(14, 8)
    skip[:, darts.PRIMITIVES.index("skip_connect")] = 1.0
    genotype = derive_darts(skip, skip)
    # Ties between edges go to the lower inputs, as in DARTS' code.
    assert genotype.normal == (("skip_connect", 0), ("skip_connect", 1)) * 4
    assert parameter_free_count(genotype) == 16
    assert parameter_free_count(DARTS_V2) == 2 + 8
    with pytest.raises(NasflowError, match="needs an op besides 'none'"):
        derive_darts(torch.zeros(14, 1), torch.zeros(14, 1), ops=["none"])


# -- the architect -------------------------------------------------------------------------


def test_first_order_step_moves_alpha_and_leaves_the_network_alone() -> None:
    g = torch.Generator().manual_seed(0)
    net = _nb201()
    alpha = ArchParameters.for_network(net, g)
    architect = Architect(net, alpha, Softmax(), order=1)
    before, start = _snapshot(net), alpha["cell"].detach().clone()
    loss = architect.step(_batch(g), _batch(g))
    assert loss.ndim == 0 and not loss.requires_grad
    assert not torch.equal(alpha["cell"], start)
    assert (alpha["cell"] - start).abs().max() <= 3e-4 * 1.01  # one Adam step of lr 3e-4
    _assert_unchanged(net, before)
    assert all(p.grad is None for p in net.parameters())


def test_first_order_gradient_is_the_validation_loss_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    net = _darts()
    alpha = ArchParameters.for_network(net, g)
    train, val = _batch(g), _batch(g)
    grads = Architect(net, alpha, Softmax()).gradient(train, val)
    loss = cross_entropy_loss(net, alpha.weights(Softmax()), val)
    expected = torch.autograd.grad(loss, [alpha["normal"], alpha["reduce"]])
    torch.testing.assert_close(grads["normal"], expected[0])
    torch.testing.assert_close(grads["reduce"], expected[1])


def _with_momentum(net: nn.Module, alpha: ArchParameters, batch, nesterov: bool = False):
    """An SGD with DARTS' settings and a momentum buffer from one step."""
    optimizer = torch.optim.SGD(
        net.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4, nesterov=nesterov
    )
    cross_entropy_loss(net, alpha.weights(Softmax()), batch).backward()
    optimizer.step()
    optimizer.zero_grad()
    return optimizer


@pytest.mark.parametrize("optimizer", ["plain", "sgd", "nesterov"])
@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_second_order_finite_differences_agree_with_double_backward(
    space: str, optimizer: str
) -> None:
    g = torch.Generator().manual_seed(0)
    # float64, and a finite-difference step far below DARTS' 0.01: in networks this small
    # every weight moves a lot, and a step that pushes ReLU inputs (or, in DARTS, max-pool
    # maxima) across a kink makes the difference quotient jump.
    net, radius = (
        (_nb201(torch.float64), 1e-6) if space == "nb201" else (_darts(torch.float64), 1e-7)
    )
    alpha = ArchParameters.for_network(net, g, dtype=torch.float64)
    train, val = _batch(g, dtype=torch.float64), _batch(g, dtype=torch.float64)
    w_optimizer = None
    if optimizer != "plain":
        w_optimizer = _with_momentum(net, alpha, train, nesterov=optimizer == "nesterov")
    architect = Architect(net, alpha, Softmax(), order=2, fd_radius=radius)
    finite = _flat(architect.gradient(train, val, w_lr=0.1, w_optimizer=w_optimizer))
    exact = _flat(architect.exact_gradient(train, val, w_lr=0.1, w_optimizer=w_optimizer))
    first = _flat(Architect(net, alpha, Softmax(), order=1).gradient(train, val))
    assert F.cosine_similarity(finite, exact, dim=0) > 0.99
    assert abs(finite.norm() / exact.norm() - 1) < 0.05
    # Not vacuous: the second-order term is large here, the finite differences find it.
    assert (finite - exact).norm() < 0.01 * (first - exact).norm()


@pytest.mark.parametrize("relaxation", [Gumbel(tau=1.0), Dirichlet()], ids=repr)
def test_second_order_with_a_stochastic_relaxation_replays_one_sample(relaxation) -> None:
    g = torch.Generator().manual_seed(0)
    net = _nb201(torch.float64)
    alpha = ArchParameters.for_network(net, g, dtype=torch.float64)
    train, val = _batch(g, dtype=torch.float64), _batch(g, dtype=torch.float64)
    with pytest.raises(NasflowError, match=f"'{relaxation.name}' relaxation needs a generator"):
        Architect(net, alpha, relaxation, order=2)
    sampler = torch.Generator().manual_seed(5)
    architect = Architect(net, alpha, relaxation, order=2, generator=sampler, fd_radius=1e-6)
    state = sampler.get_state()
    finite = _flat(architect.gradient(train, val, w_lr=0.1))
    sampler.set_state(state)
    exact = _flat(architect.exact_gradient(train, val, w_lr=0.1))
    assert F.cosine_similarity(finite, exact, dim=0) > 0.99
    assert abs(finite.norm() / exact.norm() - 1) < 0.05


def test_second_order_step_restores_weights_and_buffers_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    net = _darts()
    alpha = ArchParameters.for_network(net, g)
    train, val = _batch(g), _batch(g)
    w_optimizer = _with_momentum(net, alpha, train)
    buffers = {id(p): s["momentum_buffer"].clone() for p, s in w_optimizer.state.items()}
    before = _snapshot(net)
    assert any("running_mean" in name for name in before)
    start = {name: a.detach().clone() for name, a in alpha.items()}
    architect = Architect(net, alpha, Softmax(), order=2)
    architect.step(train, val, w_lr=0.1, w_optimizer=w_optimizer)
    _assert_unchanged(net, before)
    assert all(p.grad is None for p in net.parameters())
    for p, s in w_optimizer.state.items():
        assert torch.equal(s["momentum_buffer"], buffers[id(p)])
    assert all(not torch.equal(alpha[name], start[name]) for name in start)


def test_architect_checks_its_settings() -> None:
    g = torch.Generator().manual_seed(0)
    net = _nb201()
    alpha = ArchParameters.for_network(net, g)
    with pytest.raises(NasflowError, match="order must be 1 or 2, got 3"):
        Architect(net, alpha, Softmax(), order=3)
    architect = Architect(net, alpha, Softmax(), order=2)
    batch = _batch(g)
    adam = torch.optim.Adam(net.parameters())
    with pytest.raises(NasflowError, match=r"w_optimizer is Adam: pass a torch\.optim\.SGD"):
        architect.step(batch, batch, w_lr=0.1, w_optimizer=adam)
    with pytest.raises(NasflowError, match="needs w_lr >= 0"):
        architect.step(batch, batch)
    # First order does not unroll, so any optimiser (or none) will do.
    Architect(net, alpha, Softmax(), order=1).step(batch, batch, w_optimizer=adam)


def test_a_few_darts_search_steps_derive_an_architecture() -> None:
    g = torch.Generator().manual_seed(0)
    net = _nb201()
    alpha = ArchParameters.for_network(net, g)
    relaxation = Softmax()
    architect = Architect(net, alpha, relaxation, order=2)
    w_optimizer = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    for _ in range(2):
        train, val = _batch(g), _batch(g)
        architect.step(train, val, w_lr=0.025, w_optimizer=w_optimizer)
        w_optimizer.zero_grad()
        cross_entropy_loss(net, alpha.weights(relaxation), train).backward()
        w_optimizer.step()
    arch = derive(net, alpha.derivation_weights(relaxation))
    assert isinstance(arch, NB201Architecture)
    assert 0 <= parameter_free_count(arch) <= 6
