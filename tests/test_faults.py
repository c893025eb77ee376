"""Nothing lost, nothing wrong, nothing silent: what a kill, Ctrl-C, a bad path, a dead
tracking store or a full disk does to each stage.

Each case is what a user runs into: the stage ends with one line saying what happened
and what was kept, the exit status a shell expects (2 for a bad input, 130 for Ctrl-C,
143 for SIGTERM), no output half-written, and an MLflow store without duplicates or runs
left RUNNING.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient

from nasflow.artifacts import architecture_record, write_json
from nasflow.errors import NasflowError
from nasflow.estimators import NB201TableEstimator, SuccessiveHalving
from nasflow.executors import Executor, LocalExecutor
from nasflow.interrupts import Interrupted
from nasflow.locks import LOCK_NAME, ProcessLock
from nasflow.loop import Checkpoint, Stopping, run_search
from nasflow.records import Evaluation, Task
from nasflow.search_spaces import NB201Space
from nasflow.search_strategies.random import RandomSearch
from nasflow.tracking import OWNER_TAG, TrackingError
from nasflow.tracking.mlflow_tracker import MlflowTracker, _store_errors
from nasflow.tracking.store import check_store
from tests import launch
from tests.conftest import TINY, compose_config, tracking_store
from tests.test_cli import assert_one_line_error, run_stage
from tests.test_failures import Failing

SPACE = NB201Space()

# Candidates that train for a second or two each: long enough to be interrupted mid-fit.
SLOW = [o for o in TINY if not o.startswith("estimator.epochs")] + ["estimator.epochs=6"]


def paths(tmp_path: Path, prepared: Path) -> list[str]:
    return [
        f"paths.prepared={prepared}",
        f"paths.search={tmp_path / 'search'}",
        f"paths.retrain={tmp_path / 'retrain'}",
        f"paths.evaluate={tmp_path / 'evaluate'}",
        f"paths.checkpoints={tmp_path / 'checkpoints'}",
        f"tracking.uri={tracking_store(tmp_path)}",
        f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
    ]


def runs(tmp_path: Path) -> list[Any]:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return list(client.search_runs([e.experiment_id for e in client.search_experiments()]))


def outputs(folder: Path) -> dict[str, bytes]:
    """A stage's output files (not its lock) and their contents."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def wait_for_checkpoint(
    folder: Path, process: launch.Started, candidates: int = 0, evaluations: int = 0
) -> dict[str, Any]:
    """Wait until the search's checkpoint holds `candidates` finished candidates and
    `evaluations` finished evaluations of the round in progress; the checkpoint."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        for path in folder.glob("search-*.pt"):
            try:
                state = torch.load(path, weights_only=False)
            except Exception:
                continue
            if len(state["history"]) >= candidates and len(state["round"]) >= evaluations:
                return state
        time.sleep(0.1)
    raise AssertionError(f"the search ended first: {process.poll()}")


# -- 1. outputs as a set ----------------------------------------------------------------


def config(tmp_path: Path, prepared: Path, *overrides: str) -> Any:
    """The tiny pipeline's config, writing under `tmp_path`, with a searched architecture
    in place (a random one: what retrain and evaluate do with it does not depend on it)."""
    cfg = compose_config([*TINY, *paths(tmp_path, prepared), *overrides])
    space = instantiate(cfg.search_space)
    arch = RandomSearch(space, 1, seed=0).ask()
    assert arch is not None
    record = architecture_record(space, arch, score=0.5, search_run_id=None)
    write_json(tmp_path / "search" / "best_architecture.json", record)
    return cfg


def test_a_retrain_that_fails_after_training_leaves_the_previous_model(
    tmp_path: Path, prepared_digits: Path
) -> None:
    """The model, its metrics and model.json change together or not at all, and evaluate
    refuses a checkpoint that is not the one model.json describes."""
    from nasflow.stages import evaluate, retrain

    cfg = config(tmp_path, prepared_digits)
    retrain.run(cfg)
    retrained = tmp_path / "retrain"
    before = outputs(retrained)
    assert {"model.ckpt", "model.json", "metrics.json"} <= set(before)

    # The artifact store fails after training (MLflow's model logging, here a file where
    # the artifact folder should be).
    (tmp_path / "blocked").write_text("")
    failing = config(
        tmp_path,
        prepared_digits,
        f"tracking.artifact_location={tmp_path / 'blocked' / 'x'}",
        "tracking.experiment=other",
    )
    with pytest.raises(TrackingError, match=r"the tracking store .* failed"):
        retrain.run(failing)
    assert outputs(retrained) == before, "a failed retrain changed its outputs"
    assert not list(retrained.glob(".staging-*")), "nothing is left aside"
    retrains = [r for r in runs(tmp_path) if r.data.tags.get("nasflow.stage") == "retrain"]
    assert sorted(r.info.status for r in retrains) == ["FAILED", "FINISHED"]

    # A checkpoint swapped for another network's: evaluate refuses it.
    checkpoint = retrained / "model.ckpt"
    state = torch.load(checkpoint, weights_only=False)
    state["state_dict"] = {k: torch.zeros_like(v) for k, v in state["state_dict"].items()}
    torch.save(state, checkpoint)
    with pytest.raises(NasflowError) as error:
        evaluate.run(cfg)
    assert f"{checkpoint} is not the checkpoint" in str(error.value)
    assert "run the retrain stage again" in str(error.value)

    # A truncated one, model.json pinning it (as after a copy cut short).
    checkpoint.write_bytes(before["model.ckpt"][:1000])
    record = json.loads(before["model.json"])
    record["checkpoint_sha256"] = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    (retrained / "model.json").write_text(json.dumps(record))
    with pytest.raises(NasflowError, match=re.escape(f"{checkpoint} cannot be read")):
        evaluate.run(cfg)
    assert not (tmp_path / "evaluate").exists()


def test_output_paths_are_checked_before_any_work(tmp_path: Path, prepared_digits: Path) -> None:
    from nasflow.stages import evaluate, retrain, search

    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    for key, stage in (
        ("paths.search", search),
        ("paths.checkpoints", search),
        ("paths.retrain", retrain),
        ("paths.evaluate", evaluate),
    ):
        cfg = config(tmp_path, prepared_digits, f"{key}={blocker / 'x'}")
        with pytest.raises(NasflowError) as error:
            stage.run(cfg)
        assert (
            str(error.value)
            == f"{key}={blocker / 'x'} is not a writable folder: {blocker} is a file"
        )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()] == ["Default"], "nothing was started"
    # Through the entry point: one line, exit 2, in the seconds start-up takes.
    result = run_stage(
        "search", *TINY, *paths(tmp_path, prepared_digits), f"paths.search={blocker / 'x'}"
    )
    assert_one_line_error(result, f"paths.search={blocker / 'x'} is not a writable folder")


# -- 2. interrupts ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "status", "rerun"), [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)]
)
def test_an_interrupt_inside_training_says_what_was_kept_and_the_run_is_killed(
    sig: signal.Signals, status: int, rerun: bool, tmp_path: Path, prepared_digits: Path
) -> None:
    command = launch.stage("search", *SLOW, *paths(tmp_path, prepared_digits))
    process = launch.start(command)
    wait_for_checkpoint(tmp_path / "checkpoints", process, candidates=1)
    time.sleep(0.5)  # inside the second candidate's Trainer.fit
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"interrupted ({sig.name}); the checkpoint ")
    assert "run the search again to resume" in lines[0]
    (parent,) = [r for r in runs(tmp_path) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"
    if not rerun:  # the same path as SIGINT's from here on
        return

    again = launch.run(command)
    assert again.returncode == 0, again.stderr
    resumed = re.search(r"resuming after (\d+) finished candidates", again.stdout + again.stderr)
    assert resumed and int(resumed.group(1)) >= 1
    every = runs(tmp_path)
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(int(c.data.tags["nasflow.iteration"]) for c in children) == [0, 1, 2]
    assert {c.info.status for c in children} == {"FINISHED"}


@pytest.mark.slow
def pause_outside_writes(process: launch.Started, database: Path) -> None:
    """SIGSTOP `process` at a moment it is not writing to the SQLite `database` (a
    search records each epoch as it trains): paused inside a write, it would hold the
    store's lock for as long as it is paused."""
    import sqlite3

    for _ in range(100):
        process.send_signal(signal.SIGSTOP)
        try:
            with sqlite3.connect(database, timeout=0) as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.rollback()
            return
        except sqlite3.OperationalError:  # locked: let it finish the write
            process.send_signal(signal.SIGCONT)
            time.sleep(0.02)
    raise AssertionError(f"{database} stayed locked")


@pytest.mark.slow
def test_one_search_one_process_and_a_kill_9_costs_only_the_candidate_in_flight(
    tmp_path: Path, prepared_digits: Path
) -> None:
    budget = 2
    command = launch.stage(
        "search", *SLOW, *paths(tmp_path, prepared_digits), f"strategy.budget={budget}"
    )
    first = launch.start(command)
    wait_for_checkpoint(tmp_path / "checkpoints", first)  # saved as the search starts
    # Paused while the second tries (it holds its lock all the same): however slow the
    # second's start, the first cannot finish meanwhile.
    pause_outside_writes(first, tmp_path / "mlflow.db")
    second = launch.run(command, timeout=120)
    assert_one_line_error(second, f"in use by another process (PID {first.pid}")
    first.send_signal(signal.SIGKILL)
    first.wait()
    (parent,) = [r for r in runs(tmp_path) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "RUNNING"  # what kill -9 leaves

    again = launch.run(command)
    assert again.returncode == 0, again.stderr
    every = runs(tmp_path)
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    assert parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["nasflow.iteration"]) for c in children) == list(range(budget))
    assert {c.info.status for c in children} == {"FINISHED"}


@pytest.mark.slow
def test_a_rerun_marks_a_killed_retrain_run_killed(tmp_path: Path, prepared_digits: Path) -> None:
    where = paths(tmp_path, prepared_digits)
    config(tmp_path, prepared_digits)  # a searched architecture
    process = launch.start(launch.stage("retrain", *TINY, *where, "retrain.epochs=200"))
    # Killed once its run is open (the lock file names it). Watched through the lock,
    # not the store: a second client creating a new SQLite store at the same moment as
    # the stage would race it.
    lock = tmp_path / "retrain" / LOCK_NAME
    deadline = time.monotonic() + 120
    while "run_id" not in (json.loads(lock.read_text() or "{}") if lock.exists() else {}):
        assert process.poll() is None, process.stderr
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert run_stage("retrain", *TINY, *where).returncode == 0
    retrains = [r for r in runs(tmp_path) if r.data.tags.get("nasflow.stage") == "retrain"]
    assert sorted(r.info.status for r in retrains) == ["FINISHED", "KILLED"]


@contextmanager
def signal_inside_the_next(statement: str, sig: signal.Signals) -> Iterator[list[str]]:
    """Send `sig` to this process as SQLAlchemy sends the first SQL statement starting
    with `statement` to a database: inside a store's transaction, as a Ctrl-C may land."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    sent: list[str] = []

    def execute(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if not sent and sql.lstrip().upper().startswith(statement):
            sent.append(sql)
            os.kill(os.getpid(), sig)

    event.listen(Engine, "before_cursor_execute", execute)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", execute)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_inside_a_store_write_lets_it_finish_and_the_run_is_killed(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Cut inside its transaction, the write would keep the SQLite store locked: marking
    the run KILLED would then fail after the store's busy timeout and leave it RUNNING."""
    from mlflow.entities import Metric

    from nasflow.interrupts import raising_on_signals

    tracker = MlflowTracker(tracking_store(tmp_path), artifact_location=str(tmp_path / "art"))
    with (
        raising_on_signals(),
        pytest.raises(Interrupted) as interrupted,
        tracker.run("search", tags={}, params={}) as run_id,
        signal_inside_the_next("INSERT INTO METRICS", sig) as sent,
    ):
        assert run_id is not None
        tracker.client.log_batch(run_id, metrics=[Metric("val_acc", 0.5, 0, 0)])
    assert sent and interrupted.value.signum == sig
    client = MlflowClient(tracking_store(tmp_path))
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.metrics == {"val_acc": 0.5}  # the write the signal arrived in


# -- 3. a multi-round estimator keeps every finished rung -------------------------------


def untimed(candidate: Any) -> dict[str, Any]:
    """A candidate's record without the wall times, which differ from run to run."""
    record = candidate.to_json()
    record.pop("elapsed")
    record.pop("seconds")
    record["rungs"] = [{k: v for k, v in r.items() if k != "seconds"} for r in record["rungs"]]
    return record


class Interrupting(LocalExecutor):
    """Runs tasks in this process and raises `Interrupted` once `after` have finished."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.finished = 0

    def wait(self) -> list[tuple[Task, Evaluation]]:
        if self.finished == self.after:
            raise Interrupted(signal.SIGINT)
        self.finished += 1
        return super().wait()


class Counting(NB201TableEstimator):
    def __init__(self) -> None:
        super().__init__(SPACE)
        self.calls: list[tuple[int, float | None]] = []

    def evaluate_task(self, task: Task) -> Evaluation:
        self.calls.append((task.iteration, task.fidelity))
        return super().evaluate_task(task)


def test_a_successive_halving_round_interrupted_resumes_without_training_a_rung_again(
    tmp_path: Path,
) -> None:
    def search(executor: Executor, resumed: Any = None) -> tuple[list[Any], Counting]:
        estimator = Counting()
        halving = SuccessiveHalving(estimator, rungs=[12], eta=3, candidates=9)
        history = run_search(
            RandomSearch(SPACE, budget=18, seed=0),
            halving,
            executor,
            0,
            checkpoint=Checkpoint(tmp_path, "sh"),
            resumed=resumed,
        )
        return history, estimator

    whole, everything = search(LocalExecutor())
    # 9 at 12 epochs, the best 3 at 200, per bracket; the second bracket's 5th training.
    with pytest.raises(Interrupted):
        search(Interrupting(after=12 + 5))
    saved = Checkpoint(tmp_path, "sh").load()
    assert saved is not None and len(saved["history"]) == 9 and len(saved["round"]) == 5
    resumed, rest = search(LocalExecutor(), saved)
    assert [untimed(c) for c in resumed] == [untimed(c) for c in whole]
    assert rest.calls == everything.calls[12 + 5 :], "no finished rung is trained again"


def test_a_resumed_round_logs_each_failure_once(tmp_path: Path) -> None:
    """A round of four failing candidates interrupted after two: the rerun hands those two
    back from the checkpoint, and failures.log still has one entry per candidate."""
    log = tmp_path / "failures.log"

    def search(executor: Executor, resumed: Any = None) -> list[Any]:
        return run_search(
            RandomSearch(SPACE, budget=4, seed=0),
            Failing(set(range(4))),
            executor,
            0,
            stopping=Stopping(max_consecutive_failures=None),
            checkpoint=Checkpoint(tmp_path, "failing"),
            resumed=resumed,
            failure_log=log,
        )

    interrupting, wide = Interrupting(after=2), LocalExecutor()
    interrupting.slots = wide.slots = 4  # one round of four
    with pytest.raises(Interrupted):
        search(interrupting)
    assert log.read_text().count("--- candidate") == 2
    history = search(wide, Checkpoint(tmp_path, "failing").load())
    assert [c.evaluation.status for c in history] == ["failed"] * 4
    entries = re.findall(r"^--- candidate (\d+) ", log.read_text(), re.MULTILINE)
    assert entries == ["0", "1", "2", "3"]


# -- 4. the world outside -----------------------------------------------------------------


def test_an_unreachable_tracking_server_is_named_within_seconds(
    tmp_path: Path, prepared_digits: Path
) -> None:
    """Started the ordinary way (not from preloaded libraries): the store is checked
    before torch and Lightning load, and MLflow's retries never start."""
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            *launch.stage("search", *TINY, *paths(tmp_path, prepared_digits)),
            "tracking.uri=http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started <= 30  # a guard against minutes of retries
    assert_one_line_error(result, "tracking.uri=http://127.0.0.1:9 is not reachable")
    assert not (tmp_path / "search").exists() and not (tmp_path / "checkpoints").exists()


class Answering(http.server.BaseHTTPRequestHandler):
    """A web server answering every GET with `status` (an MLflow server's /health: 200)."""

    status = 404

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(status: int) -> Iterator[str]:
    """The URI of a local web server answering `status`, while the block runs."""
    handler = type("Handler", (Answering,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_store_checks_name_the_uri_and_the_cause(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(
        NasflowError, match=re.escape("tracking.uri=http://127.0.0.1:9 is not reachable")
    ):
        check_store("http://127.0.0.1:9")
    (tmp_path / "file").write_text("")
    with pytest.raises(NasflowError, match="cannot write the SQLite file into"):
        check_store(f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(NasflowError, match="is not a usable SQLite database"):
        check_store(f"sqlite:///{tmp_path / 'junk.db'}")
    assert time.monotonic() - started < 10
    check_store(f"sqlite:///{tmp_path / 'new.db'}")  # a new store in a writable folder
    assert not (tmp_path / "new.db").exists()

    # A server that answers, but not as MLflow does (here, as a gateway's 404 would).
    with serving(404) as uri, pytest.raises(NasflowError) as error:
        check_store(uri)
    assert str(error.value).startswith(
        f"tracking.uri={uri} does not answer as an MLflow tracking server "
        "(GET /health: HTTP 404 Not Found)"
    )
    for status in (200, 401):  # healthy, or asking for a login MLflow's client will give
        with serving(status) as uri:
            check_store(uri)


class Dying(MlflowTracker):
    """A tracker whose store fails when the `dies_at`-th candidate is logged."""

    dies_at = 1

    def log_candidate(self, candidate: Any, graphs: Any = ()) -> None:
        if candidate.iteration == self.dies_at:
            with _store_errors(self.uri):
                raise OSError(errno.ENOSPC, "database or disk is full")
        super().log_candidate(candidate, graphs)


def test_a_tracking_store_that_fails_mid_search_costs_no_candidate(
    tmp_path: Path, tiny_cfg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nasflow.stages import search

    tiny_cfg.paths.checkpoints = str(tmp_path / "checkpoints")
    tiny_cfg.tracking._target_ = f"{__name__}.Dying"
    with pytest.raises(NasflowError) as error:
        search.run(tiny_cfg)
    message = str(error.value)
    assert "the tracking store" in message and "database or disk is full" in message
    assert "keeps what finished; run the search again once the store works" in message
    (checkpoint,) = (tmp_path / "checkpoints").glob("search-*.pt")
    saved = torch.load(checkpoint, weights_only=False)
    assert len(saved["history"]) + len(saved["round"]) == 2, "both finished candidates kept"

    monkeypatch.setattr(Dying, "dies_at", -1)
    search.run(tiny_cfg)  # the store works again: the search resumes and catches up
    every = runs(tmp_path)
    children = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    assert sorted(int(c.data.tags["nasflow.iteration"]) for c in children) == [0, 1, 2]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert [r.info.status for r in every if "mlflow.parentRunId" not in r.data.tags] == ["FINISHED"]


def checkpointed_search(folder: Path, name: str) -> Checkpoint:
    """The checkpoint a finished 3-candidate search on the NB201 table leaves in `folder`."""
    checkpoint = Checkpoint(folder, name)
    run_search(
        RandomSearch(SPACE, 3, seed=0),
        NB201TableEstimator(SPACE),
        LocalExecutor(),
        0,
        checkpoint=checkpoint,
    )
    return checkpoint


def test_a_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = checkpointed_search(tmp_path, "full")
    before = checkpoint.path.read_bytes()
    real_save = torch.save

    def full(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(NasflowError, match=r"No space left on device.*the previous one is intact"):
        run_search(
            RandomSearch(SPACE, 6, seed=0),
            NB201TableEstimator(SPACE),
            LocalExecutor(),
            0,
            checkpoint=checkpoint,
            resumed=Checkpoint(tmp_path, "full").load(),
        )
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoint.path.read_bytes() == before
    assert not list(tmp_path.glob("*.partial"))


# -- 5. corrupt state ----------------------------------------------------------------------


def test_a_corrupt_checkpoint_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    checkpoint = checkpointed_search(tmp_path, "cut")
    data = checkpoint.path.read_bytes()
    checkpoint.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NasflowError) as error:
        checkpoint.load()
    assert f"{checkpoint.path} is corrupt" in str(error.value)
    assert "search.resume=false" in str(error.value) and "\n" not in str(error.value)

    torch.save({"strategy": {}, "history": []}, checkpoint.path)  # an older layout
    with pytest.raises(NasflowError, match="another version of nasflow"):
        checkpoint.load()


def test_runs_a_dead_process_left_open_under_a_lock_are_closed(tmp_path: Path) -> None:
    """What a kill -9 leaves at any moment, even between opening a run and saving its id
    anywhere: a RUNNING run tagged with the lock's owner. The next holder of the lock
    marks it KILLED with its open children, and leaves alone the run it resumes, other
    owners' runs and finished ones."""
    tracker = MlflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x", str(tmp_path / "art"))
    client = MlflowClient(tracking_uri=tracker.uri)

    def opened(**tags: str) -> str:
        return str(client.create_run(tracker.experiment_id, tags=tags).info.run_id)

    dead, resumed, other = opened(**{OWNER_TAG: "a"}), opened(**{OWNER_TAG: "a"}), opened()
    child = opened(**{"mlflow.parentRunId": dead})
    finished = opened(**{OWNER_TAG: "a"})
    client.set_terminated(finished, "FINISHED")
    tracker.close_stale("a", keep=resumed)
    status = {r: client.get_run(r).info.status for r in (dead, child, resumed, other, finished)}
    assert status == {
        dead: "KILLED",
        child: "KILLED",
        resumed: "RUNNING",
        other: "RUNNING",
        finished: "FINISHED",
    }


# -- 6. locks -------------------------------------------------------------------------------


def test_a_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from nasflow.locks import ProcessLock; "
                f"lock = ProcessLock({str(path)!r}, 'x').acquire(); lock.record(run_id='r1'); "
                "print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(NasflowError, match=f"PID {holder.pid}"):
        ProcessLock(path, "x").acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with ProcessLock(path, "x") as lock:  # the dead holder's lock is gone with it
        assert json.loads(path.read_text()) == {"pid": os.getpid()}
        assert lock.owner == ProcessLock(tmp_path / "." / "x.lock", "y").owner
        assert lock.owner != ProcessLock(tmp_path / "z.lock", "x").owner
    assert os.path.exists(path)
