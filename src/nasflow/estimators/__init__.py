"""Performance estimators: how good a candidate architecture is, at what cost."""

from nasflow.estimators.base import Estimator, Evaluation
from nasflow.estimators.fidelity import CurveStopping, Hyperband, SuccessiveHalving
from nasflow.estimators.filters import (
    PredictorRanker,
    PreFilter,
    ProxyEstimator,
    ProxyRanker,
)
from nasflow.estimators.training import TrainingEstimator

__all__ = [
    "CurveStopping",
    "Estimator",
    "Evaluation",
    "Hyperband",
    "PreFilter",
    "PredictorRanker",
    "ProxyEstimator",
    "ProxyRanker",
    "SuccessiveHalving",
    "TrainingEstimator",
]
