"""Full training of a candidate through Lightning: scores, history, failures, seeds."""

from __future__ import annotations

import functools
from pathlib import Path

import pytorch_lightning as pl
import torch

from nasflow.estimators import TrainingEstimator
from nasflow.search_spaces import ChainArchitecture, ChainSpace, Layer
from nasflow.training import InMemoryData

SPACE = ChainSpace(min_layers=1, max_layers=3, kernel_sizes=[3])
ARCH = ChainArchitecture((Layer("conv", filters=32, kernel_h=3, kernel_w=3), Layer("max_pool")))
TRAINER = functools.partial(
    pl.Trainer,
    accelerator="cpu",
    enable_progress_bar=False,
    enable_model_summary=False,
    enable_checkpointing=False,
    num_sanity_val_steps=0,
)


def estimator(prepared: Path, lr: float = 3e-3, epochs: int = 2) -> TrainingEstimator:
    return TrainingEstimator(
        SPACE,
        InMemoryData.load(prepared, ("train", "val")),
        TRAINER,
        optimizer=functools.partial(torch.optim.AdamW, lr=lr),
        epochs=epochs,
        batch_size=64,
    )


def test_training_scores_on_validation_and_keeps_every_epoch(prepared_digits: Path) -> None:
    evaluation = estimator(prepared_digits).evaluate(ARCH, seed=0)
    assert evaluation.status == "ok", evaluation.error
    assert [e["epoch"] for e in evaluation.history] == [0, 1]
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(evaluation.history[0])
    assert evaluation.score == evaluation.history[-1]["val_acc"] > 0.8
    assert evaluation.params == sum(
        p.numel() for p in SPACE.build(ARCH, (1, 8, 8), 10).parameters()
    )
    assert evaluation.flops > 0 and evaluation.seconds > 0


def test_same_seed_same_result_and_global_rng_untouched(prepared_digits: Path) -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = estimator(prepared_digits, epochs=1).evaluate(ARCH, seed=11)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = estimator(prepared_digits, epochs=1).evaluate(ARCH, seed=11)
    c = estimator(prepared_digits, epochs=1).evaluate(ARCH, seed=12)
    assert a.history == b.history
    assert a.history != c.history


def test_a_diverging_candidate_is_recorded_as_failed(prepared_digits: Path) -> None:
    evaluation = estimator(prepared_digits, lr=1e12, epochs=1).evaluate(ARCH, seed=0)
    assert evaluation.status == "failed"
    assert evaluation.score is None
    assert "FloatingPointError" in evaluation.error and "nan" in evaluation.error.lower()


def test_a_candidate_that_raises_is_recorded_as_failed(prepared_digits: Path) -> None:
    class BrokenSpace(ChainSpace):
        def build(self, arch, input_shape, num_classes):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    failing = estimator(prepared_digits)
    failing.space = BrokenSpace()
    evaluation = failing.evaluate(ARCH, seed=0)
    assert evaluation.status == "failed"
    assert evaluation.error == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
