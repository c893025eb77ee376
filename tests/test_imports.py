"""Any module of nasflow can be imported first, in a fresh interpreter (a Ray worker
does), and the light ones stay light."""

from __future__ import annotations

import json
import subprocess
import sys

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


HEAVY = ("pytorch_lightning", "lightning", "torchvision", "torchmetrics", "sklearn", "mlflow")
# The modules that must load none of them: what a Ray worker or the search loop reads
# first, and the stages that only read prepared data or the retrained network (seconds
# less in every `dvc repro`; torchvision and scikit-learn load when a source reads).
LIGHT = [
    "nasflow.records",
    "nasflow.executors",
    "nasflow.search_strategies.random",
    "nasflow.stages.prepare",
    "nasflow.stages.evaluate",
    "nasflow.stages.export",
    "nasflow.stages.predict",
]


def test_light_modules_load_no_training_stack() -> None:
    # One after another in one fresh interpreter: a heavy module that appears after an
    # import was loaded by that import (one loaded earlier would have been caught then).
    code = (
        "import importlib, json, sys\n"
        "loads = {}\n"
        f"for module in {LIGHT!r}:\n"
        "    importlib.import_module(module)\n"
        f"    loads[module] = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    if loads[module]: break\n"
        "print(json.dumps(loads))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loads = json.loads(done.stdout)
    assert list(loads) == LIGHT, f"{list(loads)[-1]} loads {loads[list(loads)[-1]]}"
    assert not any(loads.values())


def test_the_records_need_only_the_standard_library() -> None:
    code = (
        "import sys\nbefore = set(sys.modules)\nimport nasflow.records\n"
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert set(done.stdout.split()) <= {"nasflow"} | set(sys.stdlib_module_names)
