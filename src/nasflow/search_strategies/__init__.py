"""Search strategies: how the next architecture to evaluate is chosen.

Each strategy is one module that registers itself (`nasflow.registry.STRATEGIES`); the
names below are imported only when used, so importing one strategy loads no other.
"""

from typing import TYPE_CHECKING

from nasflow.lazy import exports

if TYPE_CHECKING:
    from nasflow.search_strategies.base import SearchStrategy
    from nasflow.search_strategies.evolution import RegularizedEvolution
    from nasflow.search_strategies.grid import GridSearch
    from nasflow.search_strategies.local_search import LocalSearch
    from nasflow.search_strategies.metaqnn import MetaQNN
    from nasflow.search_strategies.mo_evolution import MultiObjectiveEvolution
    from nasflow.search_strategies.morphism import Morphism
    from nasflow.search_strategies.nsga2 import NSGA2Search
    from nasflow.search_strategies.random import RandomSearch
    from nasflow.search_strategies.reinforce import Reinforce
    from nasflow.search_strategies.tpe import TPESearch

__all__ = [
    "GridSearch",
    "LocalSearch",
    "MetaQNN",
    "Morphism",
    "MultiObjectiveEvolution",
    "NSGA2Search",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "SearchStrategy",
    "TPESearch",
]

__getattr__, __dir__ = exports(
    __name__,
    {
        "GridSearch": "grid",
        "LocalSearch": "local_search",
        "MetaQNN": "metaqnn",
        "Morphism": "morphism",
        "MultiObjectiveEvolution": "mo_evolution",
        "NSGA2Search": "nsga2",
        "RandomSearch": "random",
        "RegularizedEvolution": "evolution",
        "Reinforce": "reinforce",
        "SearchStrategy": "base",
        "TPESearch": "tpe",
    },
)
