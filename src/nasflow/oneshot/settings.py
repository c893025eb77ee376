"""The settings every one-shot search shares, and the checks of any one-shot setting.

A one-shot strategy's keyword arguments are its own (DARTS' relaxation, ENAS' controller
steps, ...) plus those of the supernet's weights and data, `WeightSettings`, common to
every method. Each is checked once, when the strategy is built, so a wrong value fails
before any training, with a message that names the key as the config spells it
(``strategy.<key>``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nasflow.errors import NasflowError, check_int, check_number, check_optional_int
from nasflow.ranges import Decay, NonNegativeFloat, PositiveFloat, PositiveInt


def int_setting(key: str, value: Any, minimum: int = 1) -> int:
    """`value` if it is an integer of at least `minimum`; else an error naming the key."""
    return check_int(f"strategy.{key}", value, minimum)


def optional_int_setting(key: str, value: Any) -> int | None:
    """`value` if it is None or a positive integer; else an error naming the key."""
    return check_optional_int(f"strategy.{key}", value)


def number_setting(key: str, value: Any, low: float = 0.0, open_low: bool = False) -> float:
    """`value` as a float if it is a finite number of at least `low` (above it with
    `open_low`); else an error naming the key."""
    return check_number(f"strategy.{key}", value, low, open_low=open_low)


@dataclass(frozen=True)
class WeightSettings:
    """The supernet's weights and data, common to every one-shot method (the keyword
    arguments of `DartsSearch` and `EnasSearch` besides their own).

    Attributes:
        epochs: Passes over the training split.
        batch_size: Training (and architecture-step validation) batch size.
        w_lr, w_lr_min: The weights' SGD learning rate, cosine-annealed per epoch from
            w_lr to w_lr_min.
        w_momentum, w_weight_decay: The weights' SGD momentum and weight decay.
        grad_clip: The weights' gradient-norm clip (None: no clipping).
        channels, cells: The supernet's size (NB201: channels and cells per stage;
            DARTS: channels and layers); the space's own if None. The space's values stay
            those of the retraining.
        train_limit, val_limit: Use at most this many training / validation examples, a
            seeded random subset (for CPU runs on large data); all if None.
    """

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    w_lr: PositiveFloat = 0.025
    w_lr_min: NonNegativeFloat = 0.001
    w_momentum: Decay = 0.9
    w_weight_decay: NonNegativeFloat = 3e-4
    grad_clip: PositiveFloat | None = 5.0
    channels: PositiveInt | None = None
    cells: PositiveInt | None = None
    train_limit: PositiveInt | None = None
    val_limit: PositiveInt | None = None

    @classmethod
    def check(cls, **values: Any) -> WeightSettings:
        """The settings from `values` (the defaults for those missing), each checked."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NasflowError(
                f"unknown one-shot setting strategy.{unknown[0]}; "
                f"allowed besides the method's own: {', '.join(sorted(known))}"
            )
        v = {**{f.name: f.default for f in fields(cls)}, **values}
        grad_clip = v["grad_clip"]
        settings = cls(
            epochs=int_setting("epochs", v["epochs"]),
            batch_size=int_setting("batch_size", v["batch_size"]),
            w_lr=number_setting("w_lr", v["w_lr"], open_low=True),
            w_lr_min=number_setting("w_lr_min", v["w_lr_min"]),
            w_momentum=number_setting("w_momentum", v["w_momentum"]),
            w_weight_decay=number_setting("w_weight_decay", v["w_weight_decay"]),
            grad_clip=(
                None if grad_clip is None else number_setting("grad_clip", grad_clip, open_low=True)
            ),
            channels=optional_int_setting("channels", v["channels"]),
            cells=optional_int_setting("cells", v["cells"]),
            train_limit=optional_int_setting("train_limit", v["train_limit"]),
            val_limit=optional_int_setting("val_limit", v["val_limit"]),
        )
        if settings.w_lr_min > settings.w_lr:
            raise NasflowError(
                f"strategy.w_lr_min must be at most w_lr ({settings.w_lr}), got {settings.w_lr_min}"
            )
        if settings.w_momentum >= 1:
            raise NasflowError(f"strategy.w_momentum must be below 1, got {settings.w_momentum}")
        return settings
