"""Classes for new images with the exported model:

    python pipelines/predict.py inputs=photos/ model=onnx
    python pipelines/predict.py inputs=cat.png model=ckpt output=out.csv

``inputs=``, ``model=`` and ``output=`` are short for ``predict.inputs=`` and so on (the
main config has no such top-level keys, so they are rewritten before Hydra reads them).

The images are read as the training images were prepared (resize, channels, the
normalisation prepare recorded); ``predict.output`` (predictions.csv) gets the file, the
class and its probability for each. The work happens in nasflow.stages.predict; not a
DVC stage (its inputs are the user's).
"""

import sys

import hydra
from omegaconf import DictConfig

from nasflow import cli


@hydra.main(config_path="../conf", config_name="predict", version_base="1.3")
@cli.stage
def main(cfg: DictConfig) -> object:
    from nasflow.stages import predict

    return predict.run(cfg)


SHORT = ("inputs", "model", "output")  # the keys of `predict` that may drop the prefix


def _expand(argument: str) -> str:
    key, equals, _ = argument.partition("=")
    return f"predict.{argument}" if equals and key in SHORT else argument


if __name__ == "__main__":
    sys.argv[1:] = [_expand(argument) for argument in sys.argv[1:]]
    cli.run(main)
