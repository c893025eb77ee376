"""What a network costs: parameters and FLOPs, measured the same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(network: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def count_flops(network: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of one image, by torch's FLOP counter (a multiply-add is 2)."""
    was_training = network.training
    network.eval()
    device = next(network.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, *input_shape, device=device))
    network.train(was_training)
    return int(counter.get_total_flops())
