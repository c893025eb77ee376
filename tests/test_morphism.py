"""Network morphisms preserve the parent's function: before any training, in eval mode,
the child's outputs equal the parent's within 1e-5, for every operator on random parents
whose weights and batch-norm statistics are far from their initial values.

The operators work on the float32 weights; both networks are then run in float64, so that
what is compared is the morphism and not the order float32 sums a widened layer in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nasflow.morphism import OPERATORS, child_architecture, inherit, morph, random_morphism
from nasflow.search_spaces import ChainSpace, NB201Space
from nasflow.search_spaces.chain import ChainArchitecture, ChainNetwork

# Even kernels (2) too: torch warns that "same" padding copies the input for them.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

SHAPE = (3, 12, 12)
SPACE = ChainSpace(
    min_layers=1, max_layers=6, filters=[4, 6, 8], kernel_sizes=[1, 2, 3], dense_units=[10]
)


def trained_like(network: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics, as training would leave them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in network.state_dict().items():
            if value.is_floating_point():
                fresh = torch.randn(value.shape, generator=generator) * 0.5
                value.copy_(fresh.abs() + 0.5 if name.endswith("running_var") else fresh)
    return network.eval()


def parents(count: int) -> list[tuple[ChainArchitecture, ChainNetwork]]:
    rng = np.random.default_rng(0)
    found = []
    while len(found) < count:
        arch = SPACE.sample(rng)
        assert isinstance(arch, ChainArchitecture)
        network = SPACE.build(arch, SHAPE, 5)
        assert isinstance(network, ChainNetwork)
        found.append((arch, trained_like(network, len(found))))
    return found


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_every_operator_preserves_the_function_on_random_parents(operator: str) -> None:
    batch = torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(1))
    applied = 0
    for k, (arch, parent) in enumerate(parents(40)):
        rng = np.random.default_rng(k)
        for position in range(len(arch.layers)):
            child = OPERATORS[operator](SPACE, arch, parent, position, rng)
            if child is None:
                continue
            applied += 1
            assert child.arch != arch
            SPACE.validate(child.arch)
            difference = _difference(parent, child.network, batch)
            assert difference <= 1e-5, f"{child.change} of {arch.describe()}: {difference:.2g}"
    assert applied >= 20, f"{operator} applied to only {applied} (parent, layer) pairs"


def test_wider_covers_every_kind_of_reader() -> None:
    """Widening before a convolution with an identity or a projection shortcut, a pooled
    dense layer, a flattened one and the classifier; each preserves the function."""
    cases = {
        "identity reader": [("conv", 4, False), ("conv", 4, True)],
        "projection reader": [("conv", 4, False), ("conv", 6, True)],
        "widened block's identity skip": [("conv", 4, False), ("conv", 4, True)],
        "gap then dense": [("conv", 4, False), ("gap",), ("dense",)],
        "flatten to dense": [("conv", 4, False), ("max_pool",), ("dense",)],
        "flatten to classifier": [("conv", 4, True)],
    }
    batch = torch.randn(8, *SHAPE, generator=torch.Generator().manual_seed(2))
    for name, spec in cases.items():
        arch = SPACE.from_json({"layers": [_layer(s) for s in spec]})
        assert isinstance(arch, ChainArchitecture)
        parent = trained_like(SPACE.build(arch, SHAPE, 5), 3)
        assert isinstance(parent, ChainNetwork)
        position = 1 if name == "widened block's identity skip" else 0
        child = OPERATORS["wider"](SPACE, arch, parent, position, np.random.default_rng(0))
        assert child is not None, name
        difference = _difference(parent, child.network, batch)
        assert difference <= 1e-5, f"{name}: {difference:.2g}"


@pytest.mark.parametrize("channels", [3, 6])  # 6: a first block whose input is a width
def test_a_step_makes_the_same_architecture_with_or_without_a_network(channels: int) -> None:
    """What a strategy draws by architecture alone is what the worker's replay on the
    trained parent makes, and that preserves the function: every (operator, layer, seed)
    on random parents."""
    shape = (channels, *SHAPE[1:])
    batch = torch.randn(4, *shape, generator=torch.Generator().manual_seed(3))
    applied = 0
    # A skip on the first block, whose width may not become its input's (6 channels).
    first = SPACE.from_json({"layers": [_layer(("conv", 4, True))]})
    archs = [first] * 5 + [arch for arch, _ in parents(30)]
    for k, arch in enumerate(archs):
        assert isinstance(arch, ChainArchitecture)
        parent = trained_like(SPACE.build(arch, shape, 5), k)
        assert isinstance(parent, ChainNetwork)
        for name in OPERATORS:
            for position in range(len(arch.layers)):
                step = (name, position, k)
                made = morph(SPACE, arch, parent, step)
                planned = child_architecture(SPACE, arch, step, channels)
                assert planned == (None if made is None else made.arch), (step, arch.describe())
                if made is not None:
                    applied += 1
                    assert _difference(parent, made.network, batch) <= 1e-5, made.change
    assert applied >= 60


def test_a_random_morphism_exists_until_the_space_is_exhausted() -> None:
    rng = np.random.default_rng(0)
    arch = SPACE.from_json({"layers": [_layer(("conv", 4, False))]})
    assert isinstance(arch, ChainArchitecture)
    network = trained_like(SPACE.build(arch, SHAPE, 5), 0)
    assert isinstance(network, ChainNetwork)
    first, batch = network, torch.randn(4, *SHAPE)
    for _ in range(8):  # a chain of morphisms keeps the first parent's function
        child = random_morphism(SPACE, arch, network, rng)
        if child is None:
            break
        arch, network = child.arch, child.network
        assert _difference(first, network, batch) <= 1e-5, child.change
    assert len(arch.layers) > 1


def test_inherit_copies_what_matches_by_name_and_shape() -> None:
    space = NB201Space(channels=4, cells_per_stage=1)
    rng = np.random.default_rng(0)
    parent_arch = space.sample(rng)
    child_arch = space.mutate(parent_arch, rng)
    parent = space.build(parent_arch, SHAPE, 5)
    child = space.build(child_arch, SHAPE, 5)
    copied = inherit(parent, child)
    theirs = parent.state_dict()
    same = [
        name
        for name, value in child.state_dict().items()
        if name in theirs and theirs[name].shape == value.shape
    ]
    parameters = dict(child.named_parameters())
    assert copied == sum(parameters[n].numel() for n in same if n in parameters) > 0
    assert all(torch.equal(child.state_dict()[n], theirs[n]) for n in same)


def _difference(parent: nn.Module, child: nn.Module, batch: torch.Tensor) -> float:
    """The largest difference of the two networks' outputs, both run in float64 in eval
    mode (on copies: the originals stay float32)."""
    import copy

    with torch.no_grad():
        expected = copy.deepcopy(parent).double().eval()(batch.double())
        found = copy.deepcopy(child).double().eval()(batch.double())
    return float((found - expected).abs().max())


def _layer(spec: tuple) -> dict:
    if spec[0] == "conv":
        _, filters, skip = spec
        return {"op": "conv", "filters": filters, "kernel_h": 3, "kernel_w": 3, "skip": skip}
    if spec[0] == "dense":
        return {"op": "dense", "units": 10, "activation": "relu"}
    return {"op": spec[0]}


def test_widened_copies_train_apart() -> None:
    """A widened filter and its copy start equal, but what reads them takes unequal
    shares, so their gradients differ and training makes the layer truly wider."""
    checked = 0
    for arch, parent in parents(30):
        for position in range(len(arch.layers)):
            child = OPERATORS["wider"](SPACE, arch, parent, position, np.random.default_rng(1))
            if child is None:
                continue
            block = child.network.layer_module(position)
            weight = block.conv.weight.detach().flatten(1)  # type: ignore[union-attr]
            pairs = [
                (i, j)
                for i in range(len(weight))
                for j in range(i + 1, len(weight))
                if torch.equal(weight[i], weight[j])
            ]
            assert pairs, "a widened layer holds copies"
            network = child.network.train()
            network(torch.randn(8, *SHAPE)).square().sum().backward()
            grad = block.conv.weight.grad.flatten(1)  # type: ignore[union-attr]
            live = [(i, j) for i, j in pairs if bool(grad[i].any())]  # not a dead ReLU's
            assert all(not torch.allclose(grad[i], grad[j]) for i, j in live)
            checked += len(live)
    assert checked >= 10
