"""What defines a network (ModelSpec) and the architectures that exist (ARCHITECTURES)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from .train import Ref

# VGG's layer configurations (Simonyan & Zisserman 2015), as in the CIFAR VGGs of the pruning
# literature: channels per conv layer, "M" a 2x2 max pool.
VGG_LAYERS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}
DENSENET_GROWTH = 12  # DenseNet's growth rate at width 1


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


@dataclass(frozen=True)
class ModelSpec:
    """What defines a network: the `load` axes depth and width live here.

    in_channels and num_classes come from the data set. A dense run's spec leaves them None
    (they are not hyperparameters and not part of its key); the job fills them in with
    `for_data` once the data set is loaded, and only a complete spec builds a network.
    """

    arch: str = "preresnet"
    depth: int = 20
    width: float = 1.0
    in_channels: int | None = 3
    num_classes: int | None = 10

    def __post_init__(self):
        entry = ARCHITECTURES.get(self.arch)
        if entry is None:
            raise ValueError(f"model.arch: unknown architecture {self.arch!r}; allowed: "
                             + ", ".join(repr(a) for a in ARCHITECTURES))
        if not entry.valid_depth(self.depth):
            raise ValueError(f"model.depth of {self.arch} must be {entry.depth_rule}, got {self.depth}")
        if not self.width > 0:  # also refuses NaN
            raise ValueError(f"model.width must be > 0, got {self.width}")

    def for_data(self, in_channels: int, num_classes: int) -> "ModelSpec":
        """This network for a data set of `in_channels` image channels and `num_classes` classes."""
        return replace(self, in_channels=int(in_channels), num_classes=int(num_classes))

    @property
    def complete(self) -> bool:
        return self.in_channels is not None and self.num_classes is not None

    @property
    def key(self) -> str:
        """Path segment, e.g. 'preresnet20_w1'."""
        return f"{self.arch}{self.depth}_w{self.width:g}"

    def identity(self) -> dict:
        """The hyperparameters that are part of a dense run's key (not the data's shape)."""
        return {"arch": self.arch, "depth": self.depth, "width": self.width}

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        """PreResNet's channels per stage (16, 32, 64 times the width)."""
        return tuple(scaled(c, self.width) for c in (16, 32, 64))

    @property
    def first_channels(self) -> int:
        """Channels of the network's first (largest) activation: what fusing K copies costs on a CPU."""
        return ARCHITECTURES[self.arch].first_channels(self)


@dataclass(frozen=True)
class Architecture:
    """An entry of ARCHITECTURES: `network` names the FusedNetwork class (or a function of
    (spec, copies)) that builds K copies, imported only where networks are built;
    `valid_depth` says which depths exist (`depth_rule` says it in words, for errors);
    `first_channels(spec)` is the channel count of the first activation, which decides
    whether fusing copies pays on a CPU (engine.Engine.copies_for)."""

    network: Ref
    valid_depth: Callable[[int], bool]
    depth_rule: str
    first_channels: Callable[[ModelSpec], int]
    description: str = ""


ARCHITECTURES: dict[str, Architecture] = {
    "preresnet": Architecture(
        "threeregime.models:PreResNet", lambda d: d >= 8 and (d - 2) % 6 == 0,
        "6n+2 with n >= 1 (8, 14, 20, 32, 56, ...)",
        lambda s: s.stage_channels[0], "pre-activation ResNet, 16/32/64 channels x width"),
    "vgg": Architecture(
        "threeregime.models:VGG", lambda d: d in VGG_LAYERS, "one of 11, 13, 16, 19 (VGG configurations A, B, D, E)",
        lambda s: scaled(64, s.width), "VGG with BatchNorm, 64..512 channels x width, one linear layer"),
    "densenet": Architecture(
        "threeregime.models:DenseNet", lambda d: d >= 7 and (d - 4) % 3 == 0, "3n+4 with n >= 1 (7, 10, ..., 40, ...)",
        lambda s: 2 * scaled(DENSENET_GROWTH, s.width),
        "DenseNet with basic layers and compression 1, growth 12 x width"),
}
