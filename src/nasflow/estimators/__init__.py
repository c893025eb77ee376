"""Performance estimators: how good a candidate architecture is, at what cost."""

from nasflow.estimators.base import Estimator, Evaluation
from nasflow.estimators.training import TrainingEstimator

__all__ = ["Estimator", "Evaluation", "TrainingEstimator"]
