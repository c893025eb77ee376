"""Registers nasflow's config schemas whenever Hydra starts, in any process, and adds the
config folders of the user's own components to Hydra's search path.

Hydra imports every module under the `hydra_plugins` namespace while it discovers plugins.
That is how DVC's Hydra composition (`dvc exp run -S ...`), which runs inside DVC and never
imports nasflow itself, still finds the schemas that conf/ builds on.
"""

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from nasflow.config import register_configs

#: Folders (os.pathsep-separated) holding option files of components outside nasflow,
#: laid out as conf/ is (``<folder>/strategy/mine.yaml``); their modules are named in
#: ``NASFLOW_PLUGINS`` (`nasflow.registry`).
CONF_PATH_VARIABLE = "NASFLOW_CONF_PATH"

register_configs()


class NasflowPluginConfigs(SearchPathPlugin):
    """Appends the folders of ``NASFLOW_CONF_PATH`` to the config search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in filter(None, os.environ.get(CONF_PATH_VARIABLE, "").split(os.pathsep)):
            search_path.append("nasflow-plugins", Path(folder).resolve().as_uri())
