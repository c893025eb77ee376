"""Lightning training of any candidate network on in-memory data.

The names below are imported only when used, so that what only reads prepared data
(`InMemoryData`: evaluate, export) loads neither Lightning nor torchvision.
"""

from typing import TYPE_CHECKING

from nasflow.lazy import exports

if TYPE_CHECKING:
    from nasflow.training.data import InMemoryData
    from nasflow.training.datamodule import InMemoryDataModule
    from nasflow.training.module import ClassifierModule
    from nasflow.training.trainer import TrainerFactory, fit

__all__ = [
    "ClassifierModule",
    "InMemoryData",
    "InMemoryDataModule",
    "TrainerFactory",
    "fit",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        "ClassifierModule": "module",
        "InMemoryData": "data",
        "InMemoryDataModule": "datamodule",
        "TrainerFactory": "trainer",
        "fit": "trainer",
    },
)
