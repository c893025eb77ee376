"""The export stage's entry point: the retrained network as ONNX and TorchScript, checked
against PyTorch on the test batch; the work happens in nasflow.stages.export."""

import hydra
from omegaconf import DictConfig

from nasflow import cli


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
@cli.stage
def main(cfg: DictConfig) -> object:
    # A bad override, or a tracking store that cannot be used, is reported before torch
    # loads: the stage is imported after the check.
    cli.check_tracking(cfg.tracking)
    from nasflow.stages import export

    return export.run(cfg)


if __name__ == "__main__":
    cli.run(main)
