"""Any module of nasflow can be imported first, in a fresh interpreter (a Ray worker
does), and the light ones stay light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import launch
from tests.conftest import ROOT

SRC = ROOT / "src"
MODULES = sorted(
    ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for path in (SRC / "nasflow").rglob("*.py")
)

# Imports each module first in a child of one process that has loaded the third-party
# libraries (`launch.PRELOAD`) but no nasflow module: as far as nasflow's own import
# order goes, each child is a fresh interpreter, and forking saves loading torch and
# Lightning ~70 times.
FORK_EACH = """
import json, os, sys, traceback
assert not [m for m in sys.modules if m.startswith("nasflow")]
results = {}
for module in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(module)
            message = ""
        except BaseException as error:
            message = "".join(traceback.format_exception_only(error)).strip()
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        results[module] = pipe.read()
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    assert {"nasflow.executors", "nasflow.records", "nasflow.loop"} <= set(MODULES)
    done = launch.run(["-c", FORK_EACH, json.dumps(MODULES)])
    assert done.returncode == 0, done.stderr
    errors = {module: error for module, error in json.loads(done.stdout).items() if error}
    assert errors == {}


def test_executors_import_first_in_a_truly_fresh_interpreter() -> None:
    """The import cycle that once broke this (executors -> estimators -> executors)."""
    done = subprocess.run([sys.executable, "-c", "import nasflow.executors"], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


HEAVY = ("pytorch_lightning", "lightning", "torchvision", "sklearn", "mlflow")
# Digits are prepared with torch and scikit-learn only (seconds less in every `dvc
# repro`); torchvision loads when one of its sources reads.
NOT_FOR_PREPARE = tuple(m for m in HEAVY if m != "sklearn")


@pytest.mark.parametrize(
    ("module", "heavy"),
    [
        ("nasflow.records", HEAVY),
        ("nasflow.executors", HEAVY),
        ("nasflow.search_strategies.random", HEAVY),
        ("nasflow.stages.prepare", NOT_FOR_PREPARE),
    ],
)
def test_light_modules_load_no_training_stack(module: str, heavy: tuple[str, ...]) -> None:
    code = f"import sys, {module}\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} loads {done.stdout.strip()}"


def test_the_records_need_only_the_standard_library() -> None:
    code = (
        "import sys\nbefore = set(sys.modules)\nimport nasflow.records\n"
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert set(done.stdout.split()) <= {"nasflow"} | set(sys.stdlib_module_names)
