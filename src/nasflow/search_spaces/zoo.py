"""Hand-designed networks as a search space: what a searched model has to beat.

Each architecture is a named classic and a width multiplier; `strategy=grid
search_space=zoo` trains every one and so picks the best hand design, and every estimator
and the retrain, evaluate and export stages take them as they take searched ones. The
networks are built for the prepared input shape (channels and resolution) and class count:

* ``lenet5``: LeNet-5 (LeCun et al. 1998) with ReLU and max pooling: two 5x5 convolutions
  of 6 and 16 channels, each followed by 2x2 pooling, then fully connected layers of 120
  and 84 units. The first convolution pads by 2, as LeNet-5 on 28x28 MNIST; the second
  pads too where the image is too small for it (under 20 pixels).
* ``vgg_small``: VGG-style (Simonyan & Zisserman 2015), three stages of two 3x3
  convolutions with batch norm at 64, 128 and 256 channels, 2x2 max pooling after each
  stage while the map is at least 2 pixels, then global average pooling and a linear
  classifier.
* ``resnet20``, ``resnet56``: the CIFAR ResNets of He et al. 2016 (section 4.2): a 3x3
  stem of 16 channels, three stages of n = 3 or 9 basic blocks at 16, 32 and 64 channels
  (the second and third start with stride 2), identity shortcuts that subsample and pad
  with zero channels where the shape changes (the paper's option A), global average
  pooling and a linear classifier: 0.27 M and 0.85 M parameters at width 1 on CIFAR-10.
* ``mobilenetv2``: MobileNetV2 (Sandler et al. 2018) as usually adapted to 32x32 images:
  torchvision's network with a stride-1 stem and a stride-1 second stage, so the map
  shrinks by 8 rather than 32.

The width multiplier scales every layer's channels (units for LeNet's fully connected
layers; MobileNetV2 rounds to multiples of 8 as its paper does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasflow.errors import NasflowError
from nasflow.ranges import PositiveFloat
from nasflow.search_spaces.base import Architecture, Decision, Grammar, Graph, SearchSpace

WIDTHS = (0.5, 1.0, 2.0)


def _label(width: float) -> str:
    return f"{width:g}"


def _channels(base: int, width: float) -> int:
    return max(1, round(base * width))


@dataclass(frozen=True)
class ZooArchitecture(Architecture):
    """A named hand-designed network at a width multiplier."""

    network: str
    width: float

    def to_json(self) -> dict[str, Any]:
        return {"network": self.network, "width": self.width}

    def describe(self) -> str:
        """E.g. ``resnet20 x1``, ``mobilenetv2 x0.5``."""
        return f"{self.network} x{_label(self.width)}"


# -- the networks -----------------------------------------------------------------------


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: to a multiple of `divisor`, never 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class LeNet5(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, width: float) -> None:
        super().__init__()
        channels, height, wide = input_shape
        c1, c2 = _channels(6, width), _channels(16, width)
        second_padding = 0 if min(height, wide) >= 20 else 2  # 28 or 32 pixels: LeNet's own
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=second_padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        rows, columns = ((side // 2 + 2 * second_padding - 4) // 2 for side in (height, wide))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * rows * columns, _channels(120, width)),
            nn.ReLU(),
            nn.Linear(_channels(120, width), _channels(84, width)),
            nn.ReLU(),
            nn.Linear(_channels(84, width), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class VGGSmall(nn.Module):
    STAGES = (64, 128, 256)

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = input_shape[0], min(input_shape[1:])
        for base in self.STAGES:
            c_out = _channels(base, width)
            layers += _conv_bn_relu(c_in, c_out) + _conv_bn_relu(c_out, c_out)
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class ZeroPadShortcut(nn.Module):
    """He et al.'s option A: the identity, subsampled by the stride, with zero channels added."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.extra = c_out - c_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class CifarResNet(nn.Module):
    STAGES = (16, 32, 64)

    def __init__(self, channels: int, blocks: int, num_classes: int, width: float) -> None:
        # torchvision is imported when a network is built: the space itself (what every
        # strategy imports) stays light.
        from torchvision.models.resnet import BasicBlock
        from torchvision.ops.misc import Conv2dNormActivation

        super().__init__()
        c_in = _channels(16, width)
        self.stem = Conv2dNormActivation(channels, c_in, 3, bias=False)
        stages: list[nn.Module] = []
        for index, base in enumerate(self.STAGES):
            c_out = _channels(base, width)
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(blocks):
                s = stride if block == 0 else 1
                shortcut = ZeroPadShortcut(c_in, c_out, s) if (s != 1 or c_in != c_out) else None
                layers.append(BasicBlock(c_in, c_out, s, downsample=shortcut))
                c_in = c_out
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )
        for module in self.modules():  # as the paper (He et al. 2015's initialisation)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# (expansion t, channels c, blocks n, stride s) of MobileNetV2's bottlenecks, with the
# second stage's stride 1 instead of 2 for 32x32 images.
MOBILENETV2_CIFAR = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenetv2(channels: int, num_classes: int, width: float) -> nn.Module:
    from torchvision.models.mobilenetv2 import MobileNetV2
    from torchvision.ops.misc import Conv2dNormActivation

    network = MobileNetV2(
        num_classes=num_classes,
        width_mult=width,
        inverted_residual_setting=[list(setting) for setting in MOBILENETV2_CIFAR],
    )
    stem = network.features[0]
    out = stem[0].out_channels  # type: ignore[index]
    network.features[0] = Conv2dNormActivation(
        channels, out, 3, stride=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6
    )
    return network


Builder = Callable[[Sequence[int], int, float], nn.Module]  # (input shape, classes, width)
NETWORKS: dict[str, Builder] = {
    "lenet5": LeNet5,
    "vgg_small": VGGSmall,
    "resnet20": lambda shape, k, w: CifarResNet(shape[0], 3, k, w),
    "resnet56": lambda shape, k, w: CifarResNet(shape[0], 9, k, w),
    "mobilenetv2": lambda shape, k, w: mobilenetv2(shape[0], k, w),
}


def _stages(arch: ZooArchitecture) -> tuple[str, ...]:
    """What `graphs` draws: the network's main parts, in order."""
    w = arch.width
    if arch.network == "lenet5":
        return (
            f"conv5x5 {_channels(6, w)}, max pool",
            f"conv5x5 {_channels(16, w)}, max pool",
            f"dense {_channels(120, w)}, dense {_channels(84, w)}",
        )
    if arch.network == "vgg_small":
        return tuple(f"2 x conv3x3 {_channels(c, w)}, max pool" for c in VGGSmall.STAGES)
    if arch.network.startswith("resnet"):
        n = 3 if arch.network == "resnet20" else 9
        first = (f"conv3x3 {_channels(16, w)}",)
        strides = ("", ", /2", ", /2")
        return first + tuple(
            f"{n} basic blocks, {_channels(c, w)}{s}"
            for c, s in zip(CifarResNet.STAGES, strides, strict=True)
        )
    blocks = tuple(
        f"{n} x bottleneck t={t}, {make_divisible(c * w)}{', /2' if s == 2 else ''}"
        for t, c, n, s in MOBILENETV2_CIFAR
    )
    last = make_divisible(1280 * max(1.0, w))
    return (f"conv3x3 {make_divisible(32 * w)}", *blocks, f"conv1x1 {last}")


class ZooSpace(SearchSpace):
    """Named hand-designed networks, each at a width multiplier (see the module docstring).

    Args:
        networks: Which of `NETWORKS` to offer.
        widths: The width multipliers each network may take.
    """

    name = "zoo"

    def __init__(
        self, networks: Sequence[str] = tuple(NETWORKS), widths: Sequence[PositiveFloat] = WIDTHS
    ) -> None:
        unknown = [n for n in networks if n not in NETWORKS]
        if unknown or not networks:
            raise NasflowError(
                f"search_space.networks={list(networks)}: "
                + (f"unknown {', '.join(map(str, unknown))}; " if unknown else "none given; ")
                + f"choose from {', '.join(NETWORKS)}"
            )
        bad = [w for w in widths if not (isinstance(w, int | float) and math.isfinite(w) and w > 0)]
        if bad or not widths:
            raise NasflowError(
                f"search_space.widths={list(widths)}: each must be a positive number, "
                "e.g. [0.5, 1, 2]"
            )
        self.networks = tuple(dict.fromkeys(networks))
        self.widths = tuple(dict.fromkeys(float(w) for w in widths))

    @classmethod
    def tiny(cls) -> ZooSpace:
        # Narrow, so every network builds and runs in milliseconds; 30 architectures, as
        # many as the strategies' tests ask for distinct ones.
        return cls(widths=(0.0625, 0.125, 0.25, 0.375, 0.5, 0.75))

    def grammar(self) -> Grammar:
        network_decision, width_decision = self.catalogue()
        network = yield network_decision
        width = yield width_decision
        return ZooArchitecture(network, float(width))

    def to_labels(self, arch: Architecture) -> list[str]:
        if not isinstance(arch, ZooArchitecture):
            raise NasflowError(f"not a zoo architecture: {type(arch).__name__}")
        return [arch.network, _label(arch.width)]

    def catalogue(self) -> tuple[Decision, ...]:
        return (
            Decision("network", self.networks),
            Decision("width", tuple(_label(w) for w in self.widths)),
        )

    def parse(self, text: str) -> Architecture:
        """JSON, or the description: ``resnet20 x1`` (``x`` and the width optional, 1)."""
        words = text.strip().split()
        if words and words[0] in NETWORKS and len(words) <= 2:
            width = words[1].removeprefix("x") if len(words) == 2 else "1"
            try:
                return self.from_json({"network": words[0], "width": float(width)})
            except ValueError:
                raise NasflowError(
                    f"{text!r}: the width must be a number, e.g. resnet20 x0.5"
                ) from None
        return super().parse(text)

    def from_json(self, data: Any) -> ZooArchitecture:
        if not isinstance(data, dict) or set(data) != {"network", "width"}:
            raise NasflowError(
                'a zoo architecture is {"network": ..., "width": ...}, got ' + repr(data)[:80]
            )
        width = data["width"]
        if not isinstance(width, int | float) or isinstance(width, bool):
            raise NasflowError(f"the zoo width must be a number, got {width!r}")
        arch = ZooArchitecture(str(data["network"]), float(width))
        self.validate(arch)
        return arch

    def build(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> nn.Module:
        if not isinstance(arch, ZooArchitecture):
            raise NasflowError(f"not a zoo architecture: {type(arch).__name__}")
        return NETWORKS[arch.network](tuple(input_shape), num_classes, arch.width)

    def graphs(self, arch: Architecture) -> list[Graph]:
        if not isinstance(arch, ZooArchitecture):
            raise NasflowError(f"not a zoo architecture: {type(arch).__name__}")
        nodes = ("input", *_stages(arch), "classifier")
        edges = tuple((i, i + 1, "") for i in range(len(nodes) - 1))
        return [Graph(arch.describe(), nodes, edges)]
