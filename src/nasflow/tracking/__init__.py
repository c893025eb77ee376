"""Tracking: the only place that talks to MLflow (lazily, in `mlflow_tracker`)."""

from nasflow.tracking.base import OWNER_TAG, Tracker, TrackingError, flatten, git_commit

__all__ = ["OWNER_TAG", "Tracker", "TrackingError", "flatten", "git_commit"]
