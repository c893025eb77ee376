"""Weight inheritance: a candidate that starts from its parent's trained weights.

Two halves, one on each side of the executor:

* In the search process, `WeightStore` keeps the trained weights of evaluated candidates
  on disk, by architecture, bounded to the `keep` best and the `keep` most recent, and
  `InheritingExecutor` hands a task its parent's weights when it is submitted and files
  each evaluation's own when it comes back. The weights travel inside the task and the
  evaluation, so they reach a Ray worker on another machine as well as a local one.
* Where the task trains, `starting_network` builds the child from its parent's trained
  network: by replaying the strategy's network morphisms (`nasflow.morphism`: the child
  computes what its parent did) or, without them, by copying every parameter whose name
  and shape are unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasflow.errors import first_line
from nasflow.executors import Executor, ForwardingExecutor
from nasflow.records import EvaluateFn, Evaluation, Lineage, Task
from nasflow.search_spaces.base import Architecture, SearchSpace

log = logging.getLogger(__name__)


def starting_network(
    space: SearchSpace,
    arch: Architecture,
    lineage: Lineage,
    weights: Mapping[str, Any],
    input_shape: Sequence[int],
    num_classes: int,
) -> tuple[nn.Module, int]:
    """`arch`'s network starting from its parent's trained `weights`, and how many of its
    parameter values came from them.

    With morphisms on the chain space the child is made by replaying them on the
    parent's network; should they not make `arch` (they were drawn on the parent's
    architecture, so they do unless the trained weights rule a step out), the child
    falls back to copying by name and shape, as every other space does. Call it under
    the candidate's seed: whatever the parent does not give is freshly initialised.
    """
    from nasflow.morphism import inherit, morph_all
    from nasflow.search_spaces.chain import ChainArchitecture, ChainNetwork, ChainSpace

    parent = space.build(lineage.parent, input_shape, num_classes)
    parent.load_state_dict(weights)
    if (
        lineage.morphisms
        and isinstance(space, ChainSpace)
        and isinstance(lineage.parent, ChainArchitecture)
        and isinstance(parent, ChainNetwork)
    ):
        made = morph_all(space, lineage.parent, parent, lineage.morphisms)
        if made is not None and made.arch.id == arch.id:
            return made.network, made.inherited
        log.warning(
            "the morphisms of %s do not make %s from its parent's weights; it copies what "
            "matches by name and shape instead",
            arch.id,
            arch.describe(),
        )
    child = space.build(arch, input_shape, num_classes)
    return child, inherit(parent, child)


def cpu_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """The network's `state_dict`, detached and on the CPU (to travel and be saved)."""
    return {name: value.detach().cpu().clone() for name, value in network.state_dict().items()}


class WeightStore:
    """Trained weights by architecture id, one file each in `folder`, at most the `keep`
    best-scoring and the `keep` most recent (so at most 2 * `keep` files).

    The index (score and order of each) is a JSON file beside them; both are written
    aside and renamed, so a kill leaves either the old or the new file. A weight file
    that cannot be written (a full disk) is logged and left out: its children train
    from scratch, and nothing finished is lost.
    """

    INDEX = "index.json"

    def __init__(self, folder: str | Path, keep: int) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.index: dict[str, tuple[float, int]] = {}  # arch id -> (score, order)
        self._next = 0
        path = self.folder / self.INDEX
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                self.index = {k: (float(s), int(o)) for k, (s, o) in data["kept"].items()}
                self._next = int(data["next"])
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("%s is unreadable (%s); the kept weights start afresh", path,
                            first_line(error))  # fmt: skip
                self.index = {}

    def clear(self) -> None:
        """Forget every kept weight (a search that starts afresh)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.index, self._next = {}, 0

    def put(self, arch_id: str, weights: Mapping[str, Any], score: float | None) -> None:
        """Keep `weights` of `arch_id` (scored `score`; None: the worst), then drop what
        is neither among the `keep` best nor the `keep` most recent."""
        path = self._path(arch_id)
        partial = path.with_suffix(".partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save(dict(weights), partial)
            os.replace(partial, path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            log.warning("cannot keep the weights of %s (%s); its children train from scratch",
                        arch_id, error.strerror or error)  # fmt: skip
            return
        value = -math.inf if score is None or not math.isfinite(score) else float(score)
        self.index[arch_id] = (value, self._next)
        self._next += 1
        recent = sorted(self.index, key=lambda k: self.index[k][1])[-self.keep :]
        best = sorted(self.index, key=lambda k: self.index[k])[-self.keep :]
        for gone in set(self.index) - set(recent) - set(best):
            del self.index[gone]
            self._path(gone).unlink(missing_ok=True)
        self._write_index()

    def get(self, arch_id: str) -> dict[str, Any] | None:
        """The kept weights of `arch_id`, or None when they are not kept (any more)."""
        if arch_id not in self.index:
            return None
        try:
            return torch.load(self._path(arch_id), weights_only=True)
        except Exception as error:  # missing or unreadable: the child trains from scratch
            log.warning("cannot read the kept weights of %s (%s)", arch_id, first_line(error))
            return None

    def __contains__(self, arch_id: str) -> bool:
        return arch_id in self.index

    def _path(self, arch_id: str) -> Path:
        return self.folder / f"{arch_id}.pt"

    def _write_index(self) -> None:
        path = self.folder / self.INDEX
        partial = path.with_suffix(".partial")
        kept = {k: [v, o] for k, (v, o) in self.index.items()}  # -inf: json's -Infinity
        try:
            partial.write_text(json.dumps({"kept": kept, "next": self._next}))
            os.replace(partial, path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            log.warning("cannot write %s (%s)", path, error.strerror or error)


class InheritingExecutor(ForwardingExecutor):
    """An executor as the search loop sees it when weights are kept: each task goes out
    asking for its trained weights back and, with a parent, carrying the parent's kept
    ones; each evaluation's weights go to the store (and out of the record) as it
    comes back."""

    def __init__(self, inner: Executor, store: WeightStore) -> None:
        super().__init__(inner)
        self.store = store

    def submit(self, evaluate: EvaluateFn, task: Task) -> None:
        weights = None
        if task.lineage is not None:
            weights = self.store.get(task.lineage.parent.id)
            if weights is None:
                log.warning("the weights of %s's parent are not kept (search.keep_weights); "
                            "it trains from scratch", task.arch.describe())  # fmt: skip
        self.inner.submit(evaluate, replace(task, weights=weights, keep_weights=True))

    def wait(self) -> list[tuple[Task, Evaluation]]:
        finished = []
        for task, evaluation in self.inner.wait():
            if evaluation.weights is not None:
                self.store.put(task.arch.id, evaluation.weights, evaluation.score)
                evaluation.weights = None
            finished.append((replace(task, weights=None), evaluation))
        return finished
