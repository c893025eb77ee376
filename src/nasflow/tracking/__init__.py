"""Tracking: the only place that talks to MLflow (lazily, in `mlflow_tracker`)."""

from nasflow.tracking.base import Tracker, TrackingError, flatten, git_commit

__all__ = ["Tracker", "TrackingError", "flatten", "git_commit"]
