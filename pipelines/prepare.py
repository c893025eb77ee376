"""The prepare stage's entry point; the work happens in nasflow.stages.prepare."""

import hydra

from nasflow.cli import stage
from nasflow.stages import prepare


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@stage
def main(cfg):  # noqa: ANN001, ANN201
    return prepare.run(cfg)


if __name__ == "__main__":
    main()
