"""executor=ray: the same search as a local one with one worker, a retry when a worker
dies, and nothing evaluated twice when the driver is killed with candidates in flight.

Every test joins the session's one Ray instance (`ray_address`), as a user joins a
cluster with executor.address.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from nasflow.executors import LocalExecutor, RayExecutor
from nasflow.loop import Candidate, run_search
from nasflow.records import Task
from nasflow.training import InMemoryData
from tests import launch
from tests.conftest import TINY, compose_config

pytestmark = pytest.mark.usefixtures("one_thread")

# What differs between two runs of the same search besides its results: wall times.
TIMES = ("seconds", "elapsed")


def search(
    prepared: Path, executor: Any, epochs: int = 2, budget: int = 3, **hooks: Any
) -> list[Candidate]:
    cfg = compose_config([*TINY, f"estimator.epochs={epochs}", f"strategy.budget={budget}"])
    data = InMemoryData.load(prepared, ("train", "val"))
    space = instantiate(cfg.search_space)
    strategy = instantiate(cfg.strategy, space=space)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))
    with executor:
        return run_search(strategy, estimator, executor, cfg.seed, **hooks)


def results(history: list[Candidate]) -> list[dict[str, Any]]:
    """Each candidate's record without its wall times."""
    records = []
    for candidate in history:
        record = candidate.to_json()
        for key in TIMES:
            record.pop(key)
        records.append(record)
    return records


def test_one_ray_worker_is_the_local_search(prepared_digits: Path, ray_address: str) -> None:
    local = search(prepared_digits, LocalExecutor())
    remote = search(prepared_digits, RayExecutor(workers=1, address=ray_address))
    assert results(remote) == results(local)
    assert [c.evaluation.status for c in remote] == ["ok"] * 3


@pytest.mark.parametrize("retries", [1, 0])
def test_a_worker_killed_mid_candidate_is_retried_then_recorded_failed(
    prepared_digits: Path, ray_address: str, retries: int
) -> None:
    killed: list[int] = []
    executor = RayExecutor(workers=2, address=ray_address, max_retries=retries)

    def kill_one(task: Task, record: dict[str, Any]) -> None:
        if not killed and task.iteration == 0:  # the first epoch of the first candidate
            _, pid = executor.placement[0]  # the worker training it
            psutil.Process(pid).kill()
            killed.append(pid)

    history = search(prepared_digits, executor, epochs=6, budget=3, on_epoch=kill_one)
    assert killed
    assert len(history) == 3
    failed = [c for c in history if c.evaluation.status == "failed"]
    if retries:
        # The retry trained the killed candidate again, with its own seed: the same
        # results as an undisturbed search.
        assert not failed
        undisturbed = search(prepared_digits, LocalExecutor(), epochs=6, budget=3)
        by_proposal = {c.proposal: c for c in undisturbed}
        for candidate in history:
            assert candidate.evaluation.score == by_proposal[candidate.proposal].evaluation.score
    else:
        assert len(failed) == 1
        assert "the worker died" in (failed[0].evaluation.error or "")


def checkpoint_state(folder: Path) -> dict[str, Any] | None:
    for path in folder.glob("search-*.pt"):
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # being replaced: read it next time
            return None
    return None


@pytest.mark.slow
def test_a_driver_killed_with_two_in_flight_evaluates_each_candidate_once(
    tmp_path: Path, prepared_digits: Path, ray_address: str
) -> None:
    budget = 8
    command = launch.stage(
        "search",
        *[o for o in TINY if not o.startswith(("estimator.epochs", "strategy.budget"))],
        "estimator.epochs=6",
        f"strategy.budget={budget}",
        "executor=ray",
        "executor.workers=2",
        f"executor.address={ray_address}",
        f"paths.prepared={prepared_digits}",
        f"paths.search={tmp_path / 'search'}",
        f"paths.checkpoints={tmp_path / 'checkpoints'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
    )
    driver = launch.start(command)
    before: dict[str, Any] | None = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        state = checkpoint_state(tmp_path / "checkpoints")
        if state and len(state["history"]) >= 2 and len(state["in_flight"]) == 2:
            before = state
            break
        time.sleep(0.05)
    assert before is not None, f"never 2 finished and 2 in flight:\n{driver.stderr}"
    driver.send_signal(signal.SIGKILL)
    driver.wait()

    again = launch.run(command)
    assert again.returncode == 0, again.stderr
    assert "with 2 in flight to run again" in again.stdout + again.stderr
    history = [json.loads(line) for line in (tmp_path / "search" / "history.jsonl").open()]
    assert sorted(c["proposal"] for c in history) == list(range(budget))
    # The candidates finished before the kill were not trained again: their records,
    # wall times included, are the ones the killed driver saved.
    for old in before["history"]:
        assert old in history
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(client.search_experiments()[0].experiment_id.split())
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(int(c.data.tags["nasflow.proposal"]) for c in children) == list(range(budget))
    assert {c.info.status for c in children} == {"FINISHED"}
