"""Network morphisms: a child network that computes exactly what its trained parent does,
so that it starts from the parent's weights instead of from scratch.

Operators on the chain space (`ChainSpace`), each function-preserving in eval mode (batch
norm on its running statistics), as Wei et al. (2016), Chen et al. (Net2Net, 2016) and
Elsken et al. (NASH, 2018) define them:

* `deeper`: a convolution inserted after a convolution (or the pooling after one) that is
  the identity: a kernel with one 1 at the centre of each channel's own filter, batch
  norm that passes its input through, and a ReLU on an input that is already >= 0.
* `wider` (Net2WiderNet): a convolution given more filters, each new one a copy of a
  random existing one; whatever reads those channels next (a convolution, its shortcut,
  a dense layer or the classifier) splits what it read from a channel among its copies,
  in random shares that sum to one (equal shares, Net2Net's, would keep the copies equal
  under training for ever).
* `add_skip`: a residual connection added to a convolution that has none. Where the
  shortcut is a projection, its batch norm starts at zero; where it is the identity,
  the convolution's kernel gives up what the identity now adds.

A step (operator, layer, seed) replays exactly (`morph`, `morph_all`). `random_step` and
`child_architecture` give what a step makes of the architecture alone, without building a
network: a strategy draws children that way, and the worker replays the steps on the
parent's trained weights.

For every other space, `inherit` is weight inheritance: a child copies each parameter and
buffer of its parent whose name and shape it shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from nasflow.measure import count_params
from nasflow.records import MorphStep
from nasflow.search_spaces.chain import (
    ChainArchitecture,
    ChainNetwork,
    ChainSpace,
    ConvBlock,
    Layer,
)

# Layers whose output is a ReLU's (>= 0) with channels, where an identity convolution fits.
_CONV_MAP = ("conv", "max_pool", "avg_pool")

#: Operators by name; each returns None where it does not apply to the chosen layer.
Morph = Callable[
    [ChainSpace, ChainArchitecture, ChainNetwork, int, np.random.Generator],
    "Morphed | None",
]


@dataclass(frozen=True)
class Morphed:
    """A child made by one morphism: its architecture, its network with the parent's
    function, what was done (e.g. ``deeper after layer 1 (3x3)``) and, when it was made
    by `morph`, the step that makes it again from the same parent. `fresh` counts the
    parameter values the morphism set itself (an identity convolution, a zero shortcut)
    rather than derived from the parent's."""

    arch: ChainArchitecture
    network: ChainNetwork
    change: str
    step: MorphStep | None = None
    fresh: int = 0

    @property
    def inherited(self) -> int:
        """The child's parameter values derived from the parent's."""
        return max(0, count_params(self.network) - self.fresh)


def inherit(parent: nn.Module, child: nn.Module) -> int:
    """Copy into `child` every parameter and buffer of `parent` with the same name and
    shape; how many parameter values were copied (buffers, batch norm's statistics, are
    copied but not counted)."""
    theirs = parent.state_dict()
    parameters = {name for name, _ in child.named_parameters()}
    copied = 0
    with torch.no_grad():
        for name, value in child.state_dict().items():
            source = theirs.get(name)
            if source is not None and source.shape == value.shape:
                value.copy_(source)
                copied += value.numel() if name in parameters else 0
    return copied


def deeper(
    space: ChainSpace,
    arch: ChainArchitecture,
    network: ChainNetwork,
    position: int,
    rng: np.random.Generator,
) -> Morphed | None:
    """An identity convolution inserted after layer `position` (a convolution, or a
    pooling layer after one), its kernel size drawn from the space's."""
    planned = _deeper_layers(space, arch, position, rng, network.input_shape[0])
    if planned is None:
        return None
    layers = arch.layers
    made = _derive(
        space, network, planned, {i: i if i <= position else i + 1 for i in range(len(layers))}
    )
    if made is None:
        return None
    child, built = made
    new = child.layers[position + 1]
    block = built.layer_module(position + 1)
    assert isinstance(block, ConvBlock)
    with torch.no_grad():
        block.conv.weight.copy_(_identity_kernel(block.conv.weight))
        _pass_through(block.norm)
    fresh = count_params(block)
    return Morphed(child, built, f"deeper after layer {position} ({new.describe()})", fresh=fresh)


def wider(
    space: ChainSpace,
    arch: ChainArchitecture,
    network: ChainNetwork,
    position: int,
    rng: np.random.Generator,
) -> Morphed | None:
    """Convolution `position` with more filters (a larger choice of the space's, drawn),
    the new ones copies of random old ones (Net2WiderNet)."""
    planned = _wider_layers(space, arch, position, rng, network.input_shape[0])
    if planned is None:
        return None
    layers = arch.layers
    layer, following = layers[position], _reader(arch, position)
    old, new = layer.filters, planned[position].filters
    mapping = np.concatenate([np.arange(old), rng.integers(old, size=new - old)])
    # What reads channel j takes share j of what it read from the channel j copies: shares
    # that sum to 1 over the copies keep the function. Unequal ones (drawn) break the
    # copies' symmetry, so training can tell them apart; with equal ones they would get
    # equal gradients and stay copies for ever (Net2Net adds noise for the same reason).
    raw = rng.uniform(0.5, 1.5, size=new)
    shares = torch.tensor(raw / np.bincount(mapping, weights=raw, minlength=old)[mapping])
    shares = shares.to(torch.float32)
    index = torch.as_tensor(mapping)
    kept = {i: i for i in range(len(layers)) if i not in (position, following)}
    made = _derive(space, network, planned, kept)
    if made is None:
        return None
    child, built = made
    source, target = network.layer_module(position), built.layer_module(position)
    assert isinstance(source, ConvBlock) and isinstance(target, ConvBlock)
    with torch.no_grad():
        target.conv.weight.copy_(source.conv.weight[index])
        _copy_norm(source.norm, target.norm, index)
        if (projection := _projection(target.shortcut)) is not None:
            if (old_projection := _projection(source.shortcut)) is not None:  # copy its rows
                projection[0].weight.copy_(old_projection[0].weight[index])
                _copy_norm(old_projection[1], projection[1], index)
            else:  # was the identity: output channel j is input channel mapping[j]
                _set_projection(projection, [(j, k, 1.0) for j, k in enumerate(index.tolist())])
        if following is None:  # the classifier reads the widened channels
            _split_inputs(network.classifier, built.classifier, index, shares)
        else:
            _widen_reader(network, built, following, index, shares)
    return Morphed(child, built, f"wider layer {position} ({old} -> {new} filters)")


def add_skip(
    space: ChainSpace,
    arch: ChainArchitecture,
    network: ChainNetwork,
    position: int,
    rng: np.random.Generator,
) -> Morphed | None:
    """A residual connection on convolution `position`, which had none."""
    planned = _skip_layers(space, arch, position, rng, network.input_shape[0])
    if planned is None:
        return None
    made = _derive(space, network, planned, {i: i for i in range(len(arch.layers))})
    if made is None:
        return None
    child, built = made
    block = built.layer_module(position)
    assert isinstance(block, ConvBlock) and block.shortcut is not None
    fresh = 0
    with torch.no_grad():
        if (projection := _projection(block.shortcut)) is not None:  # one that adds zero
            _pass_through(projection[1])
            projection[1].weight.zero_()
            fresh = count_params(block.shortcut)
        else:  # the identity: the convolution gives the input back through its kernel
            variance = block.norm.running_var
            assert variance is not None
            scale = block.norm.weight / torch.sqrt(variance + block.norm.eps)
            if bool((scale == 0).any()):
                return None
            block.conv.weight.sub_(_identity_kernel(block.conv.weight) / scale[:, None, None, None])
    return Morphed(child, built, f"skip on layer {position}", fresh=fresh)


OPERATORS: dict[str, Morph] = {"deeper": deeper, "wider": wider, "skip": add_skip}


# -- what a morphism makes of the architecture ------------------------------------------------
# Each operator's first draws from its step's generator decide the child's layers; these
# make the same draws and nothing else, so a strategy can draw children by architecture
# alone, without building a network. Each takes its step's seed (or the operator's
# generator, which `np.random.default_rng` returns as it is) and makes the generator only
# where the operator applies: most tries in a crowded neighbourhood do not.

Seed = int | np.random.Generator
#: The child's layers, before the space checks them (None: the operator does not apply).
Plan = Callable[[ChainSpace, ChainArchitecture, int, Seed, int], "tuple[Layer, ...] | None"]


def _deeper_layers(
    space: ChainSpace,
    arch: ChainArchitecture,
    position: int,
    seed: Seed,
    input_channels: int,
) -> tuple[Layer, ...] | None:
    layers = arch.layers
    if len(layers) >= space.max_layers or layers[position].op not in _CONV_MAP:
        return None
    heights, widths = space.field_choices["kernel_h"], space.field_choices["kernel_w"]
    rng = np.random.default_rng(seed)
    new = Layer(
        op="conv",
        filters=_channels_after(arch, position, input_channels),
        kernel_h=int(heights[int(rng.integers(len(heights)))]),
        kernel_w=int(widths[int(rng.integers(len(widths)))]),
    )
    return (*layers[: position + 1], new, *layers[position + 1 :])


def _wider_layers(
    space: ChainSpace,
    arch: ChainArchitecture,
    position: int,
    seed: Seed,
    input_channels: int,
) -> tuple[Layer, ...] | None:
    layers = arch.layers
    layer = layers[position]
    if layer.op != "conv":
        return None
    old = layer.filters
    inputs = _channels_after(arch, position - 1, input_channels)
    following = _reader(arch, position)
    # A shortcut must stay a projection where it was one (an identity has no weights to
    # carry the parent's), so a width equal to a block's input is left out.
    larger = [
        int(f)
        for f in space.field_choices["filters"]
        if int(f) > old
        and not (layer.skip and int(f) == inputs and inputs != old)
        and not (
            following is not None
            and layers[following].op == "conv"
            and layers[following].skip
            and layers[following].filters != old
            and layers[following].filters == int(f)
        )
    ]
    if not larger:
        return None
    new = larger[int(np.random.default_rng(seed).integers(len(larger)))]
    return (*layers[:position], replace(layer, filters=new), *layers[position + 1 :])


def _skip_layers(
    space: ChainSpace,
    arch: ChainArchitecture,
    position: int,
    seed: Seed,
    input_channels: int,
) -> tuple[Layer, ...] | None:
    layers = arch.layers
    layer = layers[position]
    if layer.op != "conv" or layer.skip or "true" not in space.field_choices["skip"]:
        return None
    return (*layers[:position], replace(layer, skip=True), *layers[position + 1 :])


_PLANS: dict[str, Plan] = {"deeper": _deeper_layers, "wider": _wider_layers, "skip": _skip_layers}


def child_architecture(
    space: ChainSpace, arch: ChainArchitecture, step: MorphStep, input_channels: int
) -> ChainArchitecture | None:
    """The architecture `morph` makes of `arch` by `step` on images of `input_channels`
    channels, without a network; None where the step does not apply. (On trained weights
    `morph` can still refuse one step this allows: a skip on an identity shortcut whose
    batch norm has a zero scale.)"""
    name, position, seed = step
    layers = _PLANS[name](space, arch, position, seed, input_channels)
    return None if layers is None else _child(space, layers)


def random_step(
    space: ChainSpace,
    arch: ChainArchitecture,
    rng: np.random.Generator,
    operators: Sequence[str] = tuple(OPERATORS),
    input_channels: int = 3,
) -> tuple[ChainArchitecture, MorphStep] | None:
    """One morphism step drawn uniformly over the (operator, layer) pairs that apply to
    `arch`, each try with a fresh seed from `rng`, and the child architecture it makes;
    None when none applies (the chain is as deep, wide and connected as the space
    allows)."""
    pairs = [(name, i) for name in operators for i in range(len(arch.layers))]
    for k in rng.permutation(len(pairs)):
        name, position = pairs[int(k)]
        step = (name, position, int(rng.integers(2**31)))
        child = child_architecture(space, arch, step, input_channels)
        if child is not None:
            return child, step
    return None


def morph(
    space: ChainSpace, arch: ChainArchitecture, network: ChainNetwork, step: MorphStep
) -> Morphed | None:
    """Apply one step, (operator, layer, seed): the operator draws what it chooses (a
    kernel size, a width, which filters to copy) from a generator of that seed, so the
    same step on the same parent architecture makes the same child, whatever the
    parent's weights. None where the operator does not apply."""
    name, position, seed = step
    made = OPERATORS[name](space, arch, network, position, np.random.default_rng(seed))
    return None if made is None else replace(made, step=step)


def morph_all(
    space: ChainSpace, arch: ChainArchitecture, network: ChainNetwork, steps: Sequence[MorphStep]
) -> Morphed | None:
    """`morph` step after step, each on the child of the one before; None if any step
    does not apply. The result's `change` lists every step's."""
    changes, fresh = [], 0
    made = None
    for step in steps:
        made = morph(space, arch, network, step)
        if made is None:
            return None
        arch, network = made.arch, made.network
        changes.append(made.change)
        fresh += made.fresh
    if made is None:
        return None
    return replace(made, change="; ".join(changes), step=None, fresh=fresh)


def random_morphism(
    space: ChainSpace,
    arch: ChainArchitecture,
    network: ChainNetwork,
    rng: np.random.Generator,
    operators: tuple[str, ...] = tuple(OPERATORS),
) -> Morphed | None:
    """`random_step`'s morphism applied to `network` (the result's `step` replays it);
    None when none applies."""
    drawn = random_step(space, arch, rng, operators, network.input_shape[0])
    return None if drawn is None else morph(space, arch, network, drawn[1])


# -- helpers --------------------------------------------------------------------------------


def _derive(
    space: ChainSpace, parent: ChainNetwork, layers: tuple[Layer, ...], mapping: dict[int, int]
) -> tuple[ChainArchitecture, ChainNetwork] | None:
    """The chain of `layers` and a fresh network of it, each parent layer's weights copied
    to the child layer `mapping` sends it to; None if the space does not hold the chain."""
    child = _child(space, layers)
    if child is None:
        return None
    built = _build(space, child, parent)
    _copy_layers(parent, built, mapping)
    return child, built


def _identity_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A kernel shaped as `weight` (square in channels) whose convolution with 'same'
    padding gives each channel back: a 1 at the centre of each channel's own filter
    (for an even size, the position torch's 'same' padding treats as the centre)."""
    kernel = torch.zeros_like(weight)
    centre_h, centre_w = (weight.shape[2] - 1) // 2, (weight.shape[3] - 1) // 2
    channels = torch.arange(weight.shape[0])
    kernel[channels, channels, centre_h, centre_w] = 1.0
    return kernel


def _child(space: ChainSpace, layers: tuple[Layer, ...]) -> ChainArchitecture | None:
    """The chain of `layers` if the space holds it."""
    from nasflow.errors import NasflowError

    arch = ChainArchitecture(tuple(layers))
    try:
        space.validate(arch)
    except NasflowError:
        return None
    return arch


def _build(space: ChainSpace, arch: ChainArchitecture, parent: ChainNetwork) -> ChainNetwork:
    network = space.build(arch, parent.input_shape, parent.num_classes)
    assert isinstance(network, ChainNetwork)
    return network.train(parent.training)


def _copy_layers(parent: ChainNetwork, child: ChainNetwork, mapping: dict[int, int]) -> None:
    """Copy each parent layer's module into the child layer `mapping` sends it to, and
    the classifier, where their shapes agree."""
    with torch.no_grad():
        for i, j in mapping.items():
            source, target = parent.layer_module(i), child.layer_module(j)
            if source is not None and target is not None:
                inherit(source, target)
        inherit(parent.classifier, child.classifier)


def _pass_through(norm: nn.BatchNorm2d) -> None:
    """Batch norm that gives its input back unchanged in eval mode."""
    assert norm.running_mean is not None and norm.running_var is not None
    norm.weight.fill_(1.0)
    norm.bias.zero_()
    norm.running_mean.zero_()
    norm.running_var.fill_(1.0 - norm.eps)


def _projection(shortcut: nn.Module | None) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
    """The 1x1 convolution and batch norm of a projection shortcut; None for an identity
    shortcut or none."""
    if not isinstance(shortcut, nn.Sequential):
        return None
    conv, norm = shortcut[0], shortcut[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
    return conv, norm


def _set_projection(
    projection: tuple[nn.Conv2d, nn.BatchNorm2d], entries: list[tuple[int, int, float]]
) -> None:
    """A projection that is a fixed channel map: output o gets `weight` times input i for
    each (o, i, weight) of `entries`, and nothing else."""
    conv, norm = projection
    conv.weight.zero_()
    for out, into, weight in entries:
        conv.weight[out, into, 0, 0] = weight
    _pass_through(norm)


def _copy_norm(source: nn.BatchNorm2d, target: nn.BatchNorm2d, index: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(target, name).copy_(getattr(source, name)[index])


def _channels_after(arch: ChainArchitecture, position: int, input_channels: int) -> int:
    """The channels of the feature map after layer `position` (-1: the input image): the
    last convolution's filters up to there (pooling keeps the channels)."""
    convs = [layer.filters for layer in arch.layers[: position + 1] if layer.op == "conv"]
    return convs[-1] if convs else input_channels


def _reader(arch: ChainArchitecture, position: int) -> int | None:
    """The first layer after `position` that reads its channels with weights (a
    convolution or a dense layer); None where that is the classifier."""
    for i in range(position + 1, len(arch.layers)):
        if arch.layers[i].op in ("conv", "dense"):
            return i
    return None


def _widen_reader(
    parent: ChainNetwork,
    child: ChainNetwork,
    reader: int,
    index: torch.Tensor,
    shares: torch.Tensor,
) -> None:
    """The layer that reads the widened channels, its weights on each copy scaled by the
    copy's share of its channel."""
    source, target = parent.layer_module(reader), child.layer_module(reader)
    if isinstance(source, ConvBlock):
        assert isinstance(target, ConvBlock)
        target.conv.weight.copy_(source.conv.weight[:, index] * shares[None, :, None, None])
        target.norm.load_state_dict(source.norm.state_dict())
        if (projection := _projection(target.shortcut)) is not None:
            if (old_projection := _projection(source.shortcut)) is not None:
                weight = old_projection[0].weight[:, index] * shares[None, :, None, None]
                projection[0].weight.copy_(weight)
                projection[1].load_state_dict(old_projection[1].state_dict())
            else:  # was the identity on the old channels: a projection back onto them
                entries = [(k, j, float(shares[j])) for j, k in enumerate(index.tolist())]
                _set_projection(projection, entries)
    else:
        assert isinstance(source, nn.Linear) and isinstance(target, nn.Linear)
        _split_inputs(source, target, index, shares)


def _split_inputs(
    source: nn.Linear,
    target: nn.Linear,
    index: torch.Tensor,
    shares: torch.Tensor,
) -> None:
    """A linear layer reading the widened channels, flattened (each channel a block of
    height x width inputs) or pooled (one input each)."""
    per_channel = source.in_features // len(torch.unique(index))
    columns = (index[:, None] * per_channel + torch.arange(per_channel)[None, :]).reshape(-1)
    scale = shares.repeat_interleave(per_channel)
    target.weight.copy_(source.weight[:, columns] * scale[None, :])
    target.bias.copy_(source.bias)
