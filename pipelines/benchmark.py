"""Benchmark a search strategy on the NAS-Bench-201 table: many seeds, no training.

    python pipelines/benchmark.py strategy=evolution benchmark.seeds=100 benchmark.queries=150
    python pipelines/benchmark.py -m strategy=random,evolution,reinforce,tpe,local_search

Each run writes ``<benchmark.output>/<strategy>.json`` (per-seed incumbent curves, final
mean and std, the exact random-search expectation, seconds) and redraws
``<benchmark.output>/comparison.png`` from every strategy JSON there. The work happens in
nasflow.stages.benchmark; not a DVC stage (it reads only the shipped table).
"""

import hydra
from omegaconf import DictConfig

from nasflow import cli


@hydra.main(config_path="../conf", config_name="benchmark", version_base="1.3")
@cli.stage
def main(cfg: DictConfig) -> object:
    # Imported here so that a bad override is reported before torch and the table load.
    from nasflow.stages import benchmark

    return benchmark.run(cfg)


if __name__ == "__main__":
    cli.run(main)
