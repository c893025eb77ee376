"""DARTS, GDAS and DrNAS as one search, with DARTS-PT's perturbation-based selection.

`DartsSearch` (``name = "darts"``) trains continuous architecture parameters alpha,
optimised by DARTS' architect (`nasflow.oneshot.architect`) on validation batches,
alternating with SGD steps on the supernet's weights on training batches. The relaxation
chooses the method: ``softmax`` (DARTS, Liu et al. 2019), ``gumbel`` (GDAS, Dong & Yang
2019; tau annealed linearly from 10 to 0.1 over the epochs) or ``dirichlet`` (DrNAS,
Chen et al. 2021; with its warm-up, regularisers and progressive shrinking). The
architecture is derived from the relaxation's derivation weights
(`nasflow.oneshot.derive`), or, with ``selection="perturbation"`` (DARTS-PT, Wang et al.
2021), edge by edge from the validation accuracy the supernet loses without each op.

The random streams (alpha's initial values, the order of the training and validation
batches, the Gumbel and Dirichlet samples) all come from the search's seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from annotated_types import Interval
from pytorch_lightning.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler
from torchmetrics import MeanMetric

from nasflow.errors import NasflowError
from nasflow.oneshot.architect import Architect
from nasflow.oneshot.build import Supernet, one_hot_weights
from nasflow.oneshot.derive import derive, parameter_free_count
from nasflow.oneshot.module import SupernetModule
from nasflow.oneshot.relaxation import (
    RELAXATIONS,
    ArchParameters,
    Gumbel,
    Relaxation,
    entropy,
    linear_tau,
    make_relaxation,
)
from nasflow.oneshot.settings import int_setting, number_setting, optional_int_setting
from nasflow.oneshot.strategy import Streams, SupernetSearch
from nasflow.oneshot.supernet import supernet_logits
from nasflow.ranges import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Seed
from nasflow.search_spaces.base import Architecture, SearchSpace
from nasflow.search_spaces.nb201 import NB201Space

# How the discrete architecture is read off the supernet: the largest op weight per edge
# (DARTS), or each edge's op whose removal costs the most validation accuracy (DARTS-PT).
SELECTIONS = ("magnitude", "perturbation")
# GDAS' temperature schedule over the epochs.
TAU_MAX, TAU_MIN = 10.0, 0.1


class DartsModule(SupernetModule):
    """DARTS' bilevel search with manual optimisation.

    Each training step takes a training and a validation batch (a `CombinedLoader` whose
    validation half is drawn, with its own seeded order, as many times as there are
    training examples, so an epoch is one pass over the training split as in DARTS):
    first an architect step on alpha (validation loss; unrolled over one SGD step of the
    weights at order 2), then an SGD step on the weights with the relaxed op weights on
    the training batch. Lightning's validation loop then evaluates the supernet under the
    derivation weights and the derived architecture with one-hot weights.
    """

    def __init__(
        self,
        arch_params: ArchParameters,
        relaxation: Relaxation,
        order: int,
        arch_lr: float,
        arch_weight_decay: float,
        sampler: torch.Generator,
        val_order: torch.Generator,
        warmup_epochs: int = 0,
        prune_epoch: int | None = None,
        keep_ops: int = 3,
        selection: str = "magnitude",
        tune_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.selection = selection
        self.tune_epochs = tune_epochs
        # Perturbation-based selection decides the edges in a seeded random order.
        self.undecided: list[int] = []
        self.decisions: list[dict[str, Any]] = []
        if selection == "perturbation":
            edges = sum(shape[0] for shape in self.network.arch_shapes().values())
            self.undecided = [int(i) for i in torch.randperm(edges, generator=val_order)]
            self.total_epochs = self.settings.epochs + edges * tune_epochs
        # A submodule of this module (so Lightning moves it to the device), not of the
        # network: the architect optimises it on its own.
        self.arch_params = arch_params
        self.relaxation = relaxation
        self.order = order
        self.arch_lr = arch_lr
        self.arch_weight_decay = arch_weight_decay
        self.warmup_epochs = warmup_epochs
        self.prune_epoch = prune_epoch
        self.keep_ops = keep_ops
        self.sampler = sampler
        self.val_order = val_order
        self.architect: Architect | None = None
        self._architect_state: dict[str, Any] | None = None  # a resumed Adam's, until built
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_acc = MeanMetric(nan_strategy="disable")
        self.score_acc = MeanMetric(nan_strategy="disable")
        self._derived: Architecture | None = None
        self._val_weights: dict[str, Tensor] = {}
        self._one_hot: dict[str, Tensor] = {}

    def on_fit_start(self) -> None:
        # Here, once the parameters are on their device, so Adam's state is there too.
        self.architect = Architect(
            self.network,
            self.arch_params,
            self.relaxation,
            lr=self.arch_lr,
            weight_decay=self.arch_weight_decay,
            order=self.order,
            generator=self.sampler,
        )
        if self._architect_state is not None:  # resumed: Adam continues where it was
            self.architect.optimizer.load_state_dict(self._architect_state)
            self._architect_state = None

    def resume_state(self) -> dict[str, Any]:
        # alpha and its masks are parameters and buffers: Lightning's checkpoint has them.
        assert self.architect is not None
        return {
            **super().resume_state(),
            "sampler": self.sampler.get_state(),
            "val_order": self.val_order.get_state(),
            "undecided": list(self.undecided),
            "decisions": copy.deepcopy(self.decisions),
            "architect": self.architect.optimizer.state_dict(),
        }

    def load_resume_state(self, state: dict[str, Any]) -> None:
        super().load_resume_state(state)
        self.sampler.set_state(state["sampler"])
        self.val_order.set_state(state["val_order"])
        self.undecided = list(state["undecided"])
        self.decisions = copy.deepcopy(state["decisions"])
        # The architect is built in `on_fit_start`, after the checkpoint is read.
        self._architect_state = state["architect"]

    def train_dataloader(self) -> CombinedLoader:
        search = DataLoader(
            self.val_set,
            batch_size=self.settings.batch_size,
            sampler=RandomSampler(
                self.val_set, num_samples=len(self.train_set), generator=self.val_order
            ),
        )
        return CombinedLoader({"train": self._train_loader(), "val": search}, "max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def complete(self) -> bool:
        return super().complete() and not self.undecided

    def searching(self, epoch: int) -> bool:
        """Whether alpha is optimised in `epoch` (not in a warm-up: the first
        `warmup_epochs`, and as many after pruning; not while a perturbation-based
        selection tunes the weights)."""
        if epoch < self.warmup_epochs or epoch >= self.settings.epochs:
            return False
        pruned_at = self.prune_epoch
        return pruned_at is None or not pruned_at <= epoch < pruned_at + self.warmup_epochs

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.current_epoch == self.prune_epoch:
            self.arch_params.prune(self.relaxation, self.keep_ops)
        tuning = self.current_epoch - self.settings.epochs
        if self.selection == "perturbation" and tuning >= 0 and tuning % self.tune_epochs == 0:
            self.decide_edge()
        if isinstance(self.relaxation, Gumbel):
            self.relaxation.tau = linear_tau(
                self.current_epoch, self.settings.epochs, TAU_MAX, TAU_MIN
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        assert self.architect is not None
        train, val = batch["train"], batch["val"]
        # The architect reads the weights' SGD (learning rate, momentum buffers) to unroll
        # its step at order 2; it never changes the network.
        if self.searching(self.current_epoch):
            self.architect.step(
                train, val, w_lr=self._sgd().param_groups[0]["lr"], w_optimizer=self._sgd()
            )
        with torch.no_grad():  # no gradient to alpha from the weight step
            weights = self.arch_params.weights(self.relaxation, self.sampler)
        self._weight_step(weights, train)

    # -- perturbation-based selection (DARTS-PT, Wang et al. 2021) --------------------

    def _rows(self) -> list[tuple[str, int]]:
        """(parameter name, row) of every edge, in the order edges are numbered."""
        return [
            (name, row) for name in self.arch_params for row in range(len(self.arch_params[name]))
        ]

    def decide_edge(self) -> None:
        """Fix the next undecided edge to the op whose removal costs the supernet the most
        validation accuracy (DARTS-PT's selection; alpha is not consulted)."""
        if not self.undecided:
            return
        edge = self.undecided.pop(0)
        name, row = self._rows()[edge]
        candidates = [int(k) for k in self.arch_params.mask(name)[row].nonzero().flatten()]
        baseline = self._selection_accuracy()
        without: dict[str, float] = {}
        if len(candidates) > 1:
            for k in candidates:
                with self.arch_params.without(name, row, k):
                    without[self.network.ops[k]] = self._selection_accuracy()
        # The op whose removal hurts most; the first candidate on ties (and if alone).
        chosen = min(candidates, key=lambda k: without.get(self.network.ops[k], baseline))
        self.arch_params.fix(name, row, chosen)
        self.decisions.append(
            {
                "epoch": self.current_epoch,
                "cell": name,
                "edge": row,
                "op": self.network.ops[chosen],
                "val_acc": baseline,
                "val_acc_without": without,
            }
        )

    def _selection_accuracy(self) -> float:
        """The supernet's validation accuracy under the current derivation weights, with
        batch statistics (the running ones belong to the unperturbed supernet)."""
        weights = self.arch_params.derivation_weights(self.relaxation)
        with self._evaluating(batch_statistics=True):
            return self._evaluate(weights, self._eval_loader())[1]

    def derived(self) -> tuple[dict[str, Tensor], Architecture]:
        """The current derivation weights and the architecture derived from them."""
        weights = self.arch_params.derivation_weights(self.relaxation)
        return weights, derive(self.network, weights)

    def on_validation_epoch_start(self) -> None:
        self._val_weights, self._derived = self.derived()
        self._one_hot = one_hot_weights(self.network, self._derived, self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = supernet_logits(self.network, x, self._val_weights)
        self.val_loss.update(F.cross_entropy(logits.float(), y), weight=len(y))
        self.val_acc.update((logits.argmax(1) == y).float().mean(), weight=len(y))
        one_hot = supernet_logits(self.network, x, self._one_hot)
        self.score_acc.update((one_hot.argmax(1) == y).float().mean(), weight=len(y))

    def on_train_epoch_end(self) -> None:
        # Lightning has validated inside the epoch, after its last step: the derived
        # architecture and the validation metrics are this epoch's.
        if self._derived is None:  # validation did not run (cannot happen as configured)
            self.on_validation_epoch_start()
        assert self._derived is not None
        record: dict[str, Any] = {
            "val_loss": _pop(self.val_loss),
            "val_acc": _pop(self.val_acc),
            "score": _pop(self.score_acc),
            "entropy": _entropy(self._val_weights),
            "parameter_free": parameter_free_count(self._derived),
            "arch": self._derived.to_json(),
            "arch_description": self._derived.describe(),
            "alphas": _cell_weights_json(self._val_weights),
            "searching": self.searching(self.current_epoch),
            "decided_edges": len(self.decisions),
            "candidate_ops": sum(
                int(self.arch_params.mask(name).sum()) for name in self.arch_params
            ),
        }
        if isinstance(self.relaxation, Gumbel):
            record["tau"] = self.relaxation.tau
        self._derived = None
        self._finish_epoch(record)


class DartsSearch(SupernetSearch):
    """DARTS, GDAS or DrNAS on an NB201 or DARTS supernet (see the module docstring).

    Args:
        space: An `NB201Space` or a `DartsSpace`.
        seed: Seeds alpha's initial values, the data order, the relaxation's samples and
            the supernet's initial weights.
        relaxation: ``softmax`` (DARTS), ``gumbel`` (GDAS; tau from 10 to 0.1, linearly
            over the epochs) or ``dirichlet`` (DrNAS).
        order: The architect's order: 1 (first order) or 2 (unrolled).
        arch_lr, arch_weight_decay: Adam's learning rate and weight decay for alpha (the
            weight decay is DrNAS' l2 regulariser).
        warmup_epochs: The first epochs train the weights only, alpha stays at its
            initial (uniform) value: untrained convolutions otherwise lose to
            parameter-free ops from the first steps (DrNAS and PC-DARTS warm up too).
        kl_weight: DrNAS' KL regulariser towards Dirichlet(1) (``dirichlet`` only; 0:
            none).
        prune_epoch, keep_ops: DrNAS' progressive shrinking: at the start of epoch
            `prune_epoch` (counted from 0), every edge keeps its `keep_ops` strongest ops
            and the others are removed (their weight is 0 from then on, so they are no
            longer computed); a fresh `warmup_epochs` follow. None: no pruning.
        selection: ``magnitude`` (the op of largest weight per edge, as DARTS) or
            ``perturbation`` (DARTS-PT, Wang et al. 2021; NB201 only): after the
            `epochs`, the edges are decided one at a time in a seeded random order, each
            fixed to the op whose removal lowers the supernet's validation accuracy most,
            and the weights tuned for `tune_epochs` after each decision (alpha frozen).
            With ``warmup_epochs == epochs`` alpha never moves: DARTS-PT's fixed-alpha
            variant, which the paper finds the most robust.
        tune_epochs: Epochs of weight tuning after each perturbation decision (>= 1).
        **weights: The supernet's weights and data (`WeightSettings`: epochs, batch_size,
            w_lr, ...).
    """

    name = "darts"
    random_streams = ("alpha_init", "train_order", "val_order", "sampler", "subset")

    def __init__(
        self,
        space: SearchSpace,
        seed: Seed = 0,
        relaxation: str = "softmax",
        order: Annotated[int, Interval(ge=1, le=2)] = 1,
        arch_lr: PositiveFloat = 3e-4,
        arch_weight_decay: NonNegativeFloat = 1e-3,
        warmup_epochs: NonNegativeInt = 0,
        kl_weight: NonNegativeFloat = 0.0,
        prune_epoch: PositiveInt | None = None,
        keep_ops: PositiveInt = 3,
        selection: str = "magnitude",
        tune_epochs: PositiveInt = 1,
        **weights: Any,
    ) -> None:
        super().__init__(space, seed, weights)
        if selection not in SELECTIONS:
            raise NasflowError(
                f"strategy.selection must be one of {', '.join(SELECTIONS)}, got {selection!r}"
            )
        if selection == "perturbation" and not isinstance(space, NB201Space):
            raise NasflowError(
                "strategy.selection=perturbation is implemented for search_space nb201 only "
                f"(not yet its topology step for darts), got '{space.name}'"
            )
        self.selection = selection
        self.tune_epochs = int_setting("tune_epochs", tune_epochs)
        if relaxation not in RELAXATIONS:
            raise NasflowError(
                f"strategy.relaxation must be one of {', '.join(RELAXATIONS)}, got {relaxation!r}"
            )
        if isinstance(order, bool) or order not in (1, 2):
            raise NasflowError(f"strategy.order must be 1 or 2, got {order!r}")
        self.relaxation = relaxation
        self.order = order
        self.arch_lr = number_setting("arch_lr", arch_lr, open_low=True)
        self.arch_weight_decay = number_setting("arch_weight_decay", arch_weight_decay)
        self.warmup_epochs = int_setting("warmup_epochs", warmup_epochs, minimum=0)
        self.kl_weight = number_setting("kl_weight", kl_weight)
        if self.kl_weight and relaxation != "dirichlet":
            raise NasflowError(
                f"strategy.kl_weight is DrNAS' (relaxation dirichlet); got {kl_weight!r} "
                f"with relaxation {relaxation!r}: set it to 0"
            )
        self.prune_epoch = optional_int_setting("prune_epoch", prune_epoch)
        self.keep_ops = int_setting("keep_ops", keep_ops)
        if self.prune_epoch is not None and self.prune_epoch >= self.weights.epochs:
            raise NasflowError(
                f"strategy.prune_epoch must be below epochs ({self.weights.epochs}) or null, "
                f"got {prune_epoch!r}"
            )

    def _module(self, network: Supernet, streams: Streams, inputs: dict[str, Any]) -> DartsModule:
        arch_params = ArchParameters.for_network(network, streams["alpha_init"])
        options = {"kl_weight": self.kl_weight} if self.relaxation == "dirichlet" else {}
        relaxation = make_relaxation(self.relaxation, **options)
        if isinstance(relaxation, Gumbel):
            relaxation.tau = TAU_MAX
        return DartsModule(
            arch_params=arch_params,
            relaxation=relaxation,
            order=self.order,
            arch_lr=self.arch_lr,
            arch_weight_decay=self.arch_weight_decay,
            warmup_epochs=self.warmup_epochs,
            prune_epoch=self.prune_epoch,
            keep_ops=self.keep_ops,
            selection=self.selection,
            tune_epochs=self.tune_epochs,
            sampler=streams["sampler"],
            val_order=streams["val_order"],
            **inputs,
        )

    def _outcome(
        self, module: SupernetModule, network: Supernet
    ) -> tuple[Architecture, float, dict[str, Any]]:
        """The last epoch's derived architecture and score, and the search's settings,
        decisions and final architecture parameters."""
        assert isinstance(module, DartsModule)
        last = module.history[-1]
        details = {
            "relaxation": self.relaxation,
            "order": self.order,
            "warmup_epochs": self.warmup_epochs,
            "prune_epoch": self.prune_epoch,
            "keep_ops": self.keep_ops,
            "selection": self.selection,
            "decisions": module.decisions,
            "ops": list(network.ops),
            "alpha_logits": _cell_weights_json(dict(module.arch_params.items())),
        }
        return self.space.from_json(last["arch"]), float(last["score"]), details


def _entropy(weights: Mapping[str, Tensor]) -> float:
    """The mean over every edge of every cell type of its op weights' entropy."""
    with torch.no_grad():
        return float(entropy(torch.cat([w.float() for w in weights.values()])))


def _pop(metric: MeanMetric) -> float:
    """The metric's value over the epoch (NaN if it saw nothing), then reset."""
    value = float(metric.compute()) if metric.update_count else math.nan
    metric.reset()
    return value


def _cell_weights_json(weights: Mapping[str, Tensor]) -> dict[str, list[list[float]]]:
    return {name: w.detach().float().cpu().tolist() for name, w in weights.items()}
