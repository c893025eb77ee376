"""Write params.yaml from conf/, exactly as `dvc exp run` does before running the stages.

`dvc repro` reads params.yaml as it is, so a fresh clone needs one that matches conf/.
Run ``python -m nasflow.params`` after editing conf/ (the tests check it is current).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nasflow.config import register_configs


def compose_params(config_dir: str | Path = "conf", overrides: list[str] | None = None) -> str:
    """The YAML that DVC's Hydra composition would write for `overrides`."""
    register_configs()
    with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=overrides or [])
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. strategy=grid")
    parser.add_argument("--output", default="params.yaml")
    args = parser.parse_args()
    Path(args.output).write_text(compose_params(overrides=args.overrides))


if __name__ == "__main__":
    main()
