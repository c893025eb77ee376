"""The zoo of hand-designed networks: each builds at the data's shape, the published
parameter counts, and the pipeline takes them as it takes searched architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from nasflow.errors import NasflowError
from nasflow.measure import count_params
from nasflow.search_spaces.zoo import NETWORKS, ZooArchitecture, ZooSpace
from nasflow.stages import evaluate, export, retrain, search
from tests.conftest import compose_config
from tests.test_inspect import inspect

SPACE = ZooSpace(widths=(0.5, 1.0))


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_network_runs_forward_and_backward(network: str, shape: tuple[int, ...]) -> None:
    for width in SPACE.widths:
        net = SPACE.build(ZooArchitecture(network, width), shape, num_classes=10)
        logits = net(torch.randn(2, *shape))
        assert logits.shape == (2, 10)
        logits.sum().backward()
        assert all(p.grad is not None for p in net.parameters())


def test_the_cifar_resnets_have_the_published_parameter_counts() -> None:
    # He et al. 2016, table 6: 0.27 M and 0.85 M (option A shortcuts: no parameters).
    counts = {
        name: count_params(SPACE.build(ZooArchitecture(name, 1.0), (3, 32, 32), 10))
        for name in ("resnet20", "resnet56")
    }
    assert counts == {"resnet20": 269_722, "resnet56": 853_018}
    assert round(counts["resnet20"] / 1e6, 2) == 0.27 and round(counts["resnet56"] / 1e6, 2) == 0.85


def test_the_width_multiplier_scales_the_network() -> None:
    for name in NETWORKS:
        sizes = [
            count_params(SPACE.build(ZooArchitecture(name, w), (3, 32, 32), 10)) for w in (0.5, 1.0)
        ]
        assert sizes[0] < sizes[1], name
    # Every layer of ResNet-20 doubles: the convolutions' weights grow four times.
    half = count_params(SPACE.build(ZooArchitecture("resnet20", 0.5), (3, 32, 32), 10))
    assert 3.8 < 269_722 / half < 4.0


def test_grid_enumerates_every_network_at_every_width() -> None:
    archs = list(SPACE.enumerate())
    assert len(archs) == SPACE.size() == len(NETWORKS) * 2
    assert {a.describe() for a in archs} >= {"resnet20 x1", "lenet5 x0.5", "mobilenetv2 x1"}


def test_parse_takes_the_description_and_bad_names_are_named() -> None:
    assert SPACE.parse("resnet56 x0.5") == ZooArchitecture("resnet56", 0.5)
    assert SPACE.parse("resnet20") == ZooArchitecture("resnet20", 1.0)
    assert SPACE.parse('{"network": "lenet5", "width": 1}') == ZooArchitecture("lenet5", 1.0)
    with pytest.raises(NasflowError, match=r"width=3 is not allowed here \(allowed: 0.5, 1\)"):
        SPACE.parse("resnet20 x3")
    with pytest.raises(NasflowError, match=r"network=alexnet is not allowed here"):
        SPACE.from_json({"network": "alexnet", "width": 1})
    with pytest.raises(NasflowError, match=r"unknown resnet18; choose from lenet5, vgg_small"):
        ZooSpace(networks=["resnet18"])
    with pytest.raises(NasflowError, match=r"search_space.widths=\[0\]"):
        ZooSpace(widths=[0])


def test_inspect_shows_a_zoo_network(tmp_path: Path) -> None:
    figures = inspect(
        tmp_path,
        "search_space=zoo",
        "inspect.arch='resnet20 x1'",
        "inspect.input_shape=[3,32,32]",
        "inspect.num_classes=10",
    )
    assert figures["params"] == 269_722 and figures["architecture"] == "resnet20 x1"
    svg = (tmp_path / "arch.svg").read_text()
    assert "3 basic blocks, 64, /2" in svg


@pytest.mark.slow
def test_grid_over_the_zoo_then_retrain_evaluate_and_export(
    tiny_cfg: DictConfig, tmp_path: Path
) -> None:
    """`strategy=grid search_space=zoo`: the best hand design, through every stage."""
    cfg = compose_config(
        [
            "search_space=zoo",
            "search_space.networks=[lenet5,resnet20]",
            "search_space.widths=[0.25]",
            "strategy=grid",
            "strategy.budget=2",
            "estimator.epochs=1",
            "retrain.epochs=1",
            "tracking=none",
            "data.augment.crop_padding=1",
            *[f"paths.{key}={path}" for key, path in tiny_cfg.paths.items()],
            f"paths.export={tmp_path / 'export'}",
        ]
    )
    summary = search.run(cfg)
    assert summary["evaluated"] == 2
    history = [json.loads(line) for line in (Path(cfg.paths.search) / "history.jsonl").open()]
    assert {r["description"] for r in history} == {"lenet5 x0.25", "resnet20 x0.25"}
    retrain.run(cfg)
    model = json.loads((Path(cfg.paths.retrain) / "model.json").read_text())
    assert model["space"] == "zoo" and model["augment"] == "random crop (padding 1)"
    assert evaluate.run(cfg)["test_acc"] >= 0.0
    figures = export.run(cfg)
    assert max(figures["max_abs_difference"].values()) <= 1e-4
