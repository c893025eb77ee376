"""Shared fixtures: the real config, shrunk to run in seconds, and prepared digits."""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from nasflow.config import register_configs

ROOT = Path(__file__).resolve().parents[1]

# Every value that makes the pipeline slow, made small; everything else is the default.
TINY = [
    "strategy.budget=3",
    "estimator.epochs=1",
    "retrain.epochs=1",
    "search_space.max_layers=2",
]


def compose_config(overrides: list[str] = ()) -> DictConfig:  # type: ignore[assignment]
    """The pipeline's config as `python pipelines/<stage>.py <overrides>` would compose it.

    Hydra composes in two steps: the defaults list that the group choices (`group=option`)
    make, merged, and then every other override set on the result. The first step takes a
    fifth of a second and most tests share it, so it is done once per process for each set
    of choices; the second is Hydra's own, on a copy.
    """
    chosen: list[str] = []
    values: list[str] = []
    for override in overrides:
        (chosen if _chooses(override) else values).append(override)
    cfg = copy.deepcopy(_composed(tuple(chosen), os.environ.get("NASFLOW_CONF_PATH", "")))
    ConfigLoaderImpl._apply_overrides_to_config(
        OverridesParser.create().parse_overrides(values), cfg
    )
    return cfg


def compose_option(group: str, option: str) -> DictConfig:
    """The config with `option` of `group` chosen, as a user would start from it."""
    # Your own images have no default location: the one value an option cannot guess.
    extra = ["data.source.root=/images"] if option == "image_folder" else []
    return compose_config([f"{group}={option}", *extra])


def _chooses(override: str) -> bool:
    """Whether `override` chooses a config group's option (the groups are not nested)."""
    key = override.partition("=")[0].lstrip("+~")
    return "." not in key and any((folder / key).is_dir() for folder in conf_dirs())


@functools.cache
def _composed(chosen: tuple[str, ...], conf_path: str) -> DictConfig:
    """The config with these choices (and the option files found through `conf_path`)."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(chosen))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread while the test runs: what the recorded one-shot runs used."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def prepared_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits prepared as the pipeline does, with 512 training and 128 validation
    images of its 1,221 and 216 (the test split is the whole 360): what the tests check
    does not depend on the size, and most of them train."""
    return _prepare_digits(tmp_path_factory.mktemp("prepared"), train_size=512, val_size=128)


@pytest.fixture(scope="session")
def all_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits prepared as the pipeline prepares them, every image: for a test whose
    bound is the accuracy the pipeline reaches."""
    return _prepare_digits(tmp_path_factory.mktemp("all_digits"))


def _prepare_digits(out: Path, train_size: int | None = None, val_size: int | None = None) -> Path:
    from nasflow.data import Digits, prepare

    prepare(Digits(), out, 0.15, 0.2, seed=0, train_size=train_size, val_size=val_size)
    return out


@pytest.fixture
def tiny_cfg(tmp_path: Path, prepared_digits: Path) -> DictConfig:
    """A tiny pipeline config writing under tmp_path, tracked to a throwaway MLflow store."""
    return compose_config(
        [
            *TINY,
            f"paths.prepared={prepared_digits}",
            f"paths.search={tmp_path / 'search'}",
            f"paths.checkpoints={tmp_path / 'checkpoints'}",
            f"paths.retrain={tmp_path / 'retrain'}",
            f"paths.evaluate={tmp_path / 'evaluate'}",
            f"tracking.uri={tracking_store(tmp_path)}",
            f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
        ]
    )


def tracking_store(folder: Path) -> str:
    """The URI of the MLflow store `folder`/mlflow.db, which starts empty where there is
    none: a copy of one this process made once. MLflow takes a second or more to create a
    new store's tables, and most end-to-end tests start from an empty store of their own."""
    store = folder / "mlflow.db"
    if not store.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store(), store)
    return f"sqlite:///{store}"


@functools.cache
def _empty_store() -> Path:
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="nasflow-empty-store-"))
    atexit.register(shutil.rmtree, folder, True)
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()  # creates it
    return folder / "mlflow.db"


def conf_dirs() -> list[Path]:
    """conf/, then the folders of components outside nasflow (``NASFLOW_CONF_PATH``)."""
    extra = os.environ.get("NASFLOW_CONF_PATH", "")
    return [ROOT / "conf", *(Path(p) for p in extra.split(os.pathsep) if p)]


def option_files(group: str) -> list[Path]:
    """Every option file of `group`, nasflow's and the plugins'."""
    return sorted(path for folder in conf_dirs() for path in (folder / group).glob("*.yaml"))


def discrete_strategies() -> list[str]:
    """Every registered ask/tell strategy (the registry, plugins included)."""
    from nasflow.registry import STRATEGIES
    from nasflow.search_strategies.base import SearchStrategy

    return sorted(n for n, c in STRATEGIES.load().items() if issubclass(c, SearchStrategy))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow end-to-end tests first: the two test workers then share them out at the
    start and end on short tests, instead of one worker starting `dvc repro` (the
    longest) while the other has nothing left."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# One Ray instance for the whole test session, whichever test worker asks first: started
# with `ray start --head --block` (which stops its processes when it is stopped), its
# address and PID kept beside the workers' temporary folders, stopped when the session
# ends. Tests join it with executor.address, as a user joins a cluster.
RAY_CPUS = 2
# The test cluster listens on 127.0.0.1 only; its drivers (test processes and the stages
# they start) join it without Ray's token authentication.
os.environ["RAY_AUTH_MODE"] = "disabled"


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> str:
    import socket
    import subprocess
    import sys
    import time

    from filelock import FileLock

    shared = _session_folder(tmp_path_factory)
    with FileLock(str(shared / "ray.lock")):
        known = shared / "ray.address"
        if known.exists():
            return known.read_text()
        port, client_port = _free_ports(2)
        ray = Path(sys.executable).with_name("ray")
        log = shared / "ray-start.log"
        with log.open("w") as output:
            head = subprocess.Popen(
                [str(ray), "start", "--head", "--block", f"--port={port}",
                 "--node-ip-address=127.0.0.1", f"--num-cpus={RAY_CPUS}", "--num-gpus=0",
                 "--include-dashboard=false", "--disable-usage-stats",
                 f"--temp-dir={shared / 'ray'}",
                 # Its Ray Client server on a free port, not on 10001 (whoever else has that);
                 # no log monitor (drivers here do not take the workers' output).
                 f"--ray-client-server-port={client_port}", "--include-log-monitor=false"],
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        (shared / "ray.pid").write_text(str(head.pid))
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if head.poll() is not None:
                tail = log.read_text().strip().splitlines()[-1:]
                pytest.fail(f"ray start --head exited with {head.returncode}: {tail}")
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        known.write_text(address)
        return address


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now."""
    import socket

    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def _session_folder(factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole session: a test worker's is inside it."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the session's Ray instance, from the process that ran the session (not a test
    worker: another may still be using it)."""
    import signal

    if hasattr(session.config, "workerinput"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    pid_file = factory.getbasetemp() / "ray.pid"
    if pid_file.exists():
        # The whole process group: `ray start --block` and every Ray process it started
        # (it takes its time over SIGTERM, and a test cluster has nothing to keep).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        pid_file.unlink()
