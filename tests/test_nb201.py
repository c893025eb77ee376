"""The NAS-Bench-201 space: its strings, its decisions, and networks that are the benchmark's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError
from nasflow.search_spaces.base import SearchSpace
from nasflow.search_spaces.nb201 import EDGE_NAMES, OPS, NB201Architecture, NB201Space
from nasflow.tabular.nb201 import load_table

# The best CIFAR-10 cell of the benchmark (arch 6111) and its ResNet-like cell (arch 11472).
BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
# Rows spread over the table, with 0 and the two landmarks above. (3301, not 3300: row 3300
# is one of the table's mixed-trial rows, see the test of those below.)
PARAM_ROWS = [0, 6111, 11472, *range(500, 3300, 560), 3301, *range(3860, 15625, 560)]


def count_params(space: NB201Space, text: str) -> int:
    """Parameters of the benchmark's CIFAR-10 network; built on `meta`, so nothing is allocated."""
    with torch.device("meta"):
        network = space.build(space.parse(text), (3, 32, 32), num_classes=10)
    return sum(p.numel() for p in network.parameters())


# -- strings and JSON ------------------------------------------------------------------------


def test_the_official_string_round_trips() -> None:
    space = NB201Space()
    arch = space.parse(BEST)
    assert arch.edges == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "nor_conv_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "nor_conv_1x1",
    )
    assert arch.describe() == BEST
    assert arch.to_json() == {"cell": BEST}
    assert arch.canonical_json() == json.dumps({"cell": BEST}, separators=(",", ":"))


def test_every_table_string_round_trips() -> None:
    space = NB201Space()
    for text in load_table().columns["arch"]:
        assert space.parse(str(text)).describe() == text


def test_json_dict_bare_string_and_typed_text_give_the_same_architecture() -> None:
    space = NB201Space()
    arch = space.parse(RESNET)
    assert space.from_json({"cell": RESNET}) == arch
    assert space.from_json(RESNET) == arch
    assert space.parse(f"  {RESNET}\n") == arch
    assert space.parse(json.dumps({"cell": RESNET})) == arch
    assert space.parse(json.dumps(RESNET)) == arch
    assert space.from_json(json.loads(json.dumps(arch.to_json()))) == arch


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", r"3 nodes separated by '\+'.*got 2"),
        (BEST + "+|none~0|", r"3 nodes separated by '\+'.*got 4"),
        (BEST.replace("nor_conv_1x1", "conv_5x5"), "unknown NB201 op 'conv_5x5'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2 input edge"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|", "node 3 must have 3 input edge"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "input 0 must be written"),
        ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "input 0 must be written"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must be written"),
        ("hello", r"3 nodes separated by '\+'.*got 1 in 'hello'"),
        ('{"cell": ', "invalid JSON"),
        ('{"cell": 3}', "an NB201 architecture is"),
        ('{"layers": []}', "an NB201 architecture is"),
        ("[1, 2]", "an NB201 architecture is"),
    ],
)
def test_malformed_text_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(NasflowError, match=reason):
        NB201Space().parse(text)


def test_an_op_outside_the_configured_ops_is_refused() -> None:
    space = NB201Space(ops=["none", "skip_connect", "nor_conv_3x3"])
    with pytest.raises(NasflowError, match=r"edge3<-2=nor_conv_1x1 is not allowed"):
        space.parse(BEST)


def test_an_architecture_has_six_edges() -> None:
    with pytest.raises(NasflowError, match="6 edges, got 5"):
        NB201Architecture(("none",) * 5)


def test_bad_space_settings_are_refused() -> None:
    with pytest.raises(NasflowError, match="channels"):
        NB201Space(channels=0)
    with pytest.raises(NasflowError, match="cells_per_stage"):
        NB201Space(cells_per_stage=-1)
    with pytest.raises(NasflowError, match="conv_5x5"):
        NB201Space(ops=["none", "conv_5x5"])
    with pytest.raises(NasflowError, match="empty"):
        NB201Space(ops=[])


# -- decisions ---------------------------------------------------------------------------


def test_the_space_registers_itself_and_has_a_tiny_instance() -> None:
    assert SearchSpace.registry["nb201"] is NB201Space
    tiny = NB201Space.tiny()
    assert (tiny.channels, tiny.cells_per_stage) == (4, 1)


def test_six_decisions_in_the_order_of_the_string() -> None:
    space = NB201Space()
    assert [d.name for d in space.catalogue()] == list(EDGE_NAMES)
    assert EDGE_NAMES == ("edge1<-0", "edge2<-0", "edge2<-1", "edge3<-0", "edge3<-1", "edge3<-2")
    assert all(d.choices == OPS for d in space.catalogue())
    arch = space.parse(BEST)
    assert space.encode(arch) == (3, 3, 3, 1, 3, 2)  # indices into the official op order
    assert space.decode(space.encode(arch)) == arch
    assert space.features(arch).shape == (30,)


def test_size_is_the_closed_form() -> None:
    assert NB201Space().size() == 5**6 == 15_625
    assert NB201Space(ops=["none", "nor_conv_3x3"]).size() == 2**6


def test_enumeration_is_the_whole_table_each_cell_once() -> None:
    archs = list(NB201Space().enumerate())
    assert len(archs) == 15_625
    assert len({a.id for a in archs}) == 15_625
    assert {a.describe() for a in archs} == set(load_table().columns["arch"].tolist())


def test_enumeration_of_a_smaller_space_matches_its_size() -> None:
    space = NB201Space(ops=["skip_connect", "nor_conv_1x1", "avg_pool_3x3"])
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == space.size() == 3**6


def test_neighbours_and_mutations_change_one_edge() -> None:
    space = NB201Space()
    arch = space.parse(BEST)
    neighbours = space.neighbours(arch)
    assert len(neighbours) == 6 * 4
    rng = np.random.default_rng(0)
    for child in [*neighbours, *(space.mutate(arch, rng) for _ in range(20))]:
        assert sum(a != b for a, b in zip(arch.edges, child.edges, strict=True)) == 1


def test_graph_draws_the_connected_edges() -> None:
    (graph,) = NB201Space().graphs(NB201Space().parse(RESNET))
    assert graph.title == "NB201 cell"
    assert graph.nodes == ("input", "1", "2", "output")
    assert graph.edges == (
        (0, 1, "nor_conv_3x3"),
        (1, 2, "nor_conv_3x3"),
        (0, 3, "skip_connect"),
        (2, 3, "skip_connect"),
    )
    assert graph.notes


# -- the table and the networks --------------------------------------------------------


def test_the_shipped_table_is_indexed_by_arch_index() -> None:
    table = load_table()
    assert len(table) == 15_625
    assert np.array_equal(table.columns["arch_index"], np.arange(15_625))
    assert table.index_of(BEST) == 6111
    assert table.row(11472)["arch"] == RESNET
    with pytest.raises(NasflowError, match=r"0\.\.15624"):
        table.row(15_625)
    with pytest.raises(NasflowError, match="not an arch string"):
        table.index_of("|none~0|")


@pytest.mark.parametrize("index", PARAM_ROWS)
def test_parameter_counts_are_the_benchmarks(index: int) -> None:
    row = load_table().row(index)
    assert round(count_params(NB201Space(), row["arch"]) / 1e6, 6) == row["params_m"]


def test_the_tables_mixed_trial_rows_are_means_over_trials() -> None:
    """Why ~200 rows differ from our counts (see benchmarks/nb201_params.py).

    The table gives each cell's mean over its trials, and for those rows some trials recorded
    another cell's network. Rows 2958 and 3681 show it: each is one third its own network
    and two thirds the other's.
    """
    table, space = load_table(), NB201Space()
    a = count_params(space, table.row(2958)["arch"])
    b = count_params(space, table.row(3681)["arch"])
    assert (a, b) == (129_306, 101_306)
    assert table.row(2958)["params_m"] == round((a + 2 * b) / 3 / 1e6, 6)
    assert table.row(3681)["params_m"] == round((b + 2 * a) / 3 / 1e6, 6)


@pytest.mark.parametrize("text", [BEST, RESNET, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 5, 7)])
def test_networks_run_forward_and_backward_on_small_images(
    text: str, shape: tuple[int, int, int]
) -> None:
    space = NB201Space.tiny()
    network = space.build(space.parse(text), shape, num_classes=4)
    logits = network(torch.randn(2, *shape))
    assert logits.shape == (2, 4)
    logits.sum().backward()
    assert all(p.grad is not None for p in network.parameters())


def test_the_full_size_network_runs_on_digits() -> None:
    space = NB201Space()
    network = space.build(space.parse(BEST), (1, 8, 8), num_classes=10)
    logits = network(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 10)
    logits.sum().backward()
