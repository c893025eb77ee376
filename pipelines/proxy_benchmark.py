"""Zero-cost proxies against the NAS-Bench-201 table; see nasflow.stages.proxy_benchmark."""

import hydra
from omegaconf import DictConfig

from nasflow import cli


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@cli.stage
def main(cfg: DictConfig) -> object:
    # Imported here so that a bad override is reported before torch and Lightning load.
    from nasflow.stages import proxy_benchmark

    return proxy_benchmark.run(cfg)


if __name__ == "__main__":
    cli.run(main)
