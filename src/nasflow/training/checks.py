"""The optimizers and the Lightning Trainer a config builds, checked before any training.

Their settings (``lr``, ``betas``, ``weight_decay``; ``devices``, ``precision``) are torch's
and Lightning's, not nasflow's, so they declare no range here: the libraries check them
when they build an optimizer or a Trainer, which is inside every candidate's training.
Building each once at stage start (an optimizer on a stand-in parameter) gives the same
checks before any work, naming the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from nasflow.errors import NasflowError, first_line


def check_optimizers(node: Any, where: str) -> None:
    """Build every optimizer `node` (at key `where`) configures, on a stand-in parameter.

    Raises:
        NasflowError: The first optimizer torch refuses, in one line naming its key and
            torch's reason, e.g. "estimator.optimizer (torch.optim.AdamW) refuses its
            settings: Invalid learning rate: -1.0".
    """
    for key, optimizer in _optimizers(node, where):
        try:
            instantiate(optimizer)([torch.nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as error:
            raise NasflowError(
                f"{key} ({optimizer._target_}) refuses its settings: {error}"
            ) from None


def check_trainer(node: DictConfig, where: str = "trainer") -> None:
    """Build the Trainer `node` configures (a ``_partial_``) once, as a candidate would.

    Raises:
        NasflowError: Lightning refuses a setting, in one line naming `where`.
    """
    try:
        instantiate(node)(logger=False, max_epochs=1)
    except Exception as error:  # Lightning's MisconfigurationException, ValueError, ...
        first = first_line(error)
        raise NasflowError(f"{where} ({node._target_}) refuses its settings: {first}") from None


def _optimizers(node: Any, where: str) -> Iterator[tuple[str, DictConfig]]:
    """(key, node) of every ``_partial_`` torch optimizer at or under `node`."""
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if isinstance(target, str) and node.get("_partial_") and _is_optimizer(target):
            yield where, node
            return
        for key in node:
            if not OmegaConf.is_missing(node, key):  # a value left unset is not built
                yield from _optimizers(node[key], f"{where}.{key!s}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _optimizers(item, f"{where}[{i}]")


def _is_optimizer(target: str) -> bool:
    try:
        cls = get_class(target)
    except Exception:  # not a class (a function, a typo): not an optimizer to check here
        return False
    return isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
