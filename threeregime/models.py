"""PreResNet with K independent copies evaluated by one set of kernels.

Every layer holds the K copies side by side along the channel axis: a convolution is one
grouped convolution with groups=K, a BatchNorm is one BatchNorm over K*C channels (so each
copy keeps its own batch and running statistics), the classifier is a batched matmul.
Activations are [N, K*C, H, W]; row n of copy k is that copy's own image, so K copies can
train on K different data orders at once. K=1 is the ordinary network.

Checkpoints never store the grouped layout: `copy_state(k)` returns copy k as an ordinary
per-model state dict (same keys, per-model shapes) and `load_copies` stacks such dicts, so
files stay interchangeable whatever K a job ran with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class ModelSpec:
    """What defines a network: the `load` axes depth and width live here."""

    arch: str = "preresnet"
    depth: int = 20
    width: float = 1.0
    in_channels: int = 3
    num_classes: int = 10

    def __post_init__(self):
        if self.arch != "preresnet":
            raise ValueError(f"model.arch: unknown architecture {self.arch!r}; allowed: 'preresnet'")
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"model.depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...), got {self.depth}")
        if self.width <= 0:
            raise ValueError(f"model.width must be > 0, got {self.width}")

    @property
    def key(self) -> str:
        """Path segment, e.g. 'preresnet20_w1'."""
        return f"{self.arch}{self.depth}_w{self.width:g}"

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        return tuple(max(1, int(round(c * self.width))) for c in (16, 32, 64))


class GroupedConv2d(nn.Module):
    def __init__(self, copies, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.copies, self.stride, self.padding = copies, stride, padding
        self.weight = nn.Parameter(torch.empty(copies * cout, cin, kernel_size, kernel_size))
        # He init as in the reference PreResNet: N(0, 2 / (k*k*out_channels)).
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (kernel_size * kernel_size * cout)))

    def forward(self, x):
        return F.conv2d(x, self.weight, None, self.stride, self.padding, groups=self.copies)


class GroupedLinear(nn.Module):
    def __init__(self, copies, fin, fout):
        super().__init__()
        self.copies, self.fin, self.fout = copies, fin, fout
        self.weight = nn.Parameter(torch.empty(copies * fout, fin))
        self.bias = nn.Parameter(torch.empty(copies * fout))
        bound = 1.0 / math.sqrt(fin)  # nn.Linear's default init
        for k in range(copies):
            w = self.weight.data[k * fout:(k + 1) * fout]
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            nn.init.uniform_(self.bias.data[k * fout:(k + 1) * fout], -bound, bound)

    def forward(self, x):  # x: [N, K*fin] -> [N, K, fout]
        n = x.shape[0]
        w = self.weight.view(self.copies, self.fout, self.fin)
        out = torch.einsum("nkf,kof->nko", x.view(n, self.copies, self.fin), w)
        return out + self.bias.view(self.copies, self.fout)


class PreActBlock(nn.Module):
    def __init__(self, copies, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(copies * cin)
        self.conv1 = GroupedConv2d(copies, cin, cout, 3, stride, 1)
        self.bn2 = nn.BatchNorm2d(copies * cout)
        self.conv2 = GroupedConv2d(copies, cout, cout, 3, 1, 1)
        self.shortcut = (GroupedConv2d(copies, cin, cout, 1, stride, 0)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreResNet(nn.Module):
    """Pre-activation ResNet for CIFAR (He et al. 2016), depth 6n+2, K copies."""

    def __init__(self, spec: ModelSpec, copies: int = 1):
        super().__init__()
        self.spec, self.copies = spec, copies
        n = (spec.depth - 2) // 6
        c1, c2, c3 = spec.stage_channels
        self.conv1 = GroupedConv2d(copies, spec.in_channels, c1, 3, 1, 1)
        layers, cin = [], c1
        for cout, stride in ((c1, 1), (c2, 2), (c3, 2)):
            blocks = []
            for i in range(n):
                blocks.append(PreActBlock(copies, cin, cout, stride if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn = nn.BatchNorm2d(copies * c3)
        self.fc = GroupedLinear(copies, c3, spec.num_classes)

    def forward(self, x):
        """x: [N, K*in_channels, H, W] (copy k's images in channel block k) -> [N, K, classes]."""
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn(x))
        # Global average pooling: 8x8 on CIFAR as in the reference, any size elsewhere.
        x = x.mean(dim=(2, 3))
        return self.fc(x)

    # --- per-copy views -------------------------------------------------------------------

    def copy_state(self, k: int) -> dict[str, torch.Tensor]:
        """Copy k as an ordinary single-model state dict (detached clones)."""
        out = {}
        for name, t in self.state_dict().items():
            out[name] = t.clone() if t.dim() == 0 else t.view(self.copies, -1, *t.shape[1:])[k].clone()
        return out

    def load_copies(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Load K single-model state dicts into the K copies."""
        if len(states) != self.copies:
            raise ValueError(f"expected {self.copies} states, got {len(states)}")
        own = self.state_dict()
        missing = set(own) ^ set(states[0])
        if missing:
            raise ValueError(f"state dict does not match {self.spec.key}: keys differ: {sorted(missing)[:5]}")
        stacked = {name: states[0][name] if t.dim() == 0 else torch.cat([s[name] for s in states], 0)
                   for name, t in own.items()}
        self.load_state_dict(stacked)

    def prunable(self) -> dict[str, nn.Parameter]:
        """Convolution weights: what magnitude pruning acts on (the classifier stays dense)."""
        return {f"{name}.weight": m.weight for name, m in self.named_modules() if isinstance(m, GroupedConv2d)}


def count_parameters(spec: ModelSpec) -> int:
    return sum(p.numel() for p in PreResNet(spec, 1).parameters())
