"""Classes for new images with the exported model:

    python pipelines/predict.py predict.inputs=photos/ predict.model=onnx
    python pipelines/predict.py predict.inputs=cat.png predict.model=ckpt predict.output=out.csv

The images are read as the training images were prepared (resize, channels, the
normalisation prepare recorded); ``predict.output`` (predictions.csv) gets the file, the
class and its probability for each. The work happens in nasflow.stages.predict; not a
DVC stage (its inputs are the user's).
"""

import hydra
from omegaconf import DictConfig

from nasflow import cli


@hydra.main(config_path="../conf", config_name="predict", version_base="1.3")
@cli.stage
def main(cfg: DictConfig) -> object:
    from nasflow.stages import predict

    return predict.run(cfg)


if __name__ == "__main__":
    cli.run(main)
