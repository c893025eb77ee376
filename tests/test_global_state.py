"""Library code changes nothing process-wide: building and running a strategy (TPE, with
Optuna), an estimator (Lightning training) and a tracker (MLflow) leaves the logging
levels, the warning filters, matplotlib's backend and Optuna's verbosity as they were.
Only the entry points (`nasflow.cli.configure_logging`) set them."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import optuna
import pytorch_lightning  # noqa: F401  (imported first: their own imports set their loggers)
import sqlalchemy  # noqa: F401  (MLflow's store)
from mlflow.tracking import MlflowClient

from nasflow.estimators.training import TrainingEstimator
from nasflow.executors import LocalExecutor
from nasflow.loop import run_search
from nasflow.search_spaces import ChainSpace
from nasflow.search_strategies.tpe import TPESearch
from nasflow.tracking.mlflow_tracker import MlflowTracker
from nasflow.training import InMemoryData
from tests.conftest import compose_config


def _global_state() -> dict[str, Any]:
    loggers = logging.root.manager.loggerDict
    return {
        "levels": {
            name: logger.level
            for name, logger in [("", logging.root), *loggers.items()]
            if isinstance(logger, logging.Logger)
        },
        "filters": list(warnings.filters),
        "backend": matplotlib.get_backend(),
        "optuna": optuna.logging.get_verbosity(),
    }


def test_library_objects_leave_the_process_settings_alone(
    tmp_path: Path, prepared_digits: Path
) -> None:
    from hydra.utils import instantiate

    cfg = compose_config(["estimator.epochs=1"])
    space = ChainSpace(min_layers=1, max_layers=2, ops=["conv", "dense"], filters=[8])
    data = InMemoryData.load(prepared_digits, ("train", "val"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # MLflow's own migrations, run once when a store is created, set their own loggers.
    MlflowClient(tracking_uri=uri).search_experiments()
    before = _global_state()
    strategy = TPESearch(space, budget=2, seed=0, n_startup_trials=1)
    estimator = TrainingEstimator(
        space, data, instantiate(cfg.trainer), instantiate(cfg.estimator.optimizer), epochs=1
    )
    tracker = MlflowTracker(uri, "state", str(tmp_path / "a"))
    with tracker.run("search", {}, {}):
        history = run_search(strategy, estimator, LocalExecutor(), 0, tracker.log_candidate)
    assert [c.evaluation.status for c in history] == ["ok", "ok"]
    after = _global_state()
    # A logger first created while running starts at NOTSET, which changes nothing.
    new = {k: v for k, v in after["levels"].items() if k not in before["levels"]}
    set_on_creation = {k: v for k, v in new.items() if v != logging.NOTSET}
    assert not set_on_creation
    after["levels"] = {k: v for k, v in after["levels"].items() if k in before["levels"]}
    assert after == before
