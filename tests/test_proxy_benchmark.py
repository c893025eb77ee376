"""pipelines/proxy_benchmark.py on a few cells, with the prepared digits as the minibatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasflow.errors import NasflowError
from nasflow.proxies import PROXIES
from nasflow.stages import proxy_benchmark
from tests.conftest import compose_config


def run(tmp_path: Path, prepared: Path, *overrides: str) -> dict:
    cfg = compose_config(
        [
            "proxy_benchmark.samples=5",
            "proxy_benchmark.batch_size=8",
            f"proxy_benchmark.data_root={tmp_path / 'no-cifar'}",
            f"proxy_benchmark.output={tmp_path / 'out'}",
            f"paths.prepared={prepared}",
            *overrides,
        ]
    )
    return proxy_benchmark.run(cfg)


def test_scores_cells_and_reports_rank_correlations(tmp_path: Path, prepared_digits: Path) -> None:
    result = run(tmp_path, prepared_digits, "proxy_benchmark.proxies=[synflow,params,naswot]")
    assert result["minibatch"] == "prepared" and result["cells"] == 5
    assert set(result["proxies"]) == {"synflow", "params", "naswot"}
    for figures in result["proxies"].values():
        assert -1.0 <= figures["spearman_cifar10_test_acc"] <= 1.0
        assert figures["ms_per_network"] > 0
    # The vote uses the requested proxies it has scores for.
    assert result["vote"]["proxies"] == ["synflow", "naswot"]
    written = json.loads((tmp_path / "out" / "proxies.json").read_text())
    assert [c["arch"] for c in written["cells_scored"]] == [
        c["arch"] for c in result["cells_scored"]
    ]
    # Seeded: the same cells and the same scores again.
    again = run(tmp_path, prepared_digits, "proxy_benchmark.proxies=[synflow,params,naswot]")
    assert again["cells_scored"] == result["cells_scored"]


def test_bad_settings(tmp_path: Path, prepared_digits: Path) -> None:
    with pytest.raises(NasflowError, match="unknown proxy 'zen'"):
        run(tmp_path, prepared_digits, "proxy_benchmark.proxies=[zen]")
    with pytest.raises(NasflowError, match="no CIFAR-10 ImageFolder"):
        run(tmp_path, tmp_path / "missing")


def test_every_proxy_is_known_to_the_default_vote() -> None:
    assert set(compose_config().proxy_benchmark.vote) <= set(PROXIES)


def test_saved_scores_are_correlated_again_without_rescoring(
    tmp_path: Path, prepared_digits: Path
) -> None:
    first = run(tmp_path, prepared_digits, "proxy_benchmark.proxies=[synflow,params]")
    saved = tmp_path / "first.json"
    saved.write_text((tmp_path / "out" / "proxies.json").read_text())
    again = run(
        tmp_path, prepared_digits, f"proxy_benchmark.from_scores={saved}", "paths.prepared=/none"
    )  # no data needed: nothing is scored
    assert again["rescored_from"] == str(saved)
    assert again["cells_scored"] == first["cells_scored"]
    for name in ("synflow", "params"):
        for column in ("cifar10_valid_test_acc", "cifar10_test_acc", "cifar10_valid_acc"):
            key = f"spearman_{column}"
            assert again["proxies"][name][key] == pytest.approx(first["proxies"][name][key])
    (tmp_path / "bad.json").write_text('{"proxies": {}}')
    with pytest.raises(NasflowError, match=r"is not a proxies\.json written by this benchmark"):
        run(tmp_path, prepared_digits, f"proxy_benchmark.from_scores={tmp_path / 'bad.json'}")
