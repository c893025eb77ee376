"""Search strategies: how the next architecture to evaluate is chosen."""

from nasflow.search_strategies.base import SearchStrategy
from nasflow.search_strategies.grid import GridSearch
from nasflow.search_strategies.random import RandomSearch

__all__ = ["GridSearch", "RandomSearch", "SearchStrategy"]
