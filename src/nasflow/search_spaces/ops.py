"""Building blocks shared by the cell spaces (NAS-Bench-201, DARTS, NASNet).

They follow the definitions in the papers' reference implementations, so that parameter
counts match the published ones: every convolution is bias-free and followed by batch norm,
and convolutions on a cell's inputs are preceded by a ReLU ("ReLU-conv-BN" order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU, a bias-free convolution, batch norm."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, a depthwise (optionally dilated) convolution, a pointwise one, batch norm."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """A separable convolution applied twice (DARTS and NASNet), the first with the stride."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convolutions, one shifted by a pixel.

    Each yields half the output channels (the first gets the odd one); the shifted one sees
    the pixels the other skips. Odd sizes are padded so both halves agree.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """The "none" operation: no connection (zeros of the output's shape)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def pool(kind: str, kernel: int, stride: int) -> nn.Module:
    """Max or average pooling that keeps the size at stride 1 (padding kernel // 2).

    Average pooling ignores the padding, as the reference implementations do.
    """
    if kind == "max":
        return nn.MaxPool2d(kernel, stride, padding=kernel // 2)
    return nn.AvgPool2d(kernel, stride, padding=kernel // 2, count_include_pad=False)
