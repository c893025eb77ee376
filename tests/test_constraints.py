"""Constraints checked before training: parsing, the loop's screen, resuming with it, and
the search stage on digits with a parameter bound and a measured latency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from omegaconf import DictConfig

from nasflow.constraints import Constraint, Screen, parse_constraints
from nasflow.errors import NasflowError
from nasflow.executors import LocalExecutor
from nasflow.loop import Checkpoint, run_search
from nasflow.measure import cheap_measures, latency_ms
from nasflow.pareto import front_mask
from nasflow.search_spaces.nb201 import NB201Space
from nasflow.search_strategies.mo_evolution import MultiObjectiveEvolution
from nasflow.stages import search
from tests.conftest import compose_config
from tests.test_resume import TableLikeEstimator, snapshot


def test_constraints_are_a_measure_a_comparison_and_a_number() -> None:
    assert parse_constraints(["params<=5e4", "latency_ms < 2.5", "flops>=1_000"]) == [
        Constraint("params", "<=", 5e4),
        Constraint("latency_ms", "<", 2.5),
        Constraint("flops", ">=", 1000.0),
    ]
    assert str(Constraint("params", "<=", 5e4)) == "params<=50000"
    assert Constraint("params", "<=", 5e4).holds(5e4)
    assert not Constraint("latency_ms", "<", 2.5).holds(2.5)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("val_acc>=0.9", "bounds 'val_acc', which is not measured before training; choose from"),
        ("params=5e4", "write each constraint as measure<=bound"),
        ("params<=lots", "write each constraint as measure<=bound"),
        ("params<=1e400", "the bound '1e400' is not a number"),
    ],
)
def test_a_bad_constraint_is_named_in_one_line(entry: str, expected: str) -> None:
    with pytest.raises(NasflowError, match=r"^search\.constraints ") as error:
        parse_constraints([entry])
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_latency_is_the_median_of_timed_passes_and_measuring_draws_no_random_numbers() -> None:
    space = NB201Space.tiny()
    arch = space.sample(np.random.default_rng(0))
    state = np.random.get_state()[1][:4].tolist()
    import torch

    before = torch.random.get_rng_state()
    found = cheap_measures(
        lambda: space.build(arch, (3, 8, 8), 10),
        (3, 8, 8),
        ["params", "flops", "latency_ms"],
        {"repeats": 5, "warmup": 1},
    )
    assert torch.equal(torch.random.get_rng_state(), before)
    assert np.random.get_state()[1][:4].tolist() == state
    assert found["params"] > 0 and found["flops"] > 0 and found["latency_ms"] > 0
    network = space.build(arch, (3, 8, 8), 10)
    assert latency_ms(network, (3, 8, 8), batch_size=4, repeats=3, warmup=0) > 0


SPACE = NB201Space(ops=["none", "skip_connect", "nor_conv_1x1"])  # 729 cells


def _screen() -> Screen:
    """Bounds the number of 1x1 convolutions, as a parameter bound would."""

    def measure(arch: Any, needed: Any) -> dict[str, float]:
        return {"params": float(sum(op == "nor_conv_1x1" for op in arch.edges))}

    return Screen(measure, parse_constraints(["params<=2"]), ["params"])


def _strategy() -> MultiObjectiveEvolution:
    return MultiObjectiveEvolution(SPACE, budget=40, seed=3, objectives=["score:max", "params:min"])


def test_no_infeasible_proposal_trains_and_a_resumed_search_filters_as_the_whole_did(
    tmp_path: Path,
) -> None:
    screen = _screen()
    estimator = TableLikeEstimator()
    whole = run_search(_strategy(), estimator, LocalExecutor(), 3, screen=screen)
    assert len(whole) == 40 == estimator.calls
    assert all(c.evaluation.params is not None and c.evaluation.params <= 2 for c in whole)
    assert screen.filtered and all(r["params"] > 2 for r in screen.filtered)
    assert all("breaks params<=2" in r["reason"] for r in screen.filtered)
    proposals = {c.proposal for c in whole} | {r["proposal"] for r in screen.filtered}
    assert proposals == set(range(whole[-1].proposals))  # every proposal is one or the other

    checkpoint = Checkpoint(tmp_path, "abc")
    with pytest.raises(KeyboardInterrupt):
        run_search(
            _strategy(), TableLikeEstimator(die_at=17), LocalExecutor(), 3,
            checkpoint=checkpoint, screen=_screen(),
        )  # fmt: skip
    saved = checkpoint.load()
    assert saved is not None
    again = _screen()
    resumed = run_search(
        _strategy(), TableLikeEstimator(), LocalExecutor(), 3,
        checkpoint=checkpoint, resumed=saved, screen=again,
    )  # fmt: skip
    assert snapshot(resumed) == snapshot(whole)
    assert again.filtered == screen.filtered


def test_constraints_that_nothing_meets_end_the_search_with_one_line() -> None:
    screen = Screen(
        lambda arch, needed: {"params": 10.0}, parse_constraints(["params<=1"]), ["params"]
    )
    strategy = MultiObjectiveEvolution(NB201Space(), budget=40, seed=3)
    with pytest.raises(
        NasflowError, match=r"^the last 1000 proposals all broke search\.constraints \(params<=1\)"
    ):
        run_search(strategy, TableLikeEstimator(), LocalExecutor(), 3, screen=screen)


def _front_is_non_dominated(front: list[dict[str, Any]], history: list[dict[str, Any]]) -> bool:
    points = np.array([[c["score"], -c["metrics"]["latency_ms"]] for c in history])
    on = front_mask(points, [True, True])
    return {c["iteration"] for c, f in zip(history, on, strict=True) if f} == {
        r["iteration"] for r in front
    }


@pytest.mark.slow
def test_the_search_stage_trains_nothing_over_the_bound_and_writes_the_front(
    tiny_cfg: DictConfig, tmp_path: Path
) -> None:
    cfg = compose_config(
        [
            "strategy=mo_evolution",
            "strategy.budget=5",
            "estimator.epochs=1",
            "search_space.max_layers=2",
            "search.objectives=[val_acc:max,latency_ms:min]",
            "++search.reference={val_acc:0,latency_ms:10}",
            'search.constraints=["params<=20000"]',
            "latency.repeats=5",
            f"paths.prepared={tiny_cfg.paths.prepared}",
            f"paths.search={tmp_path / 'search'}",
            f"paths.checkpoints={tmp_path / 'checkpoints'}",
            f"tracking.uri={tiny_cfg.tracking.uri}",
            f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
        ]
    )
    summary = search.run(cfg)
    out = tmp_path / "search"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    filtered = [json.loads(line) for line in (out / "filtered.jsonl").read_text().splitlines()]
    assert len(history) == 5 and all(c["params"] <= 20000 for c in history)
    assert all(c["metrics"]["latency_ms"] > 0 for c in history)
    assert summary["filtered"] == len(filtered) > 0
    assert all(r["params"] > 20000 and r["status"] == "filtered" for r in filtered)
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert summary["pareto_size"] == len(front) and _front_is_non_dominated(front, history)
    assert (
        (out / "pareto.csv")
        .read_text()
        .startswith("iteration,first_objective,second_objective,val_acc,latency_ms,description")
    )

    client = mlflow.tracking.MlflowClient(cfg.tracking.uri)
    runs = client.search_runs(client.get_experiment_by_name(cfg.tracking.experiment).experiment_id)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 5 and all(r.data.metrics.get("params", 0) <= 20000 for r in children)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    volumes = client.get_metric_history(parent.info.run_id, "hypervolume")
    assert len(volumes) == 5 and volumes[-1].value == pytest.approx(summary["hypervolume"])
    assert [v.value for v in volumes] == sorted(v.value for v in volumes)
    assert "pareto.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]


def test_a_search_names_one_objective_alone_as_an_error(tiny_cfg: DictConfig) -> None:
    tiny_cfg.search.objectives = ["val_acc:max"]
    with pytest.raises(NasflowError, match=r"search\.objectives names one objective"):
        search.run(tiny_cfg)
