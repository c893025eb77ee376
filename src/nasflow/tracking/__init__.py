"""Tracking: the only place that talks to MLflow (lazily, in `mlflow_tracker`)."""

from nasflow.tracking.base import Tracker, flatten, git_commit

__all__ = ["Tracker", "flatten", "git_commit"]
