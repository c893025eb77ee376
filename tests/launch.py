"""Start an entry point as a user does (``python pipelines/<stage>.py <overrides>``), in a
second instead of ten.

A stage's process spends most of its first ten seconds importing torch, Lightning and
MLflow. The tests that start stages (to kill them, interrupt them, read their one-line
errors) start dozens, so they fork each one from a server that has imported those
libraries once: multiprocessing's forkserver, preloaded. Each started stage is still a
process of its own, with its own PID, signals, exit status, environment, working folder,
stdout and stderr, running the entry point as ``__main__`` with the arguments given and
ending through the interpreter's exit handlers.

What differs from a fresh interpreter is only that the third-party libraries are already
imported. nasflow's own modules are not (each start imports them afresh), their import
order is checked in a truly fresh interpreter by test_imports.py, and test_dvc.py's
``dvc repro`` starts every stage the ordinary way.

The API follows `subprocess`: `run` returns a `CompletedProcess`, `start` a process with
``pid``, ``poll``, ``send_signal``, ``wait`` and ``communicate``; an exit status is
negative for a signal, as `subprocess` reports it.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What every stage imports before it reads a setting: loaded once, in the server.
PRELOAD = [
    "torch",
    "torchvision",
    "pytorch_lightning",
    "torchmetrics",
    "mlflow",
    # The SQLite tracking store every tracked stage opens (mlflow imports it only then:
    # most of a second per started stage, about 15 s over the suite).
    "mlflow.store.tracking.sqlalchemy_store",
    "sklearn.model_selection",
    "optuna",
    "hydra",
    "matplotlib.pyplot",
    "tests.launch",
]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)
#: Every process started here, so that none outlives the test session.
_started: list[multiprocessing.process.BaseProcess] = []


@atexit.register
def _kill_leftovers() -> None:
    """Kill what a failed test left running (multiprocessing would wait for it at exit)."""
    for process in _started:
        if process.is_alive():
            process.kill()
            process.join()


def _main(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """The started process: `python *argv` run in the forked child."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:0] = [p for p in extra if p not in sys.path]
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(handle, fd)
        os.close(handle)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        if argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
    finally:
        # The exit handlers an interpreter runs at exit (the forked child's `os._exit`
        # would skip them), then the standard streams.
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()


class Started:
    """A started process, as `subprocess.Popen` presents one (text mode, outputs piped)."""

    def __init__(self, argv: Sequence[str], cwd: Path | str, env: Mapping[str, str] | None) -> None:
        self.args = [sys.executable, *argv]
        self._folder = tempfile.TemporaryDirectory(prefix="launch-")
        self._out = Path(self._folder.name, "stdout")
        self._err = Path(self._folder.name, "stderr")
        self._out.touch()
        self._err.touch()
        environment = dict(os.environ if env is None else env)
        self._process = _context.Process(
            target=_main,
            args=(list(argv), str(cwd), environment, str(self._out), str(self._err)),
            daemon=False,
        )
        self._process.start()
        _started.append(self._process)
        self.pid: int = self._process.pid  # type: ignore[assignment]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self._process.join()
            self.returncode = self._process.exitcode
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            self.kill()
            self._process.join()
            self.poll()
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    @property
    def stdout(self) -> str:
        """What the process has written to stdout so far."""
        return self._out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 240) -> None:
        """Return as soon as `text` is in stdout or stderr; an AssertionError if the
        process ends, or `timeout` seconds pass, first."""
        deadline = time.monotonic() + timeout
        while text not in self.stdout + self.stderr:
            assert self.poll() is None, f"ended ({self.returncode}) before saying {text!r}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s"
            time.sleep(0.02)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        try:
            return self.stdout, self.stderr
        finally:
            self._folder.cleanup()


def start(
    argv: Sequence[str], cwd: Path | str = ROOT, env: Mapping[str, str] | None = None
) -> Started:
    """Start ``python *argv`` (a script and its arguments, or ``-c`` and code)."""
    return Started(argv, cwd, env)


def run(
    argv: Sequence[str],
    cwd: Path | str = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``python *argv`` to its end; what `subprocess.run(..., capture_output=True,
    text=True)` would return."""
    started = start(argv, cwd, env)
    stdout, stderr = started.communicate(timeout)
    return subprocess.CompletedProcess(started.args, started.wait(), stdout, stderr)


def stage(name: str, *overrides: str) -> list[str]:
    """The argv of an entry point in pipelines/: ``[pipelines/<name>.py, *overrides]``."""
    return [str(ROOT / "pipelines" / f"{name}.py"), *overrides]
