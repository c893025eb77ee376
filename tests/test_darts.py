"""The DARTS space: published genotypes, canonical form, validation, grammar, networks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError
from nasflow.search_spaces.darts import (
    DARTS_V1,
    DARTS_V2,
    DISCRETE_OPS,
    GENOTYPES,
    OPS,
    PRIMITIVES,
    DartsGenotype,
    DartsNetwork,
    DartsSpace,
    make_op,
)

# DARTS_V2 as the DARTS paper's code writes it (not in canonical order: node 4 and the
# reduction cell's nodes 3 and 5 list the larger input first).
V2_PUBLISHED = {
    "normal": [
        ["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2],
    ],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [
        ["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
        ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1],
    ],
    "reduce_concat": [2, 3, 4, 5],
}  # fmt: skip


def count_parameters(genotype: DartsGenotype, channels: int, layers: int) -> int:
    # On the meta device nothing is allocated: the 3.3 M-parameter network builds at once.
    with torch.device("meta"):
        network = DartsSpace(channels=channels, layers=layers).build(genotype, (3, 32, 32), 10)
    return sum(p.numel() for p in network.parameters())


def test_darts_v2_has_the_published_parameter_count() -> None:
    # DARTS (second order) on CIFAR-10: C=36, 20 cells, 3.3 M parameters without the
    # auxiliary head; the reference code logs 3.349342 M.
    count = count_parameters(DARTS_V2, channels=36, layers=20)
    assert abs(count - 3.3e6) / 3.3e6 < 0.02
    assert count == 3_349_342


def test_darts_v1_parameter_count_is_pinned() -> None:
    # The paper's table also says 3.3 M for the first-order cell; the genotype as released
    # gives 3.17 M (fewer separable convolutions in its normal cell).
    assert count_parameters(DARTS_V1, channels=36, layers=20) == 3_169_414


@pytest.mark.parametrize("name", GENOTYPES)
def test_published_genotypes_load_from_their_json(name: str) -> None:
    space = DartsSpace()
    genotype = GENOTYPES[name]
    assert space.from_json(json.loads(json.dumps(genotype.to_json()))) == genotype
    assert space.parse(name) == genotype
    assert space.parse(json.dumps(genotype.to_json())) == genotype
    assert space.decode(space.encode(genotype)) == genotype


def test_the_published_order_gives_the_canonical_genotype() -> None:
    genotype = DartsSpace().from_json(V2_PUBLISHED)
    assert genotype == DARTS_V2
    assert genotype.id == DARTS_V2.id
    data = genotype.to_json()
    assert data["normal"][4:6] == [["skip_connect", 0], ["sep_conv_3x3", 1]]
    assert data["reduce"][2:4] == [["max_pool_3x3", 1], ["skip_connect", 2]]
    assert set(data) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    assert data["normal_concat"] == data["reduce_concat"] == [2, 3, 4, 5]


def test_swapping_a_nodes_pairs_keeps_the_id() -> None:
    normal = list(DARTS_V1.normal)
    normal[6], normal[7] = normal[7], normal[6]
    swapped = DartsGenotype(normal=tuple(normal), reduce=DARTS_V1.reduce)
    assert swapped == DARTS_V1
    assert swapped.id == DARTS_V1.id
    assert swapped.canonical_json() == DARTS_V1.canonical_json()


def test_describe_is_one_compact_line() -> None:
    assert DARTS_V2.describe() == (
        "normal: sep3(0)+sep3(1) sep3(0)+sep3(1) skip(0)+sep3(1) skip(0)+dil3(2) | "
        "reduce: max3(0)+max3(1) max3(1)+skip(2) max3(0)+skip(2) max3(1)+skip(2)"
    )


def with_pair(cell: str, position: int, pair: list) -> dict:
    data = json.loads(json.dumps(V2_PUBLISHED))
    data[cell][position] = pair
    return data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (with_pair("normal", 3, ["conv_9x9", 1]), "unknown op 'conv_9x9'"),
        (with_pair("reduce", 0, ["none", 0]), "op 'none' is not allowed"),
        (with_pair("normal", 7, ["skip_connect", 0]), "node 5 has input 0 twice"),
        (with_pair("normal", 1, ["sep_conv_3x3", 2]), "input 2 is out of range; node 2"),
        (with_pair("normal", 1, ["sep_conv_3x3", -1]), "input -1 is out of range"),
        (with_pair("normal", 1, ["sep_conv_3x3", True]), "input True is out of range"),
        (with_pair("normal", 1, ["sep_conv_3x3"]), r"normal\[1\]: expected an \[op, input\]"),
        ({**V2_PUBLISHED, "reduce_concat": [2, 3, 5]}, r"reduce_concat must be .*\[2, 3, 5\]"),
        ({**V2_PUBLISHED, "normal": V2_PUBLISHED["normal"][:6]}, r"expected 8 .* got 6 items"),
        ({"normal": V2_PUBLISHED["normal"]}, "keys normal, normal_concat, reduce"),
        ([["sep_conv_3x3", 0]], "keys normal, normal_concat, reduce"),
    ],
)
def test_invalid_genotypes_are_rejected_naming_the_value(data: object, reason: str) -> None:
    with pytest.raises(NasflowError, match=reason):
        DartsSpace().from_json(data)


def test_genotypes_built_directly_are_validated_by_the_grammar() -> None:
    space = DartsSpace()
    same_inputs = list(DARTS_V2.normal)
    same_inputs[7] = ("dil_conv_3x3", 0)  # node 5 would take input 0 twice
    with pytest.raises(NasflowError, match=r"normal\.node5\.in1=0 is not allowed"):
        space.validate(DartsGenotype(normal=tuple(same_inputs), reduce=DARTS_V2.reduce))
    with pytest.raises(NasflowError, match=r"normal_concat must be .*\[2, 3\]"):
        space.validate(
            DartsGenotype(normal=DARTS_V2.normal, reduce=DARTS_V2.reduce, normal_concat=(2, 3))
        )
    with pytest.raises(NasflowError, match=r"expected 8 .* got 7"):
        space.validate(DartsGenotype(normal=DARTS_V2.normal[:7], reduce=DARTS_V2.reduce))
    # A space restricted to fewer operations refuses genotypes that use others.
    pools_only = DartsSpace(ops=["max_pool_3x3", "avg_pool_3x3"])
    with pytest.raises(NasflowError, match=r"normal\.node2\.op0=sep_conv_3x3"):
        pools_only.validate(DARTS_V2)
    with pytest.raises(NasflowError, match="sep_conv_3x3"):
        pools_only.parse("DARTS_V2")


def test_bad_space_settings_are_refused() -> None:
    with pytest.raises(NasflowError, match="bogus"):
        DartsSpace(ops=["sep_conv_3x3", "bogus"])
    with pytest.raises(NasflowError, match="'none' is not allowed"):
        DartsSpace(ops=["none", "sep_conv_3x3"])
    with pytest.raises(NasflowError, match="layers must be at least 3"):
        DartsSpace(layers=2)
    with pytest.raises(NasflowError, match="channels must be at least 1, got 0"):
        DartsSpace(channels=0)


def test_op_table_has_the_eight_darts_operations() -> None:
    assert PRIMITIVES == (
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
    )  # fmt: skip
    assert set(OPS) == set(PRIMITIVES)
    assert "none" not in DISCRETE_OPS and len(DISCRETE_OPS) == 7
    x = torch.randn(2, 6, 9, 9)
    for name in PRIMITIVES:
        for stride in (1, 2):
            for affine in (True, False):
                y = make_op(name, 6, stride, affine)(x)
                assert y.shape == (2, 6, 5 if stride == 2 else 9, 5 if stride == 2 else 9), name
    assert isinstance(make_op("skip_connect", 6, 1), torch.nn.Identity)
    dil = make_op("dil_conv_5x5", 6, 1)[1]
    assert (dil.kernel_size, dil.padding, dil.dilation) == ((5, 5), (4, 4), (2, 2))
    assert make_op("avg_pool_3x3", 6, 1).count_include_pad is False


def test_size_is_the_closed_form_and_the_grammar_agrees_with_it() -> None:
    space = DartsSpace()
    per_cell = 1 * 3 * 6 * 10 * 7**8  # C(k+2, 2) input pairs per node, 7 ops for each edge
    assert space.size() == per_cell**2
    assert DartsSpace(ops=["skip_connect", "max_pool_3x3"]).size() == (180 * 2**8) ** 2
    # Count the input pairs the grammar offers at each node of the normal cell.
    prefix: list[str] = []
    for node in range(2, 6):
        first = space.next_decision(prefix)
        assert first is not None and first.name == f"normal.node{node}.in0"
        pairs = sum(len(space.next_decision([*prefix, a]).choices) for a in first.choices)
        assert pairs == math.comb(node, 2)
        prefix += [first.choices[0], str(int(first.choices[0]) + 1), "skip_connect", "skip_connect"]


def test_decisions_have_unique_names_and_the_catalogue_covers_them() -> None:
    space = DartsSpace()
    catalogue = {d.name: set(d.choices) for d in space.catalogue()}
    assert len(catalogue) == len(space.catalogue()) == 2 * 4 * 4
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        labels = space.to_labels(arch)
        asked, _ = space._replay(labels)
        assert len({d.name for d in asked}) == len(asked)
        assert all(label in catalogue[d.name] for d, label in zip(asked, labels, strict=True))
        assert space.features(arch).shape == (len(space.feature_names()),)
        assert space.features(arch).sum() == len(asked)


def test_samples_validate_and_round_trip() -> None:
    space = DartsSpace()
    rng = np.random.default_rng(1)
    for _ in range(30):
        arch = space.sample(rng)
        space.validate(arch)
        assert space.from_json(json.loads(json.dumps(arch.to_json()))) == arch
        assert space.decode(space.encode(arch)) == arch
        for cell in (arch.normal, arch.reduce):
            assert all(a[1] < b[1] for a, b in zip(cell[::2], cell[1::2], strict=True))


def test_mutate_differs_from_the_parent_and_stays_valid() -> None:
    space = DartsSpace()
    rng = np.random.default_rng(2)
    parent = DARTS_V2
    for _ in range(30):
        child = space.mutate(parent, rng)
        assert child != parent and child.id != parent.id
        space.validate(child)
        parent = child


def test_graphs_are_the_two_cells() -> None:
    normal, reduction = DartsSpace().graphs(DARTS_V2)
    assert (normal.title, reduction.title) == ("normal cell", "reduction cell")
    assert normal.nodes == ("c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}")
    assert normal.edges[:2] == ((0, 2, "sep_conv_3x3"), (1, 2, "sep_conv_3x3"))
    assert normal.edges[7] == (2, 5, "dil_conv_3x3")
    assert normal.edges[8:] == tuple((node, 6, "") for node in (2, 3, 4, 5))
    assert reduction.edges[3] == (2, 3, "skip_connect")


def test_network_layout_follows_darts() -> None:
    network = DartsSpace(channels=8, layers=6).build(DARTS_V2, (3, 32, 32), 10)
    assert isinstance(network, DartsNetwork)
    assert [cell.reduction for cell in network.cells] == [False, False, True, False, True, False]
    assert network.stem[0].out_channels == 24
    # After a reduction cell, the next cell's first input is reduced to match.
    assert type(network.cells[3].preprocess0).__name__ == "FactorizedReduce"
    assert type(network.cells[2].preprocess0).__name__ == "ReLUConvBN"
    assert network.classifier.in_features == 4 * 8 * 4  # four nodes of 4C after two doublings


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 7, 7)])
def test_tiny_networks_train_a_step_on_digits(shape: tuple[int, int, int]) -> None:
    space = DartsSpace.tiny()
    rng = np.random.default_rng(3)
    for arch in [DARTS_V2, *(space.sample(rng) for _ in range(3))]:
        network = space.build(arch, shape, num_classes=10)
        logits = network(torch.randn(2, *shape))
        assert logits.shape == (2, 10)
        logits.sum().backward()
        assert all(p.grad is not None for p in network.parameters())


def test_a_small_network_trains_a_step_on_cifar_sized_images() -> None:
    network = DartsSpace(channels=4, layers=5).build(DARTS_V1, (3, 32, 32), num_classes=10)
    logits = network(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in network.parameters())
