"""Search strategies: how the next architecture to evaluate is chosen."""

from nasflow.search_strategies.base import SearchStrategy
from nasflow.search_strategies.evolution import RegularizedEvolution
from nasflow.search_strategies.grid import GridSearch
from nasflow.search_strategies.local_search import LocalSearch
from nasflow.search_strategies.random import RandomSearch
from nasflow.search_strategies.reinforce import Reinforce
from nasflow.search_strategies.tpe import TPESearch

__all__ = [
    "GridSearch",
    "LocalSearch",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "SearchStrategy",
    "TPESearch",
]
