"""Search spaces: which architectures can be found, and how each becomes a network."""

from nasflow.search_spaces.base import Architecture, Decision, SearchSpace
from nasflow.search_spaces.chain import ChainArchitecture, ChainSpace, Layer

__all__ = ["Architecture", "ChainArchitecture", "ChainSpace", "Decision", "Layer", "SearchSpace"]
