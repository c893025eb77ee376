"""One-shot strategies in the search stage: the derived architecture is written as a
discrete search writes its best, and retrain and evaluate run on it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nasflow.errors import NasflowError
from nasflow.search_spaces import NB201Space
from nasflow.stages import evaluate, retrain, search
from tests.conftest import compose_config, tracking_store


def stage_config(tmp_path: Path, prepared: Path, *overrides: str) -> object:
    return compose_config(
        [
            "search_space=nb201",
            "search_space.channels=4",
            "search_space.cells_per_stage=1",
            "strategy.epochs=1",
            "strategy.channels=4",
            "strategy.cells=1",
            "retrain.epochs=1",
            f"paths.prepared={prepared}",
            f"paths.search={tmp_path / 'search'}",
            f"paths.retrain={tmp_path / 'retrain'}",
            f"paths.evaluate={tmp_path / 'evaluate'}",
            f"tracking.uri={tracking_store(tmp_path)}",
            f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
            *overrides,
        ]
    )


# GDAS and DrNAS differ from darts only in the relaxation, which test_oneshot_search.py
# runs on both spaces; here the stage's two kinds of one-shot search.
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["darts", "enas"])
def test_one_shot_search_writes_what_retrain_reads(
    strategy: str, tmp_path: Path, prepared_digits: Path
) -> None:
    cfg = stage_config(tmp_path, prepared_digits, f"strategy={strategy}")
    summary = search.run(cfg)
    assert summary["epochs"] == 1 and 0 <= summary["best_score"] <= 1
    best = json.loads((tmp_path / "search" / "best_architecture.json").read_text())
    arch = NB201Space(channels=4, cells_per_stage=1).from_json(best["architecture"])
    assert best["score"] == summary["best_score"]
    history = (tmp_path / "search" / "history.jsonl").read_text().splitlines()
    if strategy != "enas":  # ENAS's result is the best of its final samples, not an epoch's
        assert json.loads(history[0])["arch_description"] == arch.describe()
    # What the NB201 table says of the derived cell, per epoch and in the summary.
    reference = NB201Space().reference(arch)
    assert 10 <= summary["nb201_cifar10_test_acc"] <= 95
    assert summary["nb201_cifar10_test_acc"] == reference["nb201_cifar10_test_acc"]
    assert 0 <= summary["nb201_top_percent"] < 100
    assert "nb201_cifar10_test_acc" in json.loads(history[0])

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.data.tags["nasflow.strategy"] == strategy
    logged = {"val_acc", "entropy", "parameter_free", "final_best_score", "nb201_top_percent"}
    assert logged <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"alphas.png", "oneshot.json", "best_architecture.json"} <= artifacts

    if strategy == "darts":  # retrain and evaluate take the one-shot result unchanged
        assert retrain.run(cfg)["params"] > 0
        assert 0 <= evaluate.run(cfg)["test_acc"] <= 1


def test_one_shot_needs_a_space_with_a_supernet(tmp_path: Path, prepared_digits: Path) -> None:
    cfg = stage_config(tmp_path, prepared_digits, "strategy=darts")
    cfg.search_space = compose_config(["search_space=chain"]).search_space
    with pytest.raises(Exception) as raised:
        search.run(cfg)
    cause = raised.value.__cause__ if raised.value.__cause__ is not None else raised.value
    assert isinstance(cause, NasflowError)
    assert "needs a supernet; search_space 'chain' has none" in str(cause)
