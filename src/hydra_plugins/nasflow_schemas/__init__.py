"""Registers nasflow's config schemas whenever Hydra starts, in any process.

Hydra imports every module under the `hydra_plugins` namespace while it discovers plugins.
That is how DVC's Hydra composition (`dvc exp run -S ...`), which runs inside DVC and never
imports nasflow itself, still finds the schemas that conf/ builds on.
"""

from nasflow.config import register_configs

register_configs()
