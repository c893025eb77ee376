"""pipelines/inspect_arch.py: one architecture's parameters, FLOPs and diagram."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasflow.artifacts import architecture_record
from nasflow.errors import NasflowError
from nasflow.stages import inspect_arch
from tests.conftest import compose_config
from tests.test_cli import assert_one_line_error, run_stage

RESNET_LIKE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
CHAIN = {
    "layers": [
        {"op": "conv", "filters": 32, "kernel_h": 3, "kernel_w": 3, "skip": False},
        {"op": "gap"},
    ]
}


def inspect(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose_config(
        [
            f"inspect.diagram={tmp_path / 'arch.svg'}",
            f"paths.prepared={tmp_path / 'none'}",
            *overrides,
        ]
    )
    return inspect_arch.run(cfg)


def test_chain_from_a_record_file(tmp_path: Path, prepared_digits: Path) -> None:
    cfg = compose_config()
    from hydra.utils import instantiate

    space = instantiate(cfg.search_space)
    arch = space.from_json(CHAIN)
    record = tmp_path / "best.json"
    record.write_text(json.dumps(architecture_record(space, arch, score=0.9)))
    figures = inspect(tmp_path, f"inspect.arch={record}", f"paths.prepared={prepared_digits}")
    # The prepared digits give the shape: conv 1->32 (288) + BN (64) + linear 32*10+10.
    assert figures["input_shape"] == [1, 8, 8]
    assert figures["params"] == 288 + 64 + 32 * 10 + 10
    assert figures["flops"] > 0
    assert (tmp_path / "arch.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_nb201_string_on_cifar_shape(tmp_path: Path) -> None:
    figures = inspect(
        tmp_path,
        "search_space=nb201",
        f"inspect.arch='{RESNET_LIKE}'",
        "inspect.input_shape=[3,32,32]",
        "inspect.num_classes=10",
    )
    # The NAS-Bench-201 table's params_m for this cell (arch 11472) is 0.559386 M.
    assert round(figures["params"] / 1e6, 6) == 0.559386
    assert figures["architecture"] == RESNET_LIKE


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(NasflowError, match="no such file"):
        inspect(
            tmp_path,
            "inspect.arch=missing.json",
            "inspect.input_shape=[1,8,8]",
            "inspect.num_classes=2",
        )
    with pytest.raises(NasflowError, match="no prepared data"):
        inspect(tmp_path, f"inspect.arch='{json.dumps(CHAIN)}'")
    with pytest.raises(NasflowError, match="input_shape"):
        inspect(
            tmp_path,
            f"inspect.arch='{json.dumps(CHAIN)}'",
            "inspect.input_shape=[8,8]",
            "inspect.num_classes=2",
        )


@pytest.mark.slow
def test_command_line_with_an_nb201_string(tmp_path: Path) -> None:
    shape = ["inspect.input_shape=[3,32,32]", "inspect.num_classes=10"]
    diagram = f"inspect.diagram={tmp_path / 'cell.png'}"
    ok = run_stage(
        "inspect_arch", "search_space=nb201", f"inspect.arch='{RESNET_LIKE}'", diagram, *shape
    )
    assert ok.returncode == 0, ok.stderr
    assert "559,386" in ok.stdout
    assert (tmp_path / "cell.png").read_bytes().startswith(b"\x89PNG")
    bad = run_stage(
        "inspect_arch", "search_space=nb201", "inspect.arch='|conv~0|'", diagram, *shape
    )
    assert_one_line_error(bad, "conv")
