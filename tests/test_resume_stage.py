"""Kill the search stage mid-way, run it again: it resumes and ends as if never killed."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import pytest
import torch

from tests import launch
from tests.conftest import TINY

pytestmark = pytest.mark.slow


# A controller whose policy is updated (and its optimizer stepped) before the kill.
STRATEGIES = {
    "random": ["strategy=random"],
    "reinforce": ["strategy=reinforce", "strategy.batch_size=2"],
}


def search_command(tmp_path: Path, prepared: Path, name: str, strategy: str) -> list[str]:
    return launch.stage(
        "search",
        *[o for o in TINY if not o.startswith("strategy.")],
        *STRATEGIES[strategy],
        "strategy.budget=8",
        "tracking=none",
        f"paths.prepared={prepared}",
        f"paths.search={tmp_path / name}",
        f"paths.checkpoints={tmp_path / 'checkpoints'}",
    )


def finished(history_file: Path) -> list[dict]:
    """The history without what timing changes from run to run."""
    rows = [json.loads(line) for line in history_file.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in ("elapsed", "seconds")} for row in rows]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_killed_search_resumes_and_ends_like_an_uninterrupted_one(
    strategy: str, tmp_path: Path, prepared_digits: Path
) -> None:
    whole = launch.run(search_command(tmp_path, prepared_digits, "whole", strategy), timeout=600)
    assert whole.returncode == 0, whole.stderr

    command = search_command(tmp_path, prepared_digits, "killed", strategy)
    process = launch.start(command)
    checkpoints = tmp_path / "checkpoints"
    deadline = time.monotonic() + 300
    done = 0
    while done < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        for path in checkpoints.glob("search-*.pt"):
            with contextlib.suppress(Exception):  # being replaced at this very moment
                done = len(torch.load(path, weights_only=False)["history"])
    assert process.poll() is None, "the search finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    (checkpoint,) = checkpoints.glob("search-*.pt")
    killed_after = len(torch.load(checkpoint, weights_only=False)["history"])
    assert 3 <= killed_after < 8

    again = launch.run(command, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming after {killed_after} finished candidates" in again.stdout
    assert again.stdout.count("] candidate ") == 8 - killed_after, "nothing is evaluated twice"
    assert finished(tmp_path / "killed" / "history.jsonl") == finished(
        tmp_path / "whole" / "history.jsonl"
    )
    assert not list(checkpoints.glob("search-*.pt")), "a completed search leaves no checkpoint"
