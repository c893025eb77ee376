"""Search spaces: which architectures can be found, and how each becomes a network.

Importing this package registers every space in `SearchSpace.registry` by its name.
"""

from nasflow.search_spaces.base import Architecture, Decision, Graph, SearchSpace
from nasflow.search_spaces.chain import ChainArchitecture, ChainSpace, Layer
from nasflow.search_spaces.darts import DARTS_V1, DARTS_V2, DartsGenotype, DartsSpace
from nasflow.search_spaces.nasnet import NASNET_A, NASNetArchitecture, NASNetSpace
from nasflow.search_spaces.nb201 import NB201Architecture, NB201Space
from nasflow.search_spaces.zoo import ZooArchitecture, ZooSpace

__all__ = [
    "DARTS_V1",
    "DARTS_V2",
    "NASNET_A",
    "Architecture",
    "ChainArchitecture",
    "ChainSpace",
    "DartsGenotype",
    "DartsSpace",
    "Decision",
    "Graph",
    "Layer",
    "NASNetArchitecture",
    "NASNetSpace",
    "NB201Architecture",
    "NB201Space",
    "SearchSpace",
    "ZooArchitecture",
    "ZooSpace",
]
