"""Performance estimators: how good a candidate architecture is, at what cost.

Each estimator registers itself (`nasflow.registry.ESTIMATORS`); the names below are
imported only when used, so the records and the base class load without Lightning.
"""

from typing import TYPE_CHECKING

from nasflow.lazy import exports

if TYPE_CHECKING:
    from nasflow.estimators.base import Estimator
    from nasflow.estimators.fidelity import (
        ASHA,
        AsyncHyperband,
        CurveStopping,
        Hyperband,
        SuccessiveHalving,
    )
    from nasflow.estimators.filters import (
        PredictorRanker,
        PreFilter,
        ProxyEstimator,
        ProxyRanker,
    )
    from nasflow.estimators.tabular import NB201TableEstimator
    from nasflow.estimators.training import TrainingEstimator

__all__ = [
    "ASHA",
    "AsyncHyperband",
    "CurveStopping",
    "Estimator",
    "Hyperband",
    "NB201TableEstimator",
    "PreFilter",
    "PredictorRanker",
    "ProxyEstimator",
    "ProxyRanker",
    "SuccessiveHalving",
    "TrainingEstimator",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        "ASHA": "fidelity",
        "AsyncHyperband": "fidelity",
        "CurveStopping": "fidelity",
        "Estimator": "base",
        "Hyperband": "fidelity",
        "NB201TableEstimator": "tabular",
        "PreFilter": "filters",
        "PredictorRanker": "filters",
        "ProxyEstimator": "filters",
        "ProxyRanker": "filters",
        "SuccessiveHalving": "fidelity",
        "TrainingEstimator": "training",
    },
)
