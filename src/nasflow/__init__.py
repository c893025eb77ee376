"""nasflow: neural architecture search with DVC stages, Hydra configs, Lightning and MLflow."""

__version__ = "0.1.0"
