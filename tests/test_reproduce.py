"""Every one-shot method derives the cells it derived when these were recorded.

A seeded one-shot search is deterministic on a CPU, so a change to what a method computes
(a random draw taken in another order, a hook moved, a setting's default) changes the cells
its epochs derive. `EXPECTED` pins them for a tiny seeded search of every one-shot option of
``conf/strategy/``: the derived cell after each epoch, the last entry being the search's
result. Checked by hand against the pins: ENAS sampling in chunks of 16, the architect's
Adam betas (0.9, 0.999), GDAS' soft samples and DARTS-PT deciding edges in order each fail
this test; a change too small to move any decision at this size passes it (GDAS' initial
tau 9 instead of 10: Adam's normalised steps hardly notice). A change meant to alter a
method re-pins its entry (the failure message prints the new one) and says so in its
commit; a change not meant to must leave this test passing.

The searches run in float64 (``precision="64-true"``) on one thread: float32 results
differ in their last bits between CPUs and thread counts, which a one-shot search turns
into other cells (benchmarks/README.md, "Reproducing across machines"); in float64 such
differences are far below anything these searches decide on. Recorded 2026-12-01 on the
2-vCPU development machine (AVX2, torch 2.14.1) from the committed code (548d961) and the
working tree alike, about 10 s for all five.
"""

from __future__ import annotations

import re
from functools import partial

import pytest

from nasflow.oneshot.strategy import OneShotResult
from nasflow.tracking.base import Tracker
from tests.oneshot_runs import TRAINER, one_shot_options, tiny_data, tiny_strategy

# The recorded one-shot runs used one torch thread; so do these.
pytestmark = pytest.mark.usefixtures("one_thread")

# Option -> the cell derived after each epoch, then the search's result; a cell as its six
# edges' ops in NB201's order (|e0|+|e1|e2|+|e3|e4|e5|).
EXPECTED: dict[str, list[str]] = {
    "darts": [
        "nor_conv_3x3 skip_connect nor_conv_1x1 nor_conv_3x3 avg_pool_3x3 nor_conv_3x3",
        "nor_conv_3x3 avg_pool_3x3 skip_connect avg_pool_3x3 avg_pool_3x3 nor_conv_3x3",
        "nor_conv_3x3 avg_pool_3x3 skip_connect avg_pool_3x3 avg_pool_3x3 nor_conv_3x3",
    ],
    "darts_pt": [
        "nor_conv_3x3 skip_connect avg_pool_3x3 none none none",
        "nor_conv_3x3 skip_connect avg_pool_3x3 none none none",
        "none skip_connect avg_pool_3x3 none none none",
        "none skip_connect avg_pool_3x3 none none none",
        "none skip_connect avg_pool_3x3 skip_connect none none",
        "none skip_connect avg_pool_3x3 skip_connect none none",
        "none skip_connect none skip_connect none none",
        "none skip_connect none skip_connect none none",
        "none skip_connect none skip_connect none none",
    ],
    "drnas": [
        "nor_conv_3x3 skip_connect avg_pool_3x3 none none none",
        "skip_connect nor_conv_3x3 avg_pool_3x3 nor_conv_3x3 avg_pool_3x3 nor_conv_3x3",
        "skip_connect nor_conv_3x3 avg_pool_3x3 nor_conv_3x3 avg_pool_3x3 nor_conv_3x3",
        "skip_connect skip_connect avg_pool_3x3 avg_pool_3x3 avg_pool_3x3 nor_conv_3x3",
        "skip_connect skip_connect avg_pool_3x3 avg_pool_3x3 avg_pool_3x3 nor_conv_3x3",
    ],
    "enas": [
        "avg_pool_3x3 nor_conv_3x3 nor_conv_3x3 nor_conv_1x1 nor_conv_1x1 nor_conv_3x3",
        "none skip_connect skip_connect skip_connect skip_connect nor_conv_1x1",
        "nor_conv_1x1 avg_pool_3x3 nor_conv_1x1 nor_conv_3x3 avg_pool_3x3 avg_pool_3x3",
    ],
    "gdas": [
        "nor_conv_3x3 skip_connect avg_pool_3x3 skip_connect none skip_connect",
        "nor_conv_3x3 skip_connect avg_pool_3x3 skip_connect nor_conv_1x1 none",
        "nor_conv_3x3 skip_connect avg_pool_3x3 skip_connect nor_conv_1x1 none",
    ],
}


def edges(description: str) -> str:
    """An NB201 cell's ops, edge by edge: "|a~0|+|b~0|c~1|+|..." -> "a b c ..."."""
    return " ".join(re.findall(r"(\w+)~\d", description))


def cells(result: OneShotResult) -> list[str]:
    descriptions = [r["arch_description"] for r in result.epochs] + [result.arch.describe()]
    return [edges(d) for d in descriptions]


def test_every_one_shot_option_is_pinned() -> None:
    """A new one-shot option gets an entry here (and a shrink in tests/oneshot_runs.py)."""
    assert sorted(one_shot_options()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_seeded_search_derives_the_recorded_cells(name: str) -> None:
    strategy = tiny_strategy(name, seed=0)
    trainer = partial(TRAINER, precision="64-true")
    result = strategy.search(tiny_data(), trainer, Tracker())
    assert cells(result) == EXPECTED[name], f"{name} now derives {cells(result)}"
