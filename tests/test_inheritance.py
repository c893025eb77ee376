"""Weight inheritance: children start from their parents' trained weights, through the
search loop, its store of weights, the tracker, and a resumed search."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from nasflow.errors import NasflowError
from nasflow.inheritance import WeightStore, starting_network
from nasflow.loop import _task_from_json, _task_json
from nasflow.morphism import random_morphism
from nasflow.records import Evaluation, Lineage, Task
from nasflow.search_spaces.chain import ChainNetwork, ChainSpace
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.search_strategies.evolution import RegularizedEvolution
from nasflow.search_strategies.morphism import Morphism
from nasflow.stages import search
from tests.conftest import compose_config, tracking_store

SHAPE = (1, 8, 8)


def _trained_like(network: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights and batch-norm statistics, as training would leave them."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in network.state_dict().items():
        if value.is_floating_point():
            noise = torch.rand(value.shape, generator=generator) + 0.5
            state[name] = noise if "running_var" in name else noise - 1.0
        else:
            state[name] = value.clone()
    return state


def test_a_morphed_child_starts_computing_what_its_trained_parent_does() -> None:
    space = ChainSpace(max_layers=4, ops=("conv", "max_pool", "gap", "dense"))
    for seed in range(6):
        rng = np.random.default_rng(seed)
        parent_arch = space.sample(rng)
        parent = space.build(parent_arch, SHAPE, 5)
        assert isinstance(parent, ChainNetwork)
        made = random_morphism(space, parent_arch, parent, rng)
        if made is None:
            continue
        assert made.step is not None
        weights = _trained_like(parent, seed)
        parent.load_state_dict(weights)
        child, inherited = starting_network(
            space, made.arch, Lineage(parent_arch, (made.step,)), weights, SHAPE, 5
        )
        batch = torch.randn(4, *SHAPE)
        parent.eval(), child.eval()
        assert torch.allclose(parent(batch), child(batch), atol=1e-4)
        assert 0 < inherited <= sum(p.numel() for p in child.parameters())


def test_a_child_without_morphisms_copies_what_matches_by_name_and_shape() -> None:
    space = NB201Space(channels=4, cells_per_stage=1)
    rng = np.random.default_rng(0)
    parent_arch = space.sample(rng)
    child_arch = space.mutate(parent_arch, rng)
    parent = space.build(parent_arch, (3, 8, 8), 5)
    weights = _trained_like(parent, 0)
    child, inherited = starting_network(
        space, child_arch, Lineage(parent_arch), weights, (3, 8, 8), 5
    )
    ours = child.state_dict()
    same = [n for n, v in weights.items() if n in ours and ours[n].shape == v.shape]
    assert all(torch.equal(ours[n], weights[n]) for n in same)
    assert 0 < inherited <= sum(p.numel() for p in child.parameters())


def test_the_store_keeps_the_best_and_the_most_recent(tmp_path: Path) -> None:
    store = WeightStore(tmp_path / "weights", keep=2)
    weights = {"w": torch.ones(3)}
    for name, score in [("a", 0.9), ("b", 0.1), ("c", 0.2), ("d", None), ("e", 0.3)]:
        store.put(name, weights, score)
    # best two: a, e; most recent two: d, e
    assert sorted(store.index) == ["a", "d", "e"]
    assert sorted(p.stem for p in (tmp_path / "weights").glob("*.pt")) == ["a", "d", "e"]
    assert torch.equal(store.get("a")["w"], weights["w"])  # type: ignore[index]
    assert store.get("b") is None
    again = WeightStore(tmp_path / "weights", keep=2)  # a resumed search reads the index
    assert again.index == store.index
    again.put("f", weights, 0.0)
    assert sorted(again.index) == ["a", "e", "f"]
    again.clear()
    assert not (tmp_path / "weights").exists() and again.get("a") is None


def test_weights_that_cannot_be_written_cost_nothing_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = WeightStore(tmp_path / "weights", keep=2)
    store.put("a", {"w": torch.ones(1)}, 0.5)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with caplog.at_level(logging.WARNING):
        store.put("b", {"w": torch.zeros(1)}, 0.9)
    assert "No space left on device" in caplog.text
    assert list(store.index) == ["a"] and store.get("a") is not None
    assert not list((tmp_path / "weights").glob("*.partial"))


def test_weights_are_never_part_of_a_record_and_a_lineage_survives_a_resume() -> None:
    space = ChainSpace()
    rng = np.random.default_rng(1)
    parent, child = space.sample(rng), space.sample(rng)
    evaluation = Evaluation("ok", 0.5, inherited=7, weights={"w": torch.ones(2)})
    record = evaluation.to_json()
    assert "weights" not in record and record["inherited"] == 7
    assert Evaluation.from_json(record) == Evaluation("ok", 0.5, inherited=7)
    lineage = Lineage(parent, (("wider", 0, 3), ("deeper", 1, 4)))
    task = Task(3, child, 11, lineage=lineage, weights={"w": torch.ones(2)})
    data = json.loads(json.dumps(_task_json(task)))
    assert _task_from_json(data, space) == task  # weights are attached again at submission


def test_morphism_children_name_their_parents_and_their_morphisms() -> None:
    space = ChainSpace(max_layers=8, filters=(16, 32, 64, 128))
    strategy = Morphism(space, budget=20, seed=0, children=3, morphisms=2)
    strategy.input_shape = SHAPE
    start = strategy.ask()
    assert start is not None and strategy.lineage(start) is None  # trained from scratch
    strategy.tell(start, Evaluation("ok", 0.5))
    children = [strategy.ask() for _ in range(3)]
    for child in children:
        assert child is not None
        lineage = strategy.lineage(child)
        assert lineage is not None and lineage.parent == start
        assert 1 <= len(lineage.morphisms) <= 2
    # The generation closes on its third child: the best child beats the start.
    for child, score in zip(children, (0.4, 0.7, 0.6), strict=True):
        assert child is not None
        strategy.tell(child, Evaluation("ok", score))
    assert strategy.incumbent == (children[1], 0.7) and strategy.generation == 1
    nxt = strategy.ask()
    assert nxt is not None
    assert strategy.lineage(nxt).parent == children[1]  # type: ignore[union-attr]
    # No child beats the incumbent: it stays.
    strategy.tell(nxt, Evaluation("failed"))
    assert strategy.incumbent == (children[1], 0.7)


def test_morphism_on_a_cell_space_mutates_and_inherits_by_name() -> None:
    strategy = Morphism(NB201Space(), budget=10, seed=0, children=2)
    start = strategy.ask()
    assert start is not None
    strategy.tell(start, Evaluation("ok", 0.5))
    child = strategy.ask()
    assert child is not None
    assert strategy.lineage(child) == Lineage(start)


def test_evolution_inherits_only_when_asked_to() -> None:
    space = ChainSpace()
    plain = RegularizedEvolution(space, 30, population_size=2, sample_size=2)
    inheriting = RegularizedEvolution(
        space, 30, population_size=2, sample_size=2, inherit_weights=True
    )
    for strategy in (plain, inheriting):
        for score in (0.1, 0.2):
            arch = strategy.ask()
            assert arch is not None and strategy.lineage(arch) is None  # random members
            strategy.tell(arch, Evaluation("ok", score))
    assert plain.lineage(plain.ask()) is None  # type: ignore[arg-type]
    mutant = inheriting.ask()
    assert mutant is not None
    lineage = inheriting.lineage(mutant)
    assert lineage is not None and lineage.morphisms == ()
    assert lineage.parent in [arch for arch, _ in inheriting.population]
    assert (plain.weights_kept(), inheriting.weights_kept()) == (0, 2)


def _morphism_cfg(tmp_path: Path, prepared_digits: Path, *more: str) -> DictConfig:
    return compose_config(
        [
            "strategy=morphism",
            "strategy.budget=5",
            "strategy.children=2",
            "strategy.morphisms=2",
            "estimator.epochs=1",
            "search_space.max_layers=4",
            f"paths.prepared={prepared_digits}",
            f"paths.search={tmp_path / 'search'}",
            f"paths.checkpoints={tmp_path / 'checkpoints'}",
            f"tracking.uri={tracking_store(tmp_path)}",
            f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
            *more,
        ]
    )


@pytest.mark.slow
def test_a_morphism_search_passes_weights_on_and_tracks_each_parent(
    tmp_path: Path, prepared_digits: Path
) -> None:
    from mlflow.tracking import MlflowClient

    cfg = _morphism_cfg(tmp_path, prepared_digits)
    search.run(cfg)
    history = [json.loads(line) for line in (tmp_path / "search" / "history.jsonl").open()]
    assert len(history) == 5
    assert history[0]["parent"] is None and history[0]["inherited"] is None
    by_id = {record["id"]: record for record in history}
    for record in history[1:]:
        assert record["parent"] in by_id, "a child of a candidate evaluated before it"
        assert 0 < record["inherited"] <= record["params"]
    # The kept weights: children=2 by default, so the 2 best and the 2 most recent.
    kept = list((tmp_path / "checkpoints").glob("*.weights/*.pt"))
    assert 2 <= len(kept) <= 4
    client = MlflowClient(cfg.tracking.uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
        filter_string="tags.`nasflow.iteration` != ''",
    )
    run_of = {run.data.tags["nasflow.arch_id"]: run for run in runs}
    for record in history[1:]:
        run = run_of[record["id"]]
        assert run.data.tags["nasflow.parent_run_id"] == run_of[record["parent"]].info.run_id
        assert run.data.metrics["inherited_params"] == record["inherited"]
    assert "nasflow.parent_run_id" not in run_of[history[0]["id"]].data.tags


def test_an_inheriting_strategy_needs_kept_weights(tmp_path: Path, prepared_digits: Path) -> None:
    cfg = _morphism_cfg(tmp_path, prepared_digits, "search.keep_weights=0")
    with pytest.raises(NasflowError, match=r"search.keep_weights=0, but strategy=morphism"):
        search.run(cfg)
