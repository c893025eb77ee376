"""Inspect one architecture (parameters, FLOPs, diagram); see nasflow.stages.inspect_arch."""

import hydra
from omegaconf import DictConfig

from nasflow import cli


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@cli.stage
def main(cfg: DictConfig) -> object:
    # Imported here so that a bad override is reported before torch and Lightning load.
    from nasflow.stages import inspect_arch

    return inspect_arch.run(cfg)


if __name__ == "__main__":
    cli.run(main)
