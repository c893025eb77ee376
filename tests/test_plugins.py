"""A component of one's own is one module plus one option file: written outside nasflow
(a temporary package), named in NASFLOW_PLUGINS / NASFLOW_CONF_PATH, and picked up by
every contract test and by the search stage with no other file edited."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests import launch

# A real, if plain, strategy: the space in a seeded random order, without repeats.
MODULE = '''
import numpy as np

from nasflow.search_strategies.base import SearchStrategy


class ShuffledOrder(SearchStrategy):
    """Every architecture once, in an order drawn from the seed (one shuffle of a pool)."""

    name = "throwaway_shuffled"

    def __init__(self, space, budget, seed=0, pool=200):
        super().__init__(space, budget, seed)
        self.pool = pool
        self.order = None
        self.position = 0

    def ask(self):
        if self.order is None:
            drawn = {}
            for _ in range(self.pool):
                arch = self.space.sample(self.rng)
                drawn.setdefault(arch.id, arch)
            self.order = [drawn[k] for k in self.rng.permutation(sorted(drawn))]
        if self.position >= len(self.order):
            return None
        self.position += 1
        return self.order[self.position - 1]

    def state_dict(self):
        return {**super().state_dict(), "order": self.order, "position": self.position}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.order, self.position = state["order"], state["position"]
'''

OPTION = """# The throwaway strategy of tests/test_plugins.py.
defaults:
  - /schema/strategy/throwaway_shuffled@_here_
budget: 40  # the contract tests' budget
pool: 100  # enough distinct cells for 40 proposals
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    (root / "throwaway_strategies.py").write_text(MODULE)
    (root / "conf" / "strategy").mkdir(parents=True)
    (root / "conf" / "strategy" / "throwaway_shuffled.yaml").write_text(OPTION)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
        "NASFLOW_PLUGINS": "throwaway_strategies",
        "NASFLOW_CONF_PATH": str(root / "conf"),
        "OMP_NUM_THREADS": "1",
    }


def test_every_contract_test_picks_the_plugin_up(plugin: dict[str, str]) -> None:
    tests = ["tests/test_contracts.py", "tests/test_option_files.py"]
    arguments = ["-q", "-p", "no:cacheprovider", *tests, "-k", "throwaway_shuffled"]
    # `python -m pytest ...` in a process of its own, with the plugin's environment.
    done = launch.run(
        ["-c", f"import sys, pytest; sys.exit(pytest.main({arguments!r}))"], env=plugin
    )
    assert done.returncode == 0, done.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))  # type: ignore[union-attr]
    # Seeded and distinct, exact resume, discard, the search stage, the option file.
    assert passed == 5, done.stdout[-2000:]


def test_the_search_stage_runs_the_plugin(
    plugin: dict[str, str], tmp_path: Path, prepared_digits: Path
) -> None:
    prepared = prepared_digits
    done = launch.run(
        launch.stage("search", "strategy=throwaway_shuffled",
         "strategy.budget=2", "estimator.epochs=1", "tracking=none",
         f"paths.prepared={prepared}", f"paths.search={tmp_path / 'search'}",
         f"paths.checkpoints={tmp_path / 'checkpoints'}"),
        env=plugin,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "throwaway_shuffled search over the chain space" in done.stdout + done.stderr
    assert (tmp_path / "search" / "best_architecture.json").is_file()
