"""The DVC pipeline: deps cover the code each stage runs; repro and exp run rerun what
changed and nothing else."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import launch
from tests.conftest import ROOT

STAGES = ["prepare", "search", "retrain", "evaluate"]
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
# Modules a stage imports only at run time: the configured tracker (and, in search, the
# diagram it draws of every candidate). Not counted: the components Hydra's plugin imports
# to generate their config schemas (`nasflow.schemas`): a schema checks a composed
# config's keys and types and changes no output, and DVC tracks the values as params.
LAZY = {
    "search": "import nasflow.tracking.mlflow_tracker, nasflow.diagram",
    "retrain": "import nasflow.tracking.mlflow_tracker",
    "evaluate": "import nasflow.tracking.mlflow_tracker",
}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_deps_cover_every_module_it_imports(stage: str) -> None:
    """Editing any nasflow module a stage runs must rerun that stage (and only those)."""
    code = (
        "import sys, runpy\n"
        f"runpy.run_path({str(ROOT / 'pipelines' / f'{stage}.py')!r})\n"
        f"import nasflow.stages.{stage}\n"
        # Built from the config at run time, so not imported by the stage module itself.
        f"{LAZY.get(stage, '')}\n"
        "print('\\n'.join(sorted(m.__file__ for n, m in sys.modules.items()\n"
        "    if n.startswith('nasflow') and getattr(m, '__file__', None))))\n"
    )
    # A process of its own with no nasflow module loaded (its libraries preloaded).
    out = launch.run(["-c", code])
    assert out.returncode == 0, out.stderr
    used = {Path(f).resolve().relative_to(ROOT).as_posix() for f in out.stdout.split()}
    deps = [d for d in DVC_YAML["stages"][stage]["deps"] if not d.startswith("$")]
    uncovered = sorted(
        f
        for f in used
        if not _docstring_only(ROOT / f)
        if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
    )
    assert not uncovered, f"{stage} imports modules missing from its deps in dvc.yaml"


def _docstring_only(path: Path) -> bool:
    """A module that is only a docstring (a package marker) cannot change what a stage does."""
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr)


def _tiny_copy(tmp_path: Path) -> Path:
    """The project's pipeline in a fresh git repository, with a tiny configuration."""
    repo = tmp_path / "repo"
    for name in ("conf", "pipelines", "src"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvc/config", ".dvcignore", ".gitignore"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    edits = {
        "conf/strategy/random.yaml": ("budget: 20", "budget: 2"),
        "conf/estimator/training.yaml": ("epochs: 8", "epochs: 1"),
        "conf/search_space/chain.yaml": ("max_layers: 3", "max_layers: 2"),
        "conf/config.yaml": ("retrain:\n", "retrain:\n  epochs: 1\n"),
    }
    for name, (old, new) in edits.items():
        text = (repo / name).read_text()
        assert old in text, f"{name} no longer has '{old}'; update this test"
        (repo / name).write_text(text.replace(old, new))
    config = (repo / "conf/config.yaml").read_text()
    (repo / "conf/config.yaml").write_text(config.replace("tracking: mlflow", "tracking: none"))
    return repo


def _run(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.mark.slow
def test_repro_is_incremental_and_exp_run_reruns_only_what_a_param_touches(
    tmp_path: Path,
) -> None:
    repo = _tiny_copy(tmp_path)
    _run(repo, sys.executable, "-m", "nasflow.params")
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "tiny pipeline")

    first = _run(repo, "dvc", "repro")
    assert all(f"Running stage '{s}'" in first for s in STAGES), first

    second = _run(repo, "dvc", "repro")
    assert "Running stage" not in second
    assert "Data and pipelines are up to date" in second

    kept = sorted(
        path
        for folder in ("data/prepared", "results/search", "results/retrain", "results/evaluate")
        for path in (repo / folder).iterdir()
    )
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "first run")
    # Comparing the exported formats on more test images changes the export's check, not
    # the data, the search, the trained model or its score: only the export stage reruns,
    # and the other stages' outputs are left as they were.
    exp = _run(repo, "dvc", "exp", "run", "-S", "export.test_batch=64")
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in exp, exp
    assert "Running stage 'export'" in exp, exp
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps

    shown = json.loads(_run(repo, "dvc", "exp", "show", "--json"))
    batches = [
        exp["data"]["params"]["params.yaml"]["data"]["export"]["test_batch"]
        for commit in shown
        for exp in [commit, *[e for x in commit.get("experiments") or [] for e in x["revs"]]]
        if exp.get("data") and exp["data"].get("params")
    ]
    assert 256 in batches and 64 in batches
