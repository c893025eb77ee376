"""All four stages end to end on a tiny config, and what they leave in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from nasflow.measure import count_params
from nasflow.search_spaces import NB201Space
from nasflow.stages import evaluate, retrain, search

pytestmark = pytest.mark.slow


@pytest.fixture
def finished_pipeline(tiny_cfg: DictConfig) -> DictConfig:
    search.run(tiny_cfg)
    retrain.run(tiny_cfg)
    evaluate.run(tiny_cfg)
    return tiny_cfg


def test_stages_hand_their_artefacts_on(finished_pipeline: DictConfig) -> None:
    cfg = finished_pipeline
    search_dir, retrain_dir, eval_dir = (
        Path(cfg.paths[k]) for k in ("search", "retrain", "evaluate")
    )
    best = json.loads((search_dir / "best_architecture.json").read_text())
    history = [json.loads(line) for line in (search_dir / "history.jsonl").read_text().splitlines()]
    assert len(history) == 3
    assert best["id"] == max(history, key=lambda c: c["score"] or -1)["id"]
    assert best["space"] == "chain" and best["search_run_id"]
    assert (search_dir / "progress.csv").read_text().startswith("iteration,score,best_score")

    model = json.loads((retrain_dir / "model.json").read_text())
    assert model["id"] == best["id"] and model["retrain_run_id"]
    assert (retrain_dir / "model.ckpt").stat().st_size > 0

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert set(metrics["per_class_acc"]) == {str(d) for d in range(10)}
    confusion = json.loads((eval_dir / "confusion_matrix.json").read_text())
    assert sum(map(sum, confusion["matrix"])) == 360  # every test image, once
    rows = (eval_dir / "predictions.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 361


def test_mlflow_holds_the_search_its_candidates_and_the_linked_runs(
    finished_pipeline: DictConfig,
) -> None:
    cfg = finished_pipeline
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    by_stage = {}
    for run in runs:
        by_stage.setdefault(run.data.tags.get("nasflow.stage"), []).append(run)

    (parent,) = by_stage["search"]
    tags = parent.data.tags
    assert tags["nasflow.strategy"] == "random" and tags["nasflow.search_space"] == "chain"
    assert tags["nasflow.dataset"] == "digits" and tags["nasflow.seed"] == "0"
    assert "mlflow.source.git.commit" in tags
    assert parent.info.status == "FINISHED"

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 3, "one child run per evaluated candidate"
    for child in children:
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert "architecture.json" in artifacts
        assert "diagram.svg" in artifacts
        assert child.data.params["arch.id"] == child.data.tags["nasflow.arch_id"]
        assert {"score", "params", "flops", "train_seconds", "val_acc", "train_loss"} <= set(
            child.data.metrics
        )
        # Per-epoch metrics are a history, one value per epoch.
        assert len(client.get_metric_history(child.info.run_id, "val_acc")) == cfg.estimator.epochs

    for key in ("best_score", "elapsed_seconds", "candidate_score"):
        steps = [m.step for m in client.get_metric_history(parent.info.run_id, key)]
        assert sorted(steps) == [0, 1, 2], f"{key} is logged at every iteration"

    (retrain_run,) = by_stage["retrain"]
    (evaluate_run,) = by_stage["evaluate"]
    assert retrain_run.data.tags["nasflow.search_run_id"] == parent.info.run_id
    assert evaluate_run.data.tags["nasflow.search_run_id"] == parent.info.run_id
    assert evaluate_run.data.tags["nasflow.retrain_run_id"] == retrain_run.info.run_id
    assert "test_acc" in evaluate_run.data.metrics
    models = client.search_logged_models([experiment.experiment_id])
    assert any(m.source_run_id == retrain_run.info.run_id for m in models)


def test_a_cell_found_small_is_retrained_and_evaluated_stacked_larger(
    tiny_cfg: DictConfig,
) -> None:
    from tests.conftest import compose_config

    cfg = compose_config(
        [
            "search_space=nb201",
            "search_space.channels=4",
            "search_space.cells_per_stage=1",
            "+retrain.search_space.cells_per_stage=2",
            "strategy.budget=2",
            "estimator.epochs=1",
            "retrain.epochs=1",
            "tracking=none",
            *[f"paths.{key}={path}" for key, path in tiny_cfg.paths.items()],
        ]
    )
    search.run(cfg)
    retrained = retrain.run(cfg)
    model = json.loads((Path(cfg.paths.retrain) / "model.json").read_text())
    assert model["space"] == "nb201"
    assert model["search_space"]["cells_per_stage"] == 2 and model["search_space"]["channels"] == 4
    # Evaluate builds the network retrain trained (twice the cells), or its weights would
    # not load.
    assert evaluate.run(cfg)["test_acc"] >= 0.0
    best = json.loads((Path(cfg.paths.search) / "best_architecture.json").read_text())
    searched = NB201Space(channels=4, cells_per_stage=1).from_json(best["architecture"])
    small = count_params(NB201Space(channels=4, cells_per_stage=1).build(searched, (1, 8, 8), 10))
    assert retrained["params"] > small
