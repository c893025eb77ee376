"""retrain.select: which searched candidate is retrained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig

from nasflow.errors import NasflowError
from nasflow.selection import knee, parse_rule, select
from nasflow.stages import evaluate, retrain, search


def _history() -> list[dict[str, Any]]:
    rows = [(0, 0.950, 90_000), (1, 0.962, 200_000), (2, 0.958, 40_000), (3, 0.930, 5_000)]
    rows += [(4, 0.961, 150_000), (5, 0.940, None)]
    history = [
        {"iteration": i, "status": "ok", "score": s, "params": p, "architecture": {"n": i}}
        for i, s, p in rows
    ]
    history.append({"iteration": 6, "status": "failed", "score": None, "params": 1})
    return history


PARETO = {
    "objectives": ["val_acc:max", "params:min"],
    "front": [
        {"iteration": 1, "objectives": {"val_acc": 0.962, "params": 200_000}},
        {"iteration": 4, "objectives": {"val_acc": 0.961, "params": 150_000}},
        {"iteration": 2, "objectives": {"val_acc": 0.958, "params": 40_000}},
        {"iteration": 3, "objectives": {"val_acc": 0.930, "params": 5_000}},
    ],
}


def test_rules_are_parsed_from_what_hydra_and_yaml_give() -> None:
    assert parse_rule("best") == ("best", None)
    assert parse_rule("knee") == ("knee", None)
    assert parse_rule("smallest_within:0.5") == ("smallest_within", 0.5)
    assert parse_rule({"smallest_within": 0.5}) == ("smallest_within", 0.5)
    assert parse_rule(2) == ("index", 2) == parse_rule("2")
    for bad in ("largest", "smallest_within:lots", True, -1):
        with pytest.raises(NasflowError, match=r"^retrain\.select=.* is not a rule; choose from"):
            parse_rule(bad)


def test_smallest_within_takes_the_fewest_parameters_near_the_best_score() -> None:
    picked = select("smallest_within:0.5", _history(), PARETO)
    assert picked is not None and picked["iteration"] == 2  # 0.958 >= 0.962 - 0.005
    picked = select("smallest_within:0.05", _history(), PARETO)
    assert picked is not None and picked["iteration"] == 1  # only the best is that close
    assert select("best", _history(), PARETO) is None


def test_an_index_and_the_knee_pick_from_the_front() -> None:
    assert select(3, _history(), PARETO)["iteration"] == 3  # type: ignore[index]
    with pytest.raises(NasflowError, match="the front has 4 members"):
        select(4, _history(), PARETO)
    # Scaled, the front bends most at (0.958, 40k): a little accuracy for a fifth the size.
    assert select("knee", _history(), PARETO)["iteration"] == 2  # type: ignore[index]
    assert knee(np.array([[1.0, -1.0], [0.9, -0.1], [0.0, 0.0]]), [True, True]) == 1


@pytest.mark.slow
def test_retrain_trains_the_selected_candidate_and_evaluate_scores_it(
    tiny_cfg: DictConfig,
) -> None:
    tiny_cfg.strategy.budget = 4
    search.run(tiny_cfg)
    history = [
        json.loads(line)
        for line in (Path(tiny_cfg.paths.search) / "history.jsonl").read_text().splitlines()
    ]
    tiny_cfg.retrain.select = "smallest_within:100"  # anything trained counts: the smallest
    trained = retrain.run(tiny_cfg)
    model = json.loads((Path(tiny_cfg.paths.retrain) / "model.json").read_text())
    smallest = min((r for r in history if r["status"] == "ok"), key=lambda r: r["params"])
    assert model["id"] == smallest["id"] and "smallest within 100 points" in model["selected"]
    assert trained["params"] == smallest["params"]
    assert 0 <= evaluate.run(tiny_cfg)["test_acc"] <= 1  # evaluate reads what retrain wrote


@pytest.mark.slow
def test_top_k_retrains_the_runners_up_beside_the_selected_and_a_smaller_k_removes_them(
    tiny_cfg: DictConfig,
) -> None:
    search.run(tiny_cfg)
    history = [
        json.loads(line)
        for line in (Path(tiny_cfg.paths.search) / "history.jsonl").read_text().splitlines()
    ]
    by_score = sorted(history, key=lambda r: (-r["score"], r["iteration"]))
    tiny_cfg.retrain.top_k = 2
    first = retrain.run(tiny_cfg)
    out = Path(tiny_cfg.paths.retrain)
    top = json.loads((out / "top.json").read_text())
    assert [t["id"] for t in top] == [r["id"] for r in by_score[:2]]
    assert top[0]["params"] == first["params"] and top[0]["model"] == "model.json"
    second = json.loads((out / "top2.model.json").read_text())
    assert second["id"] == by_score[1]["id"] and second["checkpoint"] == "top2.model.ckpt"
    assert (out / "top2.model.ckpt").is_file() and (out / "top2.metrics.json").is_file()
    assert 0 <= evaluate.run(tiny_cfg)["test_acc"] <= 1  # evaluate scores the selected one

    tiny_cfg.retrain.top_k = 1
    retrain.run(tiny_cfg)
    assert not list(out.glob("top*")), "a smaller top_k leaves no stale runner-up"


def test_top_k_refuses_a_distributed_retrain(tiny_cfg: DictConfig) -> None:
    tiny_cfg.retrain.top_k = 2
    tiny_cfg.retrain.devices = 2
    tiny_cfg.retrain.strategy = "ddp"
    with pytest.raises(NasflowError, match=r"retrain\.top_k=2 trains one model after another"):
        retrain.run(tiny_cfg)
