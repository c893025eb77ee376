"""Bad input at the command line: one line naming the value, exit status 2, nothing lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import launch
from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.slow


def run_stage(stage: str, *overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python pipelines/<stage>.py <overrides>`, started from preloaded libraries."""
    return launch.run(launch.stage(stage, *overrides), cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    ("stage", "overrides", "expected"),
    [
        (
            "search",
            ["strategy=evolutionn"],
            ["strategy=evolutionn", "evolution", "grid", "reinforce"],
        ),
        ("search", ["search_space=resnet"], ["search_space=resnet", "chain"]),
        ("prepare", ["data=imagenet"], ["data=imagenet", "digits", "mnist"]),
        ("search", ["strategy.budgt=3"], ["budgt", "RandomSearchSchema"]),
        ("search", ["strategy.budget=ten"], ["ten", "Integer"]),
    ],
)
def test_unknown_names_and_bad_keys_fail_at_composition(
    stage: str, overrides: list[str], expected: list[str]
) -> None:
    assert_one_line_error(run_stage(stage, *overrides), *expected)


def test_missing_data_root_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_stage(
        "prepare", "data=mnist", f"data.source.root={missing}", f"paths.prepared={tmp_path}/p"
    )
    assert_one_line_error(result, str(missing), "download")
    assert not (tmp_path / "p").exists()


def test_bad_budget_and_bad_architecture_leave_earlier_results_intact(
    tmp_path: Path, prepared_digits: Path
) -> None:
    paths = [
        f"paths.prepared={prepared_digits}",
        f"paths.search={tmp_path / 'search'}",
        f"paths.retrain={tmp_path / 'retrain'}",
        "tracking=none",
    ]
    assert run_stage("search", *TINY, *paths).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "search").iterdir()}

    # Zero here; negative and fractional budgets are refused by the same check, unit-tested.
    result = run_stage("search", *TINY, *paths, "strategy.budget=0")
    assert_one_line_error(result, "strategy.budget must be a positive integer, got 0")
    assert {p: p.read_bytes() for p in (tmp_path / "search").iterdir()} == before

    # Malformed JSON files are unit-tested in test_artifacts; here, an invalid architecture.
    malformed = tmp_path / "bad"
    malformed.mkdir()
    (malformed / "best_architecture.json").write_text(
        '{"space": "chain", "architecture": {"layers": [{"op": "max_pool"}, {"op": "gap"}]}}'
    )
    result = run_stage("retrain", *TINY, *paths[:1], f"paths.search={malformed}", *paths[2:])
    assert_one_line_error(result, "layer0.op=max_pool is not allowed here (allowed: conv)")
    assert not (tmp_path / "retrain").exists()


def test_multirun_sweeps_strategies_and_seeds(tmp_path: Path, prepared_digits: Path) -> None:
    # A 2-architecture space so that grid search fits the budget; 4 searches in all.
    result = run_stage(
        "search",
        "-m",
        "strategy=random,grid",
        "seed=0,1",
        "search_space.min_layers=2",
        "search_space.max_layers=2",
        "search_space.ops=[conv,max_pool]",
        "search_space.filters=[16]",
        "search_space.skip=false",
        "estimator.epochs=1",
        "tracking=none",
        f"paths.prepared={prepared_digits}",
        f"paths.search={tmp_path}/search/${{strategy._target_}}-${{seed}}",
        f"hydra.sweep.dir={tmp_path}/multirun",
    )
    assert result.returncode == 0, result.stderr
    summaries = sorted((tmp_path / "search").glob("*/summary.json"))
    assert len(summaries) == 4
    assert "#3 : strategy=grid seed=1" in result.stdout + result.stderr


def test_predict_takes_the_issue_s_short_form(tmp_path: Path) -> None:
    """``inputs=`` and ``model=`` reach predict.inputs and predict.model."""
    result = run_stage("predict", f"inputs={tmp_path}", "model=tflite")
    assert_one_line_error(result, "predict.model=tflite is not a model")
    result = run_stage("predict", f"inputs={tmp_path}", "model=onnx")
    assert_one_line_error(result, str(tmp_path), "is an empty folder")
