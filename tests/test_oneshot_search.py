"""One-shot searches (DARTS, GDAS, DrNAS, ENAS) end to end on tiny synthetic data.

Every supernet is a few channels on 8x8 images and every search two epochs of a handful
of batches, so each test takes seconds on one CPU thread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nasflow.errors import NasflowError
from nasflow.oneshot import DartsSearch, EnasSearch, OneShotResult
from nasflow.oneshot.build import build_supernet, one_hot_weights
from nasflow.oneshot.strategy import RECORD_KEYS
from nasflow.oneshot.supernet import supernet_logits
from nasflow.search_spaces import ChainSpace
from nasflow.search_spaces.darts import DARTS_V2, DartsSpace
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Space
from nasflow.tracking.base import Tracker
from nasflow.training.data import InMemoryData
from tests.oneshot_runs import CLASSES, TRAINER, tiny_data

# The supernet sizes of the tests: NB201 with one cell per stage, DARTS with three cells.
SPACES = {
    "nb201": (NB201Space(channels=16, cells_per_stage=5), {"channels": 4, "cells": 1}),
    "darts": (DartsSpace(channels=16, layers=8), {"channels": 4, "cells": 3}),
}
FAST = {"epochs": 2, "batch_size": 16}


def _data(n: int = 32) -> InMemoryData:
    """`n` training and `n` validation 8x8 images, less noisy than the reproduction tests'."""
    return tiny_data(n, noise=0.5)


class Recorder(Tracker):
    """Keeps everything it is asked to log (artifacts read at once: they are temporary)."""

    keeps_artifacts = True

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.dicts: dict[str, Any] = {}
        self.artifacts: dict[str, bytes] = {}

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_dict(self, data: Any, filename: str) -> None:
        self.dicts[filename] = json.loads(json.dumps(data))  # must be JSON as it is

    def log_artifact(self, path: str) -> None:
        self.artifacts[Path(path).name] = Path(path).read_bytes()


def _run(strategy: DartsSearch | EnasSearch, data: InMemoryData | None = None):
    tracker, seen = Recorder(), []
    result = strategy.search(data or _data(), TRAINER, tracker, on_epoch=seen.append)
    return result, tracker, seen


def _check_run(
    result: OneShotResult, tracker: Recorder, seen: list, space: Any, edges: dict[str, int]
) -> None:
    """What every search must produce: a valid architecture, records, metrics, artifacts."""
    space.validate(result.arch)
    assert space.from_json(result.arch.to_json()) == result.arch
    assert 0.0 <= result.score <= 1.0 and result.seconds > 0
    assert [r["epoch"] for r in result.epochs] == [0, 1] and seen == result.epochs
    for record in result.epochs:
        assert set(RECORD_KEYS) <= set(record)
        space.from_json(record["arch"])
        assert record["arch_description"] == space.from_json(record["arch"]).describe()
        assert math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"])
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["val_acc"] <= 1
        assert record["entropy"] >= 0 and record["seconds"] > 0
        assert set(record["alphas"]) == set(edges)
        for cell, rows in record["alphas"].items():
            assert len(rows) == edges[cell]
            assert all(math.isclose(sum(row), 1.0, rel_tol=1e-4) for row in rows)
    assert [step for step, _ in tracker.metrics] == [0, 1]
    for _, metrics in tracker.metrics:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "entropy", "parameter_free"):
            assert isinstance(metrics[key], float)
        cell = next(iter(edges))
        assert any(key.startswith(f"alpha.{cell}.e0.") for key in metrics)
        assert len([k for k in metrics if k.startswith("alpha.")]) == sum(
            n * len(result.epochs[0]["alphas"][c][0]) for c, n in edges.items()
        )
    assert tracker.artifacts["alphas.png"].startswith(b"\x89PNG")
    saved = tracker.dicts["oneshot.json"]
    assert saved["arch"] == result.arch.to_json() and saved["score"] == result.score
    assert len(saved["epochs"]) == 2


EDGES = {"nb201": {"cell": 6}, "darts": {"normal": 14, "reduce": 14}}


# Every relaxation and order on NB201; on the (slower) DARTS space the first-order DARTS
# run only: the relaxations do not depend on the space, and the architect's second-order
# gradient on the DARTS space is checked in test_oneshot.py.
METHODS = [("softmax", 1, "darts-1st"), ("softmax", 2, "darts-2nd"), ("gumbel", 1, "gdas")]
METHODS.append(("dirichlet", 1, "drnas"))
RUNS = [("nb201", *method) for method in METHODS]
RUNS.append(("darts", "softmax", 1, "darts-1st"))


@pytest.mark.parametrize(
    ("space_name", "relaxation", "order"),
    [
        pytest.param(space, relaxation, order, id=f"{name}-{space}")
        for space, relaxation, order, name in RUNS
    ],
)
def test_darts_search_runs_and_logs(space_name: str, relaxation: str, order: int) -> None:
    space, size = SPACES[space_name]
    strategy = DartsSearch(space, seed=0, relaxation=relaxation, order=order, **FAST, **size)
    result, tracker, seen = _run(strategy)
    _check_run(result, tracker, seen, space, EDGES[space_name])
    assert result.score == result.epochs[-1]["score"]
    assert result.epochs[-1]["arch"] == result.arch.to_json()
    if relaxation == "gumbel":  # GDAS' tau falls from 10 to 0.1 over the epochs
        assert [r["tau"] for r in result.epochs] == [10.0, pytest.approx(0.1)]
    # The cosine schedule lowers the weights' learning rate after the first epoch.
    assert result.epochs[0]["w_lr"] == 0.025 > result.epochs[1]["w_lr"]


def test_the_heat_map_is_drawn_only_for_a_tracker_that_keeps_files() -> None:
    """tracking=none gets the result and no heat map (drawing one costs more than a
    tiny search's epoch); a tracker that keeps files gets both."""
    from nasflow.oneshot.strategy import _log_artifacts

    space = NB201Space.tiny()
    ops = list(space.ops)
    weights = {"cell": [[1 / len(ops)] * len(ops)] * 6}
    epochs = [{"epoch": e, "alphas": weights} for e in range(2)]
    arch = space.sample(np.random.default_rng(0))
    result = OneShotResult(arch=arch, score=0.5, epochs=epochs, seconds=1.0, details={})

    class KeepsNothing(Recorder):
        keeps_artifacts = False

    for tracker, drawn in ((Recorder(), {"alphas.png"}), (KeepsNothing(), set())):
        _log_artifacts(tracker, result, ops)
        assert set(tracker.artifacts) == drawn and set(tracker.dicts) == {"oneshot.json"}


def test_darts_search_is_reproducible_from_its_seed() -> None:
    space, size = SPACES["nb201"]

    def run(seed: int) -> OneShotResult:
        strategy = DartsSearch(space, seed=seed, relaxation="gumbel", **FAST, **size)
        return _run(strategy)[0]

    first, again, other = run(3), run(3), run(4)
    for key in ("alphas", "train_loss", "val_acc", "arch"):
        assert [r[key] for r in first.epochs] == [r[key] for r in again.epochs]
    assert first.arch == again.arch and first.score == again.score
    assert [r["alphas"] for r in first.epochs] != [r["alphas"] for r in other.epochs]


def test_darts_search_uses_limited_subsets_of_the_splits() -> None:
    space, size = SPACES["nb201"]
    strategy = DartsSearch(space, train_limit=16, val_limit=8, **FAST, **size)
    result, _, _ = _run(strategy, _data(n=64))
    space.validate(result.arch)


@pytest.mark.parametrize(
    ("space", "settings", "message"),
    [
        (NB201Space.tiny(), {"relaxation": "snas"}, "relaxation must be one of .* got 'snas'"),
        (NB201Space.tiny(), {"order": 3}, "order must be 1 or 2, got 3"),
        (NB201Space.tiny(), {"epochs": 0}, "epochs must be a positive integer, got 0"),
        (NB201Space.tiny(), {"w_lr": -1.0}, r"w_lr must be a number > 0.0, got -1.0"),
        (NB201Space.tiny(), {"cells": 0}, "cells must be an integer >= 1 or null, got 0"),
        (DartsSpace.tiny(), {"cells": 2}, "cells must be an integer >= 3, got 2"),
        (NB201Space.tiny(), {"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0"),
        (NB201Space.tiny(), {"kl_weight": 0.1}, "kl_weight is DrNAS' .* relaxation 'softmax'"),
        (NB201Space.tiny(), {"prune_epoch": 10}, r"prune_epoch must be below epochs \(10\)"),
        (NB201Space.tiny(), {"keep_ops": 0}, "keep_ops must be a positive integer, got 0"),
        (NB201Space.tiny(), {"epoch": 3}, "unknown one-shot setting strategy.epoch;"),
        (NB201Space.tiny(), {"selection": "pt"}, "selection must be one of magnitude, pert"),
        (DartsSpace.tiny(), {"selection": "perturbation"}, "nb201 only .* got 'darts'"),
        (NB201Space.tiny(), {"tune_epochs": 0}, "tune_epochs must be a positive integer"),
        (ChainSpace.tiny(), {}, "search_space 'chain' has none .*allowed: nb201, darts"),
    ],
)
def test_darts_search_rejects_bad_settings(space: Any, settings: dict, message: str) -> None:
    with pytest.raises(NasflowError, match=message):
        DartsSearch(space, **settings)


def test_warm_up_freezes_alpha_and_pruning_shrinks_the_candidates() -> None:
    """DrNAS' schedule: alpha frozen for `warmup_epochs`, then searched; at `prune_epoch`
    every edge keeps `keep_ops` ops, and a fresh warm-up follows."""
    space, size = SPACES["nb201"]
    strategy = DartsSearch(
        space,
        relaxation="dirichlet",
        kl_weight=0.01,
        warmup_epochs=1,
        prune_epoch=2,
        keep_ops=2,
        arch_lr=0.05,
        epochs=4,
        batch_size=16,
        **size,
    )
    result, _, _ = _run(strategy)
    records = result.epochs
    assert [r["searching"] for r in records] == [False, True, False, True]
    assert [r["candidate_ops"] for r in records] == [30, 30, 12, 12]

    def spread(record: dict) -> float:  # how far the op weights are from uniform
        return float(np.abs(np.array(record["alphas"]["cell"]) - 0.2).max())

    # Frozen in the warm-up: epoch 0 ends at the initial, near-uniform weights (alpha is
    # 1e-3 * N(0, 1)); the searched epoch moves them.
    assert spread(records[0]) < 2e-3 < 5e-3 < spread(records[1])
    assert records[3]["alphas"] != records[2]["alphas"]
    kept = [[w > 0 for w in row] for row in records[2]["alphas"]["cell"]]
    assert all(sum(row) == 2 for row in kept)
    # Epoch 2 warms up again: its weights are epoch 1's, restricted to the kept ops.
    before = np.array(records[1]["alphas"]["cell"]) * np.array(kept)
    restricted = before / before.sum(axis=1, keepdims=True)
    assert np.array(records[2]["alphas"]["cell"]) == pytest.approx(restricted, abs=1e-6)
    for record in records[2:]:
        for row, keep in zip(record["alphas"]["cell"], kept, strict=True):
            assert [w > 0 for w in row] == keep
            assert sum(row) == pytest.approx(1.0)
    # The derived architecture uses kept ops only.
    arch = result.arch
    assert isinstance(arch, NB201Architecture)
    ops = list(space.ops)
    assert all(keep[ops.index(op)] for op, keep in zip(arch.edges, kept, strict=True))


def test_perturbation_selection_fixes_each_edge_to_its_most_needed_op() -> None:
    """DARTS-PT with fixed alpha: two epochs of supernet training, then the six NB201
    edges decided one by one (a tuning epoch after each), each to the op whose removal
    costs the most validation accuracy."""
    space, size = SPACES["nb201"]
    strategy = DartsSearch(
        space, selection="perturbation", warmup_epochs=2, tune_epochs=1, **FAST, **size
    )
    result, tracker, _ = _run(strategy)
    records = result.epochs
    assert len(records) == 2 + 6 and not any(r["searching"] for r in records)
    assert [r["decided_edges"] for r in records] == [0, 0, 1, 2, 3, 4, 5, 6]
    # Alpha never moved: the first two epochs keep the initial, near-uniform weights.
    assert records[0]["alphas"] == records[1]["alphas"]
    decisions = result.details["decisions"]
    assert sorted(d["edge"] for d in decisions) == list(range(6))
    assert [d["epoch"] for d in decisions] == list(range(2, 8))
    arch = result.arch
    assert isinstance(arch, NB201Architecture)
    for decision in decisions:
        assert arch.edges[decision["edge"]] == decision["op"]
        without = decision["val_acc_without"]
        assert set(without) == set(space.ops)
        assert without[decision["op"]] == min(without.values())
    # Once decided, an edge's weights are one-hot at its op in every later record.
    final = records[-1]["alphas"]["cell"]
    for edge, op in enumerate(arch.edges):
        assert final[edge] == [1.0 if o == op else 0.0 for o in space.ops]
    assert tracker.dicts["oneshot.json"]["decisions"] == decisions


def test_enas_rejects_bad_settings() -> None:
    with pytest.raises(NasflowError, match="controller_steps must be a positive integer, got 0"):
        EnasSearch(NB201Space.tiny(), controller_steps=0)
    # The controller's settings are checked by `Reinforce`, under ENAS' names too.
    with pytest.raises(NasflowError, match=r"batch_size must be .* controller_batch is its"):
        EnasSearch(NB201Space.tiny(), controller_batch=0)
    with pytest.raises(NasflowError, match=r"baseline_decay must be a number >= 0.0 and < 1.0"):
        EnasSearch(NB201Space.tiny(), baseline_decay=1.0)
    with pytest.raises(NasflowError, match="search_space 'chain' has none"):
        EnasSearch(ChainSpace.tiny())


@pytest.mark.parametrize("space_name", ["nb201", "darts"])
def test_enas_search_runs_and_logs(space_name: str) -> None:
    space, size = SPACES[space_name]
    strategy = EnasSearch(
        space, seed=0, controller_steps=4, controller_batch=2, final_samples=3, **FAST, **size
    )
    result, tracker, seen = _run(strategy)
    _check_run(result, tracker, seen, space, EDGES[space_name])
    final = tracker.dicts["oneshot.json"]["final_candidates"]
    assert 1 <= len(final) <= 3
    assert result.score == max(candidate["val_acc"] for candidate in final)
    # The controller learnt: two updates per epoch of four rewards in batches of two.
    assert result.epochs[-1]["controller.updates"] == 4.0


def test_enas_search_is_reproducible_from_its_seed() -> None:
    space, size = SPACES["nb201"]

    def run(seed: int) -> OneShotResult:
        strategy = EnasSearch(
            space, seed=seed, controller_steps=4, controller_batch=2, **FAST, **size
        )
        return _run(strategy)[0]

    first, again = run(1), run(1)
    assert first.epochs == [
        {**r, "seconds": f["seconds"]} for r, f in zip(again.epochs, first.epochs, strict=True)
    ]
    assert first.arch == again.arch and first.score == again.score


@pytest.mark.parametrize("strategy", ["gdas-2nd", "enas"])
def test_searches_run_under_mixed_precision(strategy: str) -> None:
    """bf16 autocast (what a GPU trainer config sets, here on the CPU): the architect's
    unrolled step, the manual evaluation passes and the clipping all run under it."""
    space, size = SPACES["nb201"]
    search: DartsSearch | EnasSearch = (
        DartsSearch(space, relaxation="gumbel", order=2, **FAST, **size)
        if strategy == "gdas-2nd"
        else EnasSearch(space, controller_steps=2, controller_batch=2, **FAST, **size)
    )
    trainer = partial(TRAINER, precision="bf16-mixed")
    result = search.search(_data(), trainer, Recorder())
    space.validate(result.arch)
    assert all(
        math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in result.epochs
    )


def test_one_hot_weights_select_the_architecture() -> None:
    nb201 = build_supernet(NB201Space.tiny(), (1, 8, 8), CLASSES)
    arch = NB201Architecture(("none", "skip_connect", "nor_conv_1x1") * 2)
    weights = one_hot_weights(nb201, arch)["cell"]
    assert weights.sum().item() == 6 and weights[2, nb201.ops.index("nor_conv_1x1")] == 1
    darts = build_supernet(DartsSpace.tiny(), (1, 8, 8), CLASSES)
    assert darts.ops[0] == "none"
    both = one_hot_weights(darts, DARTS_V2)
    for cell in ("normal", "reduce"):
        assert torch.equal(both[cell].sum(1), torch.ones(14))
        assert (both[cell][:, 0] == 0).sum() == 8  # the genotype's eight edges, not none
    with pytest.raises(NasflowError, match="cannot put a DartsGenotype on a NB201Supernet"):
        one_hot_weights(nb201, DARTS_V2)


@pytest.mark.parametrize("space", [NB201Space.tiny(), DartsSpace.tiny()], ids=["nb201", "darts"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)], ids=["digits", "cifar"])
def test_supernets_take_digits_and_cifar_sized_images(space: Any, shape: tuple) -> None:
    network = build_supernet(space, shape, CLASSES, channels=2)
    arch = space.sample(np.random.default_rng(0))
    logits = supernet_logits(network, torch.randn(2, *shape), one_hot_weights(network, arch))
    assert logits.shape == (2, CLASSES)
