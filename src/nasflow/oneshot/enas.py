"""ENAS (Pham et al. 2018): the supernet's shared weights trained on the architectures
that REINFORCE's LSTM controller samples, the controller on their rewards.

`EnasSearch` (``name = "enas"``) drives the supernet with the one-hot weights of
architectures drawn from a `Reinforce` strategy's controller (`Reinforce.sample`, which
allows repeats: the shared weights are trained on the controller's own distribution).
Each epoch first trains the shared weights (a freshly sampled architecture per training
batch), then samples `controller_steps` architectures, each rewarded with its accuracy on
one validation batch and told to the strategy (`Reinforce.tell`, which learns by
REINFORCE). The result is the best, by accuracy on the whole validation split, of
`final_samples` sampled architectures.

The controller's settings are REINFORCE's own, under ENAS' names, and `Reinforce`
checks them. Every random stream (the data order, the samples, the controller's
initial weights) comes from the search's seed.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from nasflow.errors import NasflowError
from nasflow.oneshot.build import Supernet, one_hot_weights
from nasflow.oneshot.derive import parameter_free_count
from nasflow.oneshot.module import SupernetModule
from nasflow.oneshot.settings import int_setting
from nasflow.oneshot.strategy import Streams, SupernetSearch
from nasflow.ranges import Decay, NonNegativeFloat, PositiveFloat, PositiveInt, Seed
from nasflow.records import Evaluation
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_strategies.reinforce import ControllerSample, Reinforce

# Architectures the controller samples in one batched call while training the weights.
SAMPLE_CHUNK = 32
# `Reinforce`'s defaults, which ENAS' controller settings keep.
REINFORCE_DEFAULTS = {
    name: p.default for name, p in inspect.signature(Reinforce).parameters.items()
}
# ENAS' name of each `Reinforce` setting it passes on, where the two differ.
REINFORCE_NAMES = {
    "controller_batch": "batch_size",
    "controller_lr": "learning_rate",
    "controller_hidden": "hidden_size",
}


def _op_frequencies(
    network: nn.Module, archs: Sequence[Architecture]
) -> dict[str, list[list[float]]]:
    """The mean one-hot op weights of `archs`: how often each edge took each op."""
    total: dict[str, Tensor] = {}
    for arch in archs:
        for cell, weights in one_hot_weights(network, arch).items():
            total[cell] = total[cell] + weights if cell in total else weights.clone()
    return {cell: (w / max(len(archs), 1)).tolist() for cell, w in total.items()}


class EnasModule(SupernetModule):
    """ENAS: shared weights trained on sampled architectures, the controller on rewards.

    Training steps use a fresh controller sample per batch. After the training batches
    of an epoch (`on_train_epoch_end`, by hand, with Lightning's validation loop off):
    `controller_steps` samples, each told its accuracy on the next validation batch; then
    the controller's most likely architecture on the whole validation split; and in the
    last epoch the best of `final_samples` samples on the whole validation split.
    """

    def __init__(
        self,
        reinforce: Reinforce,
        sampling: torch.Generator,
        controller_steps: int,
        final_samples: int,
        val_order: torch.Generator,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reinforce = reinforce  # not a module: the controller stays on the CPU
        self.sampling = sampling
        self.controller_steps = controller_steps
        self.final_samples = final_samples
        self.val_order = val_order
        self._queue: list[Architecture] = []
        self._val_batches: Iterator[Any] | None = None
        # The validation order's state when `_val_batches` was made, and the batches taken
        # from it since: what remaking it on resume needs (an iterator is not saved).
        self._val_start: torch.Tensor | None = None
        self._val_taken = 0
        self.final: list[dict[str, Any]] = []

    def train_dataloader(self) -> DataLoader:
        return self._train_loader()

    @property
    def best(self) -> tuple[dict[str, Any], float] | None:
        """The final candidate of highest validation accuracy (the first drawn on ties),
        as its JSON, and that accuracy; None before the last epoch."""
        if not self.final:
            return None
        top = max(self.final, key=lambda candidate: candidate["val_acc"])  # the first max
        return top["arch"], top["val_acc"]

    def complete(self) -> bool:
        return super().complete() and self.best is not None

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._queue = []

    def _sample(self, count: int, greedy: bool = False) -> list[ControllerSample]:
        """`count` draws from the controller as it stands, from the search's generator."""
        return self.reinforce.sample(count, self.sampling, greedy=greedy)

    def _next_arch(self) -> Architecture:
        if not self._queue:  # the controller does not change while the weights train
            self._queue = [sample.arch for sample in self._sample(SAMPLE_CHUNK)][::-1]
        return self._queue.pop()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        weights = one_hot_weights(self.network, self._next_arch(), self.device)
        self._weight_step(weights, batch)

    def _val_batch(self) -> Any:
        """The next validation batch, in a seeded order that starts over when used up."""
        while True:
            if self._val_batches is None:
                self._val_start, self._val_taken = self.val_order.get_state(), 0
                self._val_batches = self._val_iterator()
            try:
                batch = next(self._val_batches)
            except StopIteration:
                self._val_batches = None
                continue
            self._val_taken += 1
            return batch

    def _val_iterator(self) -> Iterator[Any]:
        loader = DataLoader(
            self.val_set,
            batch_size=self.settings.batch_size,
            shuffle=True,
            generator=self.val_order,
        )
        return iter(loader)

    def resume_state(self) -> dict[str, Any]:
        # The controller is not a module of this one (it stays on the CPU): its weights,
        # Adam state, baseline and generators go here, with `Reinforce`'s exact-resume state.
        return {
            **super().resume_state(),
            "reinforce": self.reinforce.state_dict(),
            "sampling": self.sampling.get_state(),
            "val_order": self.val_order.get_state(),
            "val_start": self._val_start if self._val_batches is not None else None,
            "val_taken": self._val_taken,
            "final": copy.deepcopy(self.final),
        }

    def load_resume_state(self, state: dict[str, Any]) -> None:
        super().load_resume_state(state)
        self.reinforce.load_state_dict(state["reinforce"])
        self.sampling.set_state(state["sampling"])
        if state["val_start"] is not None:  # remake the order part-way through, as it was
            self.val_order.set_state(state["val_start"])
            self._val_start, self._val_taken = state["val_start"], 0
            self._val_batches = self._val_iterator()
            for _ in range(state["val_taken"]):
                next(self._val_batches)
                self._val_taken += 1
        self.val_order.set_state(state["val_order"])
        self.final = copy.deepcopy(state["final"])

    def on_train_epoch_end(self) -> None:
        samples = self._sample(self.controller_steps)
        with self._evaluating():
            rewards = [
                self._evaluate(
                    one_hot_weights(self.network, s.arch, self.device), [self._val_batch()]
                )[1]
                for s in samples
            ]
        for sample, reward in zip(samples, rewards, strict=True):
            self.reinforce.tell(sample.arch, Evaluation(status="ok", score=reward))

        greedy = self._sample(1, greedy=True)[0].arch
        greedy_weights = one_hot_weights(self.network, greedy, self.device)
        with self._evaluating():
            val_loss, val_acc = self._evaluate(greedy_weights, self._eval_loader())
        record: dict[str, Any] = {
            "val_loss": val_loss,
            "val_acc": val_acc,
            "score": val_acc,
            "entropy": float(np.mean([s.entropy for s in samples])),
            "parameter_free": parameter_free_count(greedy),
            "arch": greedy.to_json(),
            "arch_description": greedy.describe(),
            "alphas": _op_frequencies(self.network, [s.arch for s in samples]),
            "reward": float(np.mean(rewards)),
        }
        record.update({f"controller.{k}": v for k, v in self.reinforce.metrics().items()})
        if self.current_epoch == self.settings.epochs - 1:
            self._choose_final()
        self._finish_epoch(record)

    def _choose_final(self) -> None:
        """ENAS' derivation: the best of `final_samples` controller samples on the whole
        validation split (each architecture evaluated once; ties go to the first drawn)."""
        candidates: dict[str, Architecture] = {}
        for sample in self._sample(self.final_samples):
            candidates.setdefault(sample.arch.id, sample.arch)
        final = []
        with self._evaluating():
            for arch in candidates.values():
                weights = one_hot_weights(self.network, arch, self.device)
                loss, acc = self._evaluate(weights, self._eval_loader())
                final.append({"arch": arch.to_json(), "val_loss": loss, "val_acc": acc})
        self.final = final


class EnasSearch(SupernetSearch):
    """ENAS (Pham et al. 2018) on an NB201 or DARTS supernet, with `Reinforce`'s controller.

    Args:
        space, seed: As for `DartsSearch`.
        controller_steps: Architectures sampled and rewarded after each epoch's weight
            training, each with its accuracy on one validation batch.
        controller_batch: Rewards per controller update (`Reinforce`'s batch_size).
        controller_lr: The controller's Adam learning rate (`Reinforce`'s
            learning_rate).
        entropy_weight: `Reinforce`'s entropy bonus.
        baseline_decay: `Reinforce`'s moving-average baseline decay.
        controller_hidden: The controller's LSTM width (`Reinforce`'s hidden_size).
        final_samples: Architectures sampled at the end; the best on the validation split
            is the result.
        **weights: The supernet's weights and data (`WeightSettings`).
    """

    name = "enas"
    random_streams = ("train_order", "val_order", "sampling", "subset", "controller")
    affine = True

    def __init__(
        self,
        space: SearchSpace,
        seed: Seed = 0,
        controller_steps: PositiveInt = 20,
        controller_batch: PositiveInt = REINFORCE_DEFAULTS["batch_size"],
        controller_lr: PositiveFloat = REINFORCE_DEFAULTS["learning_rate"],
        entropy_weight: NonNegativeFloat = REINFORCE_DEFAULTS["entropy_weight"],
        baseline_decay: Decay = REINFORCE_DEFAULTS["baseline_decay"],
        controller_hidden: PositiveInt = REINFORCE_DEFAULTS["hidden_size"],
        final_samples: PositiveInt = 10,
        **weights: Any,
    ) -> None:
        super().__init__(space, seed, weights)
        self.controller_steps = int_setting("controller_steps", controller_steps)
        self.final_samples = int_setting("final_samples", final_samples)
        self.controller_settings: dict[str, Any] = {
            "batch_size": controller_batch,
            "learning_rate": controller_lr,
            "entropy_weight": entropy_weight,
            "baseline_decay": baseline_decay,
            "hidden_size": controller_hidden,
        }
        self._reinforce(seed=0)  # `Reinforce` checks its settings here, before any training

    def _reinforce(self, seed: int) -> Reinforce:
        """A fresh `Reinforce` strategy with the controller's settings."""
        try:
            return Reinforce(
                self.space,
                budget=max(1, self.weights.epochs * self.controller_steps),
                seed=seed,
                **self.controller_settings,
            )
        except NasflowError as error:
            renamed = ", ".join(
                f"{ours} is its {theirs}" for ours, theirs in REINFORCE_NAMES.items()
            )
            raise NasflowError(f"{error} (enas' controller is reinforce's: {renamed})") from None

    def _module(self, network: Supernet, streams: Streams, inputs: dict[str, Any]) -> EnasModule:
        seed = int(torch.randint(2**62, (1,), generator=streams["controller"]))
        return EnasModule(
            reinforce=self._reinforce(seed),
            sampling=streams["sampling"],
            controller_steps=self.controller_steps,
            final_samples=self.final_samples,
            val_order=streams["val_order"],
            **inputs,
        )

    def _outcome(
        self, module: SupernetModule, network: Supernet
    ) -> tuple[Architecture, float, dict[str, Any]]:
        """The best of the final samples, its accuracy, and every final candidate."""
        assert isinstance(module, EnasModule) and module.best is not None  # `complete`
        arch, score = module.best
        details = {"ops": list(network.ops), "final_candidates": module.final}
        return self.space.from_json(arch), score, details
