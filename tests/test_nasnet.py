"""The NASNet space: NASNet-A as published, the grammar's canonical form, JSON, networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError
from nasflow.search_spaces.nasnet import (
    NASNET_A,
    PAPER_OPS,
    Block,
    NASNetArchitecture,
    NASNetSpace,
    unused_states,
)

TINY = NASNetSpace.tiny()


def samples(space: NASNetSpace, n: int, seed: int = 0) -> list[NASNetArchitecture]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]  # type: ignore[misc]


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- NASNet-A -------------------------------------------------------------------------------


def test_nasnet_a_at_6_at_768_has_the_published_parameter_count() -> None:
    """NASNet-A "6 @ 768" on CIFAR-10, without the auxiliary head: 3.3 M parameters."""
    space = NASNetSpace(cells_per_stage=6, filters=32)
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        network = space.build(NASNET_A, (3, 32, 32), num_classes=10)
    assert network.classifier.in_features == 768 == 24 * 32, "P = 24 F penultimate filters"
    assert len(network.cells) == 3 * 6 + 2
    count = parameters(network)
    assert count == 3_328_234, "the count measured when this test was written"
    assert abs(count - 3.3e6) / 3.3e6 < 0.05


def test_nasnet_a_concatenates_used_states_as_the_reference_does() -> None:
    # Every block uses only the cell inputs, yet h_{i-2} (state 1) is in the output too;
    # in the reduction cell, block 1 (state 3) is used by block 3 and still concatenated.
    assert unused_states(NASNET_A.normal) == (2, 3, 4, 5, 6)
    assert NASNET_A.normal_concat == (1, 2, 3, 4, 5, 6)
    assert unused_states(NASNET_A.reduce) == (4, 5, 6)
    assert NASNET_A.reduce_concat == (3, 4, 5, 6)
    assert all(block.combine == "add" for block in NASNET_A.normal + NASNET_A.reduce)


def test_nasnet_a_round_trips_through_json_and_parses_by_name() -> None:
    space = NASNetSpace()
    text = json.dumps(NASNET_A.to_json())
    assert space.from_json(json.loads(text)) == NASNET_A
    assert space.parse(text).id == NASNET_A.id
    assert space.parse("NASNET_A") is NASNET_A
    assert space.parse("NASNet-A") is NASNET_A
    space.validate(NASNET_A)
    # The concat is not a decision: the decisions give the cells with the paper's rule.
    twin = space.decode(space.encode(NASNET_A))
    assert twin.normal == NASNET_A.normal and twin.normal_concat == (2, 3, 4, 5, 6)


def test_leaving_out_the_concat_means_the_unused_states() -> None:
    data = NASNET_A.to_json()
    del data["normal_concat"], data["reduce_concat"]
    arch = NASNetSpace().from_json(data)
    assert arch.normal_concat == unused_states(NASNET_A.normal)
    assert arch == NASNetArchitecture(normal=NASNET_A.normal, reduce=NASNET_A.reduce)


# -- canonical form -------------------------------------------------------------------------


def test_swapped_pairs_give_the_same_block_and_id() -> None:
    one = Block((1, 0), ("sep_conv_3x3", "avg_pool_3x3"))
    other = Block((0, 1), ("avg_pool_3x3", "sep_conv_3x3"))
    assert one == other and one.inputs == (0, 1)
    # Same input: ordered by the op's index in the paper's list.
    assert Block((0, 0), ("sep_conv_3x3", "identity")).ops == ("identity", "sep_conv_3x3")
    swapped = NASNetArchitecture(
        normal=tuple(Block(b.inputs[::-1], b.ops[::-1], b.combine) for b in NASNET_A.normal),
        normal_concat=NASNET_A.normal_concat,
        reduce=NASNET_A.reduce,
        reduce_concat=NASNET_A.reduce_concat,
    )
    assert swapped == NASNET_A and swapped.id == NASNET_A.id


def test_the_grammar_only_offers_the_canonical_order() -> None:
    space = NASNetSpace(blocks=2)
    # First pair (1, sep_conv_5x5): the second input is 1 or more, its op not below sep5.
    labels = ["1", "sep_conv_5x5"]
    assert space.next_decision(labels).choices == ("1",)  # type: ignore[union-attr]
    assert space.next_decision([*labels, "1"]).choices == ("sep_conv_5x5", "sep_conv_7x7")  # type: ignore[union-attr]
    assert space.next_decision(["0", "sep_conv_5x5", "1"]).choices == space.ops  # type: ignore[union-attr]


# -- validation -----------------------------------------------------------------------------


def _edited(cell: str, block: int, key: str, value: object) -> dict:
    data = NASNET_A.to_json()
    data[cell][block][key] = value
    return data


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_edited("normal", 0, "ops", ["sep_conv_3x3", "avg_pool_9x9"]), "avg_pool_9x9"),
        (_edited("reduce", 2, "inputs", [0, 4]), "input 4"),
        (_edited("normal", 1, "inputs", [0, True]), "input True"),
        (_edited("normal", 3, "combine", "multiply"), "multiply"),
        ({**NASNET_A.to_json(), "normal": NASNET_A.to_json()["normal"][:4]}, "got 4 blocks"),
        ({**NASNET_A.to_json(), "reduce_concat": [4, 5]}, "[6]"),
        ({**NASNET_A.to_json(), "normal_concat": [2, 3, 4, 5, 6, 9]}, "[2, 3, 4, 5, 6, 9]"),
        ({"normal": []}, "got ['normal']"),
    ],
)
def test_invalid_json_names_the_bad_value(data: dict, named: str) -> None:
    with pytest.raises(NasflowError, match=named.replace("[", r"\[").replace("]", r"\]")):
        NASNetSpace().from_json(data)


def test_an_op_or_combination_outside_the_configured_space_is_rejected() -> None:
    space = NASNetSpace(ops=["identity", "sep_conv_3x3"], combinations=["add"])
    with pytest.raises(NasflowError, match="sep_conv_5x5"):
        space.from_json(NASNET_A.to_json())
    with pytest.raises(NasflowError, match="expected 3 blocks, got 5"):
        NASNetSpace(blocks=3).validate(NASNET_A)
    concat = samples(NASNetSpace(combinations=["concat"]), 1)[0]
    with pytest.raises(NasflowError, match="combine=concat"):
        NASNetSpace(combinations=["add"]).validate(concat)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"ops": ["identity", "avg_pool_9x9"]}, "avg_pool_9x9"),
        ({"combinations": ["mean"]}, "mean"),
        ({"ops": []}, "empty"),
        ({"filters": 0}, "got 0"),
        ({"blocks": 0}, "got 0"),
    ],
)
def test_bad_settings_are_named(kwargs: dict, named: str) -> None:
    with pytest.raises(NasflowError, match=named):
        NASNetSpace(**kwargs)


# -- the decisions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # One block: 2 inputs x 2 ops = 4 pairs, 10 unordered; x 2 combinations; squared.
        ({"blocks": 1, "ops": ["identity", "max_pool_3x3"]}, 20**2),
        # Two blocks, one op: 3 then 6 unordered pairs per cell; squared.
        ({"blocks": 2, "ops": ["conv_1x1"], "combinations": ["add"]}, 18**2),
    ],
)
def test_size_matches_brute_force_enumeration(kwargs: dict, expected: int) -> None:
    space = NASNetSpace(**kwargs)
    archs = list(space.enumerate())
    assert space.size() == len(archs) == expected
    assert len({arch.id for arch in archs}) == len(archs), "one form, one hash per cell"


@pytest.mark.parametrize(("ops", "count"), [(None, 15), (PAPER_OPS, 13)])
def test_size_of_the_default_space(ops: tuple[str, ...] | None, count: int) -> None:
    # A block: an unordered pair (with repetition) of (input, op) among m = states x ops.
    per_block = [(m * (m + 1) // 2) * 2 for m in (s * count for s in (2, 3, 4, 5, 6))]
    assert NASNetSpace(ops=ops).size() == int(np.prod(per_block, dtype=object)) ** 2


def test_samples_validate_and_round_trip() -> None:
    for arch in samples(TINY, 30, seed=1):
        TINY.validate(arch)
        assert TINY.from_json(json.loads(json.dumps(arch.to_json()))) == arch
        assert TINY.decode(TINY.encode(arch)) == arch
        assert len(TINY.features(arch)) == len(TINY.feature_names())


def test_mutation_differs_from_its_parent() -> None:
    rng = np.random.default_rng(2)
    for parent in [NASNET_A, *samples(NASNetSpace(), 10, seed=3)]:
        child = NASNetSpace().mutate(parent, rng)
        assert child != parent
        NASNetSpace().validate(child)


def test_the_catalogue_holds_every_decision_asked() -> None:
    space = NASNetSpace(blocks=3)
    catalogue = {d.name: set(d.choices) for d in space.catalogue()}
    assert len(catalogue) == 2 * 3 * 5, "names are unique"
    for arch in samples(space, 20, seed=4):
        asked, _ = space._replay(space.to_labels(arch))
        for decision in asked:
            assert set(decision.choices) <= catalogue[decision.name]


def test_graphs_show_both_cells() -> None:
    normal, reduction = NASNetSpace().graphs(NASNET_A)
    assert (normal.title, reduction.title) == ("normal cell", "reduction cell")
    assert normal.nodes[:2] == ("h_{i-2}", "h_{i-1}") and normal.nodes[-1] == "h_{i}"
    assert len(normal.edges) == 2 * 5 + 6 and len(reduction.edges) == 2 * 5 + 4
    # Block 2 adds avg_pool_3x3(h_{i-1}) and identity(h_{i-2}); h_{i-2} feeds the output.
    assert (1, 4, "avg_pool_3x3") in normal.edges and (0, 4, "identity") in normal.edges
    assert (0, 7, "") in normal.edges and (1, 7, "") not in normal.edges


# -- networks -------------------------------------------------------------------------------


def _train_step(space: NASNetSpace, arch: NASNetArchitecture, shape: tuple[int, ...]) -> None:
    network = space.build(arch, shape, num_classes=3)
    logits = network(torch.randn(2, *shape))
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in network.parameters())


def test_tiny_samples_train_a_step_on_digits() -> None:
    concat_only = NASNetSpace(cells_per_stage=1, filters=4, blocks=2, combinations=["concat"])
    archs = samples(TINY, 4, seed=5) + samples(concat_only, 2, seed=6)
    assert any(b.combine == "concat" for arch in archs for b in arch.normal + arch.reduce)
    for arch in archs:
        _train_step(TINY, arch, (1, 8, 8))


def test_nasnet_a_and_a_concat_sample_train_a_step_on_cifar_sized_images() -> None:
    small = NASNetSpace(cells_per_stage=1, filters=4)
    concat = samples(NASNetSpace(cells_per_stage=1, filters=4, combinations=["concat"]), 1)[0]
    for arch in (NASNET_A, concat):
        _train_step(small, arch, (3, 32, 32))


def test_odd_sizes_and_wide_concat_blocks_keep_shapes_consistent() -> None:
    # A concat block feeding every kind of op, in a reduction cell, on an odd-sized map.
    ops = ("conv_1x7_7x1", "dil_conv_3x3", "max_pool_7x7", "sep_conv_7x7")
    blocks = (
        Block((0, 1), ("identity", "conv_1x3_3x1"), "concat"),
        *(Block((2, 0), (op, "identity"), "concat") for op in ops),
    )
    arch = NASNetArchitecture(normal=blocks, reduce=blocks)
    space = NASNetSpace(cells_per_stage=1, filters=4)
    _train_step(space, arch, (1, 7, 5))
