"""The MLflow UI opens nasflow's experiments on their runs, not on the GenAI view: the
experiment carries MLflow's experiment-kind tag for model training."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from nasflow.tracking.mlflow_tracker import EXPERIMENT_KIND_TAG, MlflowTracker


def test_a_new_experiment_is_tagged_as_model_training(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowTracker(uri, "fresh", str(tmp_path / "artifacts"))
    found = MlflowClient(uri).get_experiment_by_name("fresh")
    assert found is not None
    assert found.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_an_older_untagged_experiment_gets_the_tag_and_a_chosen_kind_stays(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.create_experiment("old")
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    MlflowTracker(uri, "old")
    MlflowTracker(uri, "chosen")
    assert client.get_experiment_by_name("old").tags[EXPERIMENT_KIND_TAG] == (  # type: ignore[union-attr]
        "custom_model_development"
    )
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
