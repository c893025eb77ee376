"""What a network costs: parameters and FLOPs, measured the same way everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasflow.errors import NasflowError


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


def median_ms(
    run: Callable[[], object],
    warmup: int,
    repeats: int,
    synchronize: Callable[[], object] = lambda: None,
) -> float:
    """The median wall time (ms) of `repeats` calls of `run`, timed one by one (each up to
    `synchronize`, for a device that runs asynchronously), after `warmup` untimed ones:
    how every latency nasflow reports is timed, whatever runs the network."""
    import statistics
    import time

    for _ in range(warmup):
        run()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def latency_ms(
    network: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    device: str = "cpu",
) -> float:
    """The median wall time (ms) of one forward pass of `batch_size` images, in eval mode
    and without autograd, on `device` with torch on `threads` threads (`median_ms`)."""
    was_training, previous_threads = network.training, torch.get_num_threads()
    target = torch.device(device)
    network = network.to(target).eval()
    batch = torch.zeros(batch_size, *input_shape, device=target)
    synchronize = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return median_ms(lambda: network(batch), warmup, repeats, synchronize)
    finally:
        torch.set_num_threads(previous_threads)
        network.train(was_training)


def check_latency_device(device: str) -> None:
    """A NasflowError unless `device` (``latency.device``) is one torch has here."""
    try:
        target = torch.device(device)
    except RuntimeError:
        raise NasflowError(
            f"latency.device={device} is not a device; use cpu, cuda or cuda:N"
        ) from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise NasflowError(f"latency.device={device} but this machine has no CUDA GPU; use cpu")
    if target.type not in ("cpu", "cuda"):
        raise NasflowError(f"latency.device={device}: latency is measured on cpu or cuda")


def cheap_measures(
    build: Callable[[], nn.Module],
    input_shape: Sequence[int],
    needed: Sequence[str],
    latency: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """What a network measures before training, of `needed`: ``params``, ``flops``,
    ``latency_ms`` (with `latency`'s settings, `latency_ms`'s arguments). The network is
    built by `build` under its own random state, so measuring draws nothing from the
    caller's generator."""
    with torch.random.fork_rng():
        network = build()
    found: dict[str, float] = {}
    if "params" in needed:
        found["params"] = float(count_params(network))
    if "flops" in needed:
        found["flops"] = float(count_flops(network, input_shape))
    if "latency_ms" in needed:
        found["latency_ms"] = latency_ms(network, input_shape, **dict(latency or {}))
    return found
