"""Lightning training of any candidate network on in-memory data."""

from nasflow.training.data import InMemoryData, InMemoryDataModule
from nasflow.training.fit import TrainerFactory, fit
from nasflow.training.module import ClassifierModule

__all__ = [
    "ClassifierModule",
    "InMemoryData",
    "InMemoryDataModule",
    "TrainerFactory",
    "fit",
]
