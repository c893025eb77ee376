"""What every registered search space must do, tested on each one's tiny() instance.

A new space registers itself by defining `name`, and is tested here for free.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nasflow.search_spaces  # noqa: F401  (imports, and so registers, every space)
from nasflow import diagram
from nasflow.errors import NasflowError
from nasflow.search_spaces.base import Architecture, SearchSpace

SPACES = sorted(SearchSpace.registry)


@pytest.fixture(params=SPACES)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return SearchSpace.registry[request.param].tiny()


def samples(space: SearchSpace, n: int, seed: int = 0) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_every_space_is_registered() -> None:
    assert {"chain", "nb201", "darts", "nasnet"} <= set(SPACES)


def test_sample_validate_build_forward_backward(space: SearchSpace) -> None:
    for arch in samples(space, 4):
        space.validate(arch)
        for shape in [(1, 8, 8), (3, 12, 12)]:
            network = space.build(arch, shape, num_classes=3)
            logits = network(torch.randn(2, *shape))
            assert logits.shape == (2, 3)
            logits.sum().backward()
            grads = [p.grad for p in network.parameters() if p.requires_grad]
            assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_json_round_trip_and_stable_id(space: SearchSpace) -> None:
    for arch in samples(space, 20):
        text = json.dumps(arch.to_json())
        again = space.from_json(json.loads(text))
        assert again == arch
        assert again.id == arch.id
        assert again.canonical_json() == arch.canonical_json()


def test_parse_reads_json_text(space: SearchSpace) -> None:
    arch = samples(space, 1)[0]
    assert space.parse(json.dumps(arch.to_json())) == arch
    with pytest.raises(NasflowError):
        space.parse("{not json")


def test_decision_sequence_round_trip(space: SearchSpace) -> None:
    for arch in samples(space, 20, seed=1):
        decisions = space.encode(arch)
        assert space.decode(decisions) == arch
        # Each decision is an index into the options offered at that point.
        for i, index in enumerate(decisions):
            assert 0 <= index < len(space.options(decisions[:i]))
        assert space.options(decisions) == ()


def test_mutations_are_valid_and_differ(space: SearchSpace) -> None:
    rng = np.random.default_rng(2)
    for parent in samples(space, 10, seed=2):
        for _ in range(5):
            child = space.mutate(parent, rng)
            space.validate(child)
            assert child != parent
            assert child.id != parent.id


def test_mutation_is_reproducible(space: SearchSpace) -> None:
    parent = samples(space, 1, seed=3)[0]
    first = [space.mutate(parent, np.random.default_rng(7)) for _ in range(3)]
    assert len(set(first)) == 1


def test_neighbours_are_distinct_valid_and_one_decision_away(space: SearchSpace) -> None:
    for arch in samples(space, 3, seed=4):
        found = space.neighbours(arch)
        assert found, "every architecture has neighbours"
        assert len({n.id for n in found}) == len(found)
        assert arch not in found
        for neighbour in found:
            space.validate(neighbour)
        assert found == space.neighbours(arch), "the order is fixed"


def test_features_have_a_fixed_length(space: SearchSpace) -> None:
    length = len(space.feature_names())
    vectors = [space.features(arch) for arch in samples(space, 20, seed=5)]
    assert all(v.shape == (length,) and v.dtype == np.float32 for v in vectors)
    assert all(set(np.unique(v)) <= {0.0, 1.0} for v in vectors)
    # Different architectures get different vectors.
    archs = samples(space, 20, seed=5)
    distinct = {a.id for a in archs}
    assert len({v.tobytes() for v in vectors}) == len(distinct)


def test_size_counts_what_enumerate_yields_when_small(space: SearchSpace) -> None:
    size = space.size()
    assert size > 0
    if size <= 20_000:
        ids = [arch.id for arch in space.enumerate()]
        assert len(ids) == len(set(ids)) == size


def test_diagram_renders(space: SearchSpace) -> None:
    arch = samples(space, 1, seed=6)[0]
    graphs = space.graphs(arch)
    assert graphs
    svg = diagram.render(graphs, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert diagram.render(graphs, "png").startswith(b"\x89PNG")
