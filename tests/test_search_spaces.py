"""The chain space: its grammar, its JSON, its networks."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError
from nasflow.search_spaces import ChainArchitecture, ChainSpace, Layer

SPACES = {
    "default": ChainSpace(),
    "small": ChainSpace(min_layers=2, max_layers=3, kernel_sizes=[3]),
    "no_dense": ChainSpace(ops=["conv", "max_pool", "gap"], max_layers=5, max_pooling=3),
}


def conv(filters: int = 32, kh: int = 3, kw: int = 3, skip: bool = False) -> Layer:
    return Layer("conv", filters=filters, kernel_h=kh, kernel_w=kw, skip=skip)


def samples(space: ChainSpace, n: int = 50, seed: int = 0) -> list[ChainArchitecture]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("name", SPACES)
def test_samples_obey_the_constraints(name: str) -> None:
    space = SPACES[name]
    for arch in samples(space, 200):
        ops = [layer.op for layer in arch.layers]
        assert space.min_layers <= len(ops) <= space.max_layers
        assert ops[0] == "conv", "no pooling first, no dense before the first convolution"
        flat_at = next((i for i, op in enumerate(ops) if op in ("gap", "dense")), len(ops))
        assert all(op == "dense" for op in ops[flat_at + 1 :]), "only dense after flattening"
        pools = [i for i, op in enumerate(ops) if op.endswith("_pool")]
        assert len(pools) <= space.max_pooling
        assert all(b - a > 1 for a, b in itertools.pairwise(pools)), "no two poolings in a row"
        space.validate(arch)


@pytest.mark.parametrize("name", SPACES)
def test_every_sample_builds_and_trains_a_step(name: str) -> None:
    space = SPACES[name]
    for arch in samples(space, 10):
        for shape in [(1, 8, 8), (3, 5, 7)]:
            network = space.build(arch, shape, num_classes=4)
            x = torch.randn(2, *shape)
            logits = network(x)
            assert logits.shape == (2, 4)
            logits.sum().backward()
            assert all(p.grad is not None for p in network.parameters())


@pytest.mark.parametrize("name", SPACES)
def test_json_round_trip_and_decisions_round_trip(name: str) -> None:
    space = SPACES[name]
    for arch in samples(space, 50, seed=1):
        text = json.dumps(arch.to_json())
        assert space.from_json(json.loads(text)) == arch
        assert space.decode(space.encode(arch)) == arch


def test_size_matches_enumeration_and_enumeration_is_distinct() -> None:
    space = SPACES["small"]
    archs = list(space.enumerate())
    assert len(archs) == space.size() == 216
    assert len({a.id for a in archs}) == len(archs)
    assert list(space.enumerate()) == archs, "enumeration order is deterministic"


def test_size_counts_kernel_height_and_width_separately() -> None:
    one = ChainSpace(min_layers=1, max_layers=1, ops=["conv"], filters=[8], kernel_sizes=[3])
    two = ChainSpace(min_layers=1, max_layers=1, ops=["conv"], filters=[8], kernel_sizes=[1, 3])
    assert one.size() == 2  # skip or not
    assert two.size() == 2 * 2 * 2
    assert {a.layers[0].kernel_h for a in two.enumerate()} == {1, 3}


def test_canonical_json_and_hash_are_stable() -> None:
    arch = ChainArchitecture((conv(64, skip=True), Layer("max_pool"), conv(32)))
    assert arch.canonical_json() == (
        '{"layers":[{"filters":64,"kernel_h":3,"kernel_w":3,"op":"conv","skip":true},'
        '{"op":"max_pool"},{"filters":32,"kernel_h":3,"kernel_w":3,"op":"conv","skip":false}]}'
    )
    # A fixed value: the hash must not change between runs, processes or versions.
    assert arch.id == "f372f7a06ace1b70"
    assert arch.describe() == "conv64(3x3)+skip > max_pool > conv32(3x3)"


@pytest.mark.parametrize(
    ("layers", "reason"),
    [
        ([{"op": "max_pool"}, {"op": "conv"}], "expected keys"),
        ([{"op": "max_pool"}], "depth=1 is not allowed"),
        ([{"op": "dense", "units": 128, "activation": "relu"}, {"op": "gap"}], "layer0.op=dense"),
        ([{"op": "conv", "filters": 48, "kernel_h": 3, "kernel_w": 3, "skip": False}], "48"),
        ([{"op": "conv", "filters": "64", "kernel_h": 3, "kernel_w": 3, "skip": False}], "int"),
        ([{"op": "conv", "filters": True, "kernel_h": 3, "kernel_w": 3, "skip": False}], "int"),
        ([{"op": "bogus"}], "'op' must be one of"),
    ],
)
def test_invalid_architectures_are_rejected_with_the_reason(
    layers: list[dict], reason: str
) -> None:
    space = ChainSpace(min_layers=2, max_layers=3, kernel_sizes=[3])
    full = [*layers, {"op": "max_pool"}] if len(layers) == 1 and "filters" in layers[0] else layers
    with pytest.raises(NasflowError, match=reason):
        space.from_json({"layers": full})


def test_constraints_forbid_pooling_twice_and_layers_after_flattening() -> None:
    space = ChainSpace(min_layers=1, max_layers=4, kernel_sizes=[3])
    two_pools = ChainArchitecture((conv(), Layer("max_pool"), Layer("avg_pool")))
    with pytest.raises(NasflowError, match=r"layer2\.op=avg_pool is not allowed"):
        space.validate(two_pools)
    conv_after_gap = ChainArchitecture((conv(), Layer("gap"), conv()))
    with pytest.raises(NasflowError, match=r"layer2\.op=conv is not allowed"):
        space.validate(conv_after_gap)


def test_bad_space_settings_are_refused() -> None:
    with pytest.raises(NasflowError, match="bogus"):
        ChainSpace(ops=["conv", "bogus"])
    with pytest.raises(NasflowError, match="min_layers"):
        ChainSpace(min_layers=3, max_layers=2)
    with pytest.raises(NasflowError, match="conv"):
        ChainSpace(ops=["max_pool", "dense"])


def test_network_shapes_follow_the_architecture() -> None:
    space = ChainSpace(min_layers=1, max_layers=4, kernel_sizes=[3, 5])
    arch = ChainArchitecture(
        (conv(16, 3, 5), Layer("max_pool"), Layer("dense", units=20, activation="relu"))
    )
    network = space.build(arch, (1, 8, 8), num_classes=10)
    conv_layer = network.layers[0].conv
    assert conv_layer.kernel_size == (3, 5)
    linear = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.in_features for m in linear] == [16 * 4 * 4, 20]
