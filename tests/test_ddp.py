"""A retrain on several devices (Lightning's ddp): here two CPU processes over gloo, as it
would be one process per GPU. Its checkpoint is the one evaluate reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from nasflow.artifacts import architecture_record, write_json
from tests import launch
from tests.conftest import compose_config, tracking_store

# The reference run's best digits architecture (results/search/best_architecture.json).
ARCHITECTURE = {
    "layers": [
        {"op": "conv", "filters": 64, "kernel_h": 3, "kernel_w": 3, "skip": True},
        {"op": "max_pool"},
        {"op": "conv", "filters": 32, "kernel_h": 3, "kernel_w": 3, "skip": False},
    ]
}


@pytest.mark.slow
def test_a_ddp_retrain_on_two_processes_is_evaluated_as_any(
    tmp_path: Path, all_digits: Path
) -> None:
    from nasflow.stages import evaluate

    overrides = [
        f"paths.prepared={all_digits}",
        f"paths.search={tmp_path / 'search'}",
        f"paths.retrain={tmp_path / 'retrain'}",
        f"paths.evaluate={tmp_path / 'evaluate'}",
        f"tracking.uri={tracking_store(tmp_path)}",
        f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
        "retrain.epochs=4",  # 351 of the 360 test images
    ]
    cfg = compose_config(overrides)
    space = instantiate(cfg.search_space)
    record = architecture_record(space, space.from_json(ARCHITECTURE), search_run_id=None)
    write_json(tmp_path / "search" / "best_architecture.json", record)

    command = launch.stage("retrain", *overrides, "retrain.devices=2", "retrain.strategy=ddp")
    result = launch.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    # Lightning started a second process, which joined the first.
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    # The first process alone wrote the outputs (no second process's staging left) and
    # tracked the run.
    assert sorted(p.name for p in (tmp_path / "retrain").iterdir()) == [
        ".nasflow.lock",
        "metrics.json",
        "model.ckpt",
        "model.json",
    ]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FINISHED"]
    epochs = client.get_metric_history(runs[0].info.run_id, "epoch")
    assert sorted({int(m.value) for m in epochs}) == list(range(4))

    metrics = evaluate.run(cfg)
    assert metrics["test_acc"] >= 0.95
    assert json.loads((tmp_path / "evaluate" / "metrics.json").read_text())["test_acc"] >= 0.95
