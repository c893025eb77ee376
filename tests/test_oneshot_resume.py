"""A one-shot search killed mid-way continues from its last finished epoch and ends exactly
as an uninterrupted search of the same seed: the same epoch records, the same derived
cell, the same score and details.

Every one-shot option runs a tiny search (tests/oneshot_runs.py) interrupted after half
its epochs by an exception from its epoch callback, then again from the checkpoint; the
stage's protocol (its checkpoint file, `search.resume=false`, the clean-up) runs through
`OneShotStrategy.run`; and one search is killed with SIGKILL in a real stage process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from nasflow.loop import Checkpoint, Stopping
from nasflow.oneshot.module import RESUME_KEY
from nasflow.oneshot.strategy import OneShotResult
from nasflow.searching import SearchContext
from nasflow.stages import search
from nasflow.tracking.base import Tracker
from tests import launch
from tests.conftest import compose_config
from tests.oneshot_runs import (
    TRAINER,
    one_shot_options,
    run_tiny,
    tiny_data,
    tiny_strategy,
    without_seconds,
)

# The recorded one-shot runs used one torch thread; so do these.
pytestmark = pytest.mark.usefixtures("one_thread")


class Killed(Exception):
    """Stands for the process dying after an epoch."""


def stop_at(epoch: int, seen: list[int]) -> Any:
    """An epoch callback that records the epochs and raises `Killed` at `epoch`."""

    def on_epoch(record: dict[str, Any]) -> None:
        seen.append(record["epoch"])
        if record["epoch"] == epoch:
            raise Killed(f"killed in epoch {epoch}")

    return on_epoch


def assert_same_search(resumed: OneShotResult, uninterrupted: OneShotResult) -> None:
    assert resumed.arch == uninterrupted.arch
    assert resumed.score == uninterrupted.score
    assert without_seconds(resumed.epochs) == without_seconds(uninterrupted.epochs)
    assert resumed.details == uninterrupted.details  # decisions, alpha, final candidates


@pytest.mark.parametrize("name", one_shot_options())
def test_an_interrupted_search_resumes_to_the_same_result(
    name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uninterrupted = run_tiny(name)
    total = len(uninterrupted.epochs)
    saved = tmp_path / "search.ckpt"
    # Killed in the epoch after the first half: the checkpoint holds the first half.
    half = total // 2
    first: list[int] = []
    with pytest.raises(Killed):
        run_tiny(name, on_epoch=stop_at(half, first), checkpoint=saved)
    assert first == list(range(half + 1)) and saved.is_file()

    again: list[int] = []
    with caplog.at_level(logging.INFO, logger="nasflow.search"):
        resumed = run_tiny(name, on_epoch=lambda r: again.append(r["epoch"]), checkpoint=saved)
    assert f"resuming the {tiny_strategy(name).name} search from epoch {half + 1} of {total}" in (
        caplog.messages
    )
    assert again == list(range(half, total))  # only the epochs the checkpoint lacked ran
    assert_same_search(resumed, uninterrupted)

    # Killed after its last epoch's checkpoint, before its outputs: nothing left to train.
    after: list[int] = []
    finished = run_tiny(name, on_epoch=lambda r: after.append(r["epoch"]), checkpoint=saved)
    assert after == []
    assert_same_search(finished, uninterrupted)


def context(tmp_path: Path, resume: bool, on_epoch: Any) -> SearchContext:
    """What the search stage hands a strategy, with its checkpoint under tmp_path."""
    checkpoint = Checkpoint(tmp_path / "checkpoints", "fingerprint")
    checkpoint.meta["run_id"] = "run-1"
    return SearchContext(
        data=tiny_data(),
        trainer=TRAINER,
        tracker=Tracker(),
        seed=0,
        estimator=lambda: None,  # type: ignore[arg-type,return-value]  # one-shot: unused
        executor=lambda: None,  # type: ignore[arg-type,return-value]
        stopping=Stopping(),
        checkpoint=checkpoint,
        resumed=checkpoint.load() if resume else None,
        on_epoch=on_epoch,
    )


def test_the_stage_protocol_resumes_restarts_and_cleans_up(tmp_path: Path) -> None:
    """Through `run` as the stage calls it: the stage's checkpoint marks the search (with
    its tracking run) and the Lightning checkpoint lies beside it; `search.resume=false`
    (no `resumed`) starts afresh; a finished search leaves only the stage's file, which
    the stage removes."""
    strategy = tiny_strategy("enas")
    uninterrupted = strategy.run(context(tmp_path / "plain", True, lambda r: None))
    first: list[int] = []
    with pytest.raises(Killed):
        strategy.run(context(tmp_path, True, stop_at(0, first)))
    folder = tmp_path / "checkpoints"
    assert {p.name for p in folder.iterdir()} == {"search-fingerprint.pt"}  # no epoch done
    with pytest.raises(Killed):
        tiny_strategy("enas").run(context(tmp_path, True, stop_at(1, first)))
    assert first == [0, 0, 1]  # nothing to resume from: started at epoch 0 again
    assert {p.name for p in folder.iterdir()} == {
        "search-fingerprint.pt",
        "search-fingerprint.ckpt",
    }
    assert Checkpoint(folder, "fingerprint").load()["meta"] == {"run_id": "run-1"}

    restarted: list[int] = []
    with pytest.raises(Killed):  # search.resume=false: from the start, whatever is saved
        tiny_strategy("enas").run(context(tmp_path, False, stop_at(1, restarted)))
    assert restarted == [0, 1]

    # The epoch the interrupted process finished took 1,000 s, as its checkpoint says.
    saved = folder / "search-fingerprint.ckpt"
    state = torch.load(saved, weights_only=False)
    state[RESUME_KEY]["history"][0]["seconds"] = 1000.0
    torch.save(state, saved)

    resumed: list[int] = []
    outcome = tiny_strategy("enas").run(
        context(tmp_path, True, lambda r: resumed.append(r["epoch"]))
    )
    assert resumed == [1]
    assert outcome.summary["seconds"] > 1000, "the time before the interruption counts"
    assert {p.name for p in folder.iterdir()} == {"search-fingerprint.pt"}
    assert outcome.arch == uninterrupted.arch and outcome.score == uninterrupted.score
    assert without_seconds(outcome.history) == without_seconds(uninterrupted.history)


@pytest.mark.slow
def test_a_search_killed_with_sigkill_resumes_in_the_stage(
    tmp_path: Path, prepared_digits: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real stage in its own process, killed with SIGKILL once it has logged a few
    epochs, then run again: it says where it resumes and writes what an uninterrupted
    stage writes."""
    overrides = [
        "strategy=darts_pt",
        "search_space=nb201",
        "strategy.epochs=2",
        "strategy.channels=2",
        "strategy.cells=1",
        "strategy.batch_size=32",
        "strategy.train_limit=64",
        "strategy.val_limit=32",
        "tracking=none",
        f"paths.prepared={prepared_digits}",
        f"paths.checkpoints={tmp_path / 'checkpoints'}",
    ]
    search.run(compose_config([*overrides, f"paths.search={tmp_path / 'reference'}"]))

    killed = [*overrides, f"paths.search={tmp_path / 'search'}"]
    process = launch.start(
        launch.stage("search", *killed), env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    # Epoch 4's line is logged after epoch 3's checkpoint was written.
    process.wait_for_output("[nasflow.search] epoch 4 ")
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "search" / "best_architecture.json").exists()

    with caplog.at_level(logging.INFO, logger="nasflow.search"):
        search.run(compose_config(killed))  # the rerun (in this process: no second start-up)
    [line] = [m for m in caplog.messages if m.startswith("resuming the darts search")]
    # 2 epochs, then six edges decided with a tuning epoch each.
    assert int(line.split("from epoch ")[1].split()[0]) >= 4 and line.endswith(" of 8")

    def outputs(folder: Path) -> tuple[Any, list[dict[str, Any]]]:
        best = json.loads((folder / "best_architecture.json").read_text())
        history = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]
        return best["architecture"], without_seconds(history)

    assert outputs(tmp_path / "search") == outputs(tmp_path / "reference")
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
