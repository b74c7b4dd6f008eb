"""The networks, each with K independent copies evaluated by one set of kernels.

Every layer holds the K copies side by side along the channel axis: a convolution is one
grouped convolution with groups=K, a BatchNorm is one BatchNorm over K*C channels (so each
copy keeps its own batch and running statistics), the classifier is a batched matmul.
Activations are [N, K*C, H, W]; row n of copy k is that copy's own image, so K copies can
train on K different data orders at once. K=1 is the ordinary network.

Checkpoints never store the grouped layout: `copy_state(k)` returns copy k as an ordinary
per-model state dict (same keys, per-model shapes) and `load_copies` stacks such dicts, so
files stay interchangeable whatever K a job ran with. This works for every architecture
because every parameter and buffer holds copy k in block k of its first dimension.

Architectures are entries of threeregime.spec.model.ARCHITECTURES (which depths exist, how
wide the first activation is, and the class here that builds K copies, named as
"threeregime.models:<Class>"). Adding one is a subclass of `FusedNetwork` built from
GroupedConv2d / BatchNorm2d / GroupedLinear, plus its entry; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import fnmatch
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spec.common import resolve
from .spec.model import ARCHITECTURES, DENSENET_GROWTH, VGG_LAYERS, ModelSpec, scaled


class GroupedConv2d(nn.Module):
    def __init__(self, copies, cin, cout, kernel_size, stride=1, padding=0, bias=False):
        super().__init__()
        self.copies, self.stride, self.padding = copies, stride, padding
        self.weight = nn.Parameter(torch.empty(copies * cout, cin, kernel_size, kernel_size))
        # He init as in the reference CIFAR networks: N(0, 2 / (k*k*out_channels)), bias 0.
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / (kernel_size * kernel_size * cout)))
        self.bias = nn.Parameter(torch.zeros(copies * cout)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, groups=self.copies)


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


class FusedNetwork(nn.Module):
    """K copies of one network in grouped layers; subclasses build the layers and `forward`
    ([N, K*in_channels, H, W] with copy k's images in channel block k -> logits [N, K, classes])."""

    # Whether the training step may be captured in a CUDA graph (engine.cuda_graph).
    cuda_graphable = True

    def __init__(self, spec: ModelSpec, copies: int):
        super().__init__()
        self.spec, self.copies = spec, copies

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

    def prunable(self, layers: tuple[str, ...] = ("conv",), exclude: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
        """The weights magnitude pruning acts on: those of the modules of the given types
        (spec.prune.LAYER_TYPES: 'conv', 'linear') whose names match none of the `exclude`
        globs (fnmatch over named_modules(), e.g. 'fc', 'layer4.*'). The default, every
        convolution, leaves the classifier dense as in the paper."""
        types = tuple(cls for t in layers for cls in LAYER_TYPES[t])
        return {f"{name}.weight": m.weight for name, m in self.named_modules()
                if name and isinstance(m, types) and isinstance(getattr(m, "weight", None), torch.Tensor)
                and not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)}


# --- PreResNet -----------------------------------------------------------------------------------

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


class PreResNet(FusedNetwork):
    """Pre-activation ResNet for CIFAR (He et al. 2016), depth 6n+2, K copies."""

    def __init__(self, spec: ModelSpec, copies: int = 1):
        super().__init__(spec, copies)
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


# --- VGG -----------------------------------------------------------------------------------------

class VGG(FusedNetwork):
    """CIFAR VGG with BatchNorm: conv3x3 (with bias) + BN + ReLU per layer, four 2x2 max pools,
    then a 2x2 average pool (the whole 2x2 map left of a 32x32 image) and one linear layer
    512 -> classes, no hidden fully connected layers. K copies.

    Pools use ceil_mode so images smaller than 32x32 (the 8x8 digits) keep a 1x1 map instead
    of vanishing; on even sizes (CIFAR, SVHN) ceil_mode changes nothing.
    """

    def __init__(self, spec: ModelSpec, copies: int = 1):
        super().__init__(spec, copies)
        layers, cin = [], spec.in_channels
        for v in VGG_LAYERS[spec.depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            cout = scaled(v, spec.width)
            layers += [GroupedConv2d(copies, cin, cout, 3, 1, 1, bias=True), nn.BatchNorm2d(copies * cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = GroupedLinear(copies, cin, spec.num_classes)

    def forward(self, x):
        x = self.features(x)
        # AvgPool2d(2) of the reference on its 2x2 map; the mean over any map size elsewhere.
        return self.fc(x.mean(dim=(2, 3)))


# --- DenseNet ------------------------------------------------------------------------------------

def cat_copies(a: torch.Tensor, b: torch.Tensor, copies: int) -> torch.Tensor:
    """Channel concatenation of fused activations that keeps each copy's channels together:
    [N, K*Ca, H, W] and [N, K*Cb, H, W] -> [N, K*(Ca+Cb), H, W] with copy k's Ca then Cb
    channels in block k (a plain torch.cat on dim 1 would put all copies of `a` first).

    The result keeps the inputs' memory layout: in channels_last, channels are the innermost
    dimension, so the copies are interleaved there (no conversion to NCHW and back per layer).
    """
    if copies == 1:
        return torch.cat([a, b], 1)
    if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
        a, b = a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)     # [N, H, W, K*C], contiguous
        out = torch.cat([a.unflatten(3, (copies, -1)), b.unflatten(3, (copies, -1))], 4).flatten(3, 4)
        return out.permute(0, 3, 1, 2)                          # [N, K*(Ca+Cb), H, W], channels_last
    return torch.cat([a.unflatten(1, (copies, -1)), b.unflatten(1, (copies, -1))], 2).flatten(1, 2)


class DenseLayer(nn.Module):
    """Basic (non-bottleneck) dense layer: BN-ReLU-conv3x3 to `growth` new channels, concatenated."""

    def __init__(self, copies, cin, growth):
        super().__init__()
        self.copies = copies
        self.bn = nn.BatchNorm2d(copies * cin)
        self.conv = GroupedConv2d(copies, cin, growth, 3, 1, 1)

    def forward(self, x):
        return cat_copies(x, self.conv(F.relu(self.bn(x))), self.copies)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 + 2x2 average pool between dense blocks (compression 1: channels kept)."""

    def __init__(self, copies, cin, cout):
        super().__init__()
        self.bn = nn.BatchNorm2d(copies * cin)
        self.conv = GroupedConv2d(copies, cin, cout, 1, 1, 0)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2, ceil_mode=True)


class DenseNet(FusedNetwork):
    """DenseNet for CIFAR (Huang et al. 2017), basic layers, depth 3n+4: a 3x3 first conv to
    2 x growth channels, three dense blocks of n layers (growth 12 x width) with transitions
    of compression 1 between them, final BN-ReLU, global average pool, linear. K copies."""

    GROWTH = DENSENET_GROWTH

    def __init__(self, spec: ModelSpec, copies: int = 1):
        super().__init__(spec, copies)
        n = (spec.depth - 4) // 3
        growth = scaled(self.GROWTH, spec.width)
        c = 2 * growth
        self.conv1 = GroupedConv2d(copies, spec.in_channels, c, 3, 1, 1)
        stages = []
        for block in range(3):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(copies, c, growth))
                c += growth
            if block < 2:
                layers.append(Transition(copies, c, c))
            stages.append(nn.Sequential(*layers))
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(copies * c)
        self.fc = GroupedLinear(copies, c, spec.num_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = F.relu(self.bn(x))
        return self.fc(x.mean(dim=(2, 3)))  # 8x8 average pool on CIFAR


# --- the registry ----------------------------------------------------------------------------------

# The module classes of each prunable layer type (threeregime.spec.prune.LAYER_TYPES): the
# grouped layers of the built-in networks and torch's own, for networks built by a factory.
LAYER_TYPES = {
    "conv": (GroupedConv2d, nn.modules.conv._ConvNd),
    "linear": (GroupedLinear, nn.Linear),
}


def build_network(spec: ModelSpec, copies: int = 1) -> FusedNetwork:
    """K copies of the network `spec` describes, in one grouped network (a factory's network:
    threeregime.generic.GenericNetwork, the same interface)."""
    if not spec.complete:
        raise ValueError(f"{spec} has no data shape: fill in in_channels and num_classes from the data set "
                         f"(ModelSpec.for_data) before building it")
    if spec.factory:
        from .generic import GenericNetwork

        return GenericNetwork(spec, copies)
    return resolve(ARCHITECTURES[spec.arch].network)(spec, copies)


def count_parameters(spec: ModelSpec) -> int:
    """Trainable parameters of one copy (weights and biases; BatchNorm's running statistics,
    which are buffers, not counted)."""
    return sum(p.numel() for p in build_network(spec, 1).parameters())
