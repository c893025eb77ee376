"""nasflow: neural architecture search with DVC stages, Hydra configs, Lightning and MLflow."""
