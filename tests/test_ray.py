"""executor=ray: the same search as a local one with one worker, a retry when a worker
dies, and nothing evaluated twice when the driver is killed with candidates in flight.

Every test joins the session's one Ray instance (`ray_address`), as a user joins a
cluster with executor.address.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from nasflow.executors import LocalExecutor, RayExecutor
from nasflow.inheritance import WeightStore
from nasflow.loop import Candidate, run_search
from nasflow.records import EvaluateFn, Evaluation, Task
from nasflow.search_spaces import ChainSpace
from nasflow.training import InMemoryData
from tests import launch
from tests.conftest import TINY, compose_config, tracking_store

# All end-to-end, so run first and together: the module's Ray job then serves them all.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

# What differs between two runs of the same search besides its results: wall times.
TIMES = ("seconds", "elapsed")


def search(
    prepared: Path,
    executor: Any,
    epochs: int = 4,
    budget: int = 3,
    more: tuple[str, ...] = (),
    **hooks: Any,
) -> list[Candidate]:
    cfg = compose_config([*TINY, f"estimator.epochs={epochs}", f"strategy.budget={budget}", *more])
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


@pytest.fixture(scope="module")
def ray_job(ray_address: str) -> Iterator[str]:
    """This test process joined to the session's Ray instance once, for all the searches
    of this module: Ray's worker processes (each imports torch and Lightning, seconds on
    two cores) then serve them all, as they serve one search."""
    import ray

    ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)  # fmt: skip
    yield ray_address
    ray.shutdown()


@pytest.fixture(scope="module")
def undisturbed(prepared_digits: Path) -> list[Candidate]:
    """The module's search in this process, one candidate at a time."""
    torch.set_num_threads(1)
    return search(prepared_digits, LocalExecutor())


# What depends on the order candidates finish in: their place and the search's totals.
PLACE = ("iteration", "proposals", "best_score", "total_cost")


def by_proposal(history: list[Candidate]) -> dict[int, dict[str, Any]]:
    """Each proposal's own result, whatever place it finished in."""
    records = {}
    for record in results(history):
        for key in PLACE:
            record.pop(key)
        records[record.pop("proposal")] = record
    return records


def test_one_ray_worker_is_the_local_search(
    prepared_digits: Path, ray_job: str, undisturbed: list[Candidate]
) -> None:
    remote = search(prepared_digits, RayExecutor(workers=1, address=ray_job))
    assert results(remote) == results(undisturbed)
    assert [c.evaluation.status for c in remote] == ["ok"] * 3


def test_a_worker_killed_mid_candidate_is_retried_and_the_search_completes(
    prepared_digits: Path, ray_job: str, undisturbed: list[Candidate], caplog: Any
) -> None:
    # One worker: the one the search before started, so no worker but the replacement
    # starts (each imports torch and Lightning), and none competes with the one killed.
    killed: list[int] = []
    executor = RayExecutor(workers=1, address=ray_job, max_retries=1, poll_seconds=0.05)

    def kill_one(task: Task, record: dict[str, Any]) -> None:
        if not killed and task.iteration == 0:  # the first epoch of the first candidate
            _, pid = executor.placement[0]  # the worker training it
            psutil.Process(pid).kill()
            killed.append(pid)

    with caplog.at_level(logging.INFO, logger="nasflow.search"):
        history = search(prepared_digits, executor, on_epoch=kill_one)
    assert killed
    assert "#1 runs again (its worker died)" in caplog.text  # killed mid-candidate
    # The retry trained the killed candidate again, with its own seed: the same results
    # as an undisturbed search.
    assert [c.evaluation.status for c in history] == ["ok"] * 3
    assert by_proposal(history) == by_proposal(undisturbed)


def test_children_get_their_parents_weights_on_a_ray_worker(
    prepared_digits: Path, ray_job: str, tmp_path: Path
) -> None:
    # A start and two children, each made by a morphism of it: the children's tasks carry
    # the start's trained weights to the worker and bring their own back.
    more = ("strategy=morphism", "strategy.children=2", "strategy.morphisms=1")
    runs = {}
    for name, executor in (("local", LocalExecutor()), ("ray", RayExecutor(1, address=ray_job))):
        store = WeightStore(tmp_path / name, keep=3)
        runs[name] = search(prepared_digits, executor, 1, 3, more, weights=store)
    remote = runs["ray"]
    assert [c.evaluation.status for c in remote] == ["ok"] * 3
    assert [c.parent for c in remote] == [None, remote[0].arch.id, remote[0].arch.id]
    assert all(c.evaluation.inherited for c in remote[1:])
    assert results(remote) == results(runs["local"])  # the same weights, the same training
    assert {p.stem for p in (tmp_path / "ray").glob("*.pt")} == {c.arch.id for c in remote}


# Before the tests whose workers die: it trains on the worker the tests above left (one
# that has loaded torch and Lightning) and one more, not on two new ones.
def test_a_constrained_multi_objective_search_on_two_workers_trains_nothing_over_the_bound(
    prepared_digits: Path, ray_job: str
) -> None:
    """The screen measures each proposal in the driver before it is submitted; the
    workers' evaluations come back with the driver's measures added."""
    from nasflow.constraints import Screen, parse_constraints
    from nasflow.measure import cheap_measures

    cfg = compose_config(
        [*TINY, "estimator.epochs=1", "strategy=mo_evolution", "strategy.budget=4"]
    )
    data = InMemoryData.load(prepared_digits, ("train", "val"))
    info = data.info
    space = instantiate(cfg.search_space)
    strategy = instantiate(cfg.strategy, space=space)
    estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))

    def measure(arch: Any, names: Any) -> dict[str, float]:
        build = lambda: space.build(arch, info.input_shape, info.num_classes)  # noqa: E731
        return cheap_measures(build, info.input_shape, names, {"repeats": 3, "warmup": 1})

    screen = Screen(measure, parse_constraints(["params<=20000"]), ["params", "latency_ms"])
    with RayExecutor(workers=2, address=ray_job) as executor:
        history = run_search(strategy, estimator, executor, cfg.seed, screen=screen)
    assert len(history) == 4
    assert all(c.evaluation.params is not None and c.evaluation.params <= 20000 for c in history)
    assert all(c.evaluation.metrics["latency_ms"] > 0 for c in history)
    assert all(r["params"] > 20000 for r in screen.filtered)
    proposals = {c.proposal for c in history} | {r["proposal"] for r in screen.filtered}
    assert proposals == set(range(max(proposals) + 1))


def dying() -> EvaluateFn:
    """A candidate whose worker process dies, as one the kernel's OOM killer takes. A
    function made here is pickled by value: the worker needs no test module (nor the
    training stack) to run it."""

    def die(task: Task) -> Evaluation:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    return die


@pytest.mark.parametrize("retries", [0, 1])
def test_a_candidate_whose_worker_keeps_dying_is_recorded_failed_with_the_reason(
    ray_job: str, retries: int
) -> None:
    arch = ChainSpace(max_layers=1).sample(np.random.default_rng(0))
    executor = RayExecutor(workers=1, address=ray_job, max_retries=retries)
    with executor:
        executor.submit(dying(), Task(0, arch, seed=1))
        [(task, evaluation)] = executor.wait()
    assert task.iteration == 0
    assert evaluation.status == "failed"
    assert f"the worker died (WorkerCrashedError; after {retries} retries)" in (
        evaluation.error or ""
    )


def checkpoint_state(folder: Path) -> dict[str, Any] | None:
    for path in folder.glob("search-*.pt"):
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # being replaced: read it next time
            return None
    return None


def test_a_driver_killed_with_two_in_flight_evaluates_each_candidate_once(
    tmp_path: Path, prepared_digits: Path, ray_address: str
) -> None:
    budget = 5  # 2 finished and 2 in flight at the kill, and one more after it
    command = launch.stage(
        "search",
        *[o for o in TINY if not o.startswith(("estimator.epochs", "strategy.budget"))],
        "estimator.epochs=2",
        f"strategy.budget={budget}",
        "executor=ray",
        "executor.workers=2",
        f"executor.address={ray_address}",
        f"paths.prepared={prepared_digits}",
        f"paths.search={tmp_path / 'search'}",
        f"paths.checkpoints={tmp_path / 'checkpoints'}",
        f"tracking.uri={tracking_store(tmp_path)}",
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
