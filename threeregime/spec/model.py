"""What defines a network (ModelSpec) and the architectures that exist (ARCHITECTURES)."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import metadata
from typing import Callable

from .common import ConfigError, fmt
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
# Transformer-base (Vaswani et al. 2017) at width 1: model dimension, feed-forward dimension,
# attention heads. `width` multiplies both dimensions; the heads stay 8.
TRANSFORMER_D_MODEL, TRANSFORMER_FFN, TRANSFORMER_HEADS = 512, 2048, 8


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def transformer_dims(width: float) -> tuple[int, int, int]:
    """(d_model, ffn, heads) of the Transformer at `width`: 512 x width rounded to a multiple
    of the 8 heads (at least 8), 2048 x width, 8 heads. Width 1/8 gives (64, 256, 8)."""
    heads = TRANSFORMER_HEADS
    d_model = heads * max(1, int(round(TRANSFORMER_D_MODEL * width / heads)))
    return d_model, scaled(TRANSFORMER_FFN, width), heads


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
    # Your own network (README "Your own model"): "file.py:function" or "package.module:function";
    # arch, depth and width are then unused. kwargs go to the function (a plain dict: a key-path
    # axis model.kwargs.<name> varies one entry); source identifies the code that builds it (a
    # hash of the file, or the library and its version: factory_source), so editing the file
    # makes new keys. kwargs is compared but not hashed (a dict is not hashable).
    factory: str = ""
    kwargs: dict = field(default_factory=dict, hash=False)
    source: str = ""

    def __post_init__(self):
        if self.factory:
            _check_factory_kwargs(self.kwargs)
            return
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
        """Readable name, e.g. 'preresnet20_w1' (a factory: its function's name)."""
        if self.factory:
            return re.sub(r"[^A-Za-z0-9]+", "-", self.factory.rpartition(":")[2]).strip("-") or "factory"
        return f"{self.arch}{self.depth}_w{self.width:g}"

    @property
    def run_label(self) -> str:
        """The network's part of a dense run's readable key: 'preresnet20w1', or the factory's name."""
        return self.key if self.factory else f"{self.arch}{self.depth}w{fmt(self.width)}"

    def identity(self) -> dict:
        """The hyperparameters that are part of a dense run's key (not the data's shape). The
        built-in networks' identity is unchanged by the factory fields (their keys stay)."""
        if self.factory:
            return {"factory": self.factory, "kwargs": dict(self.kwargs), "source": self.source}
        return {"arch": self.arch, "depth": self.depth, "width": self.width}

    @staticmethod
    def from_identity(d: dict) -> "ModelSpec":
        """The spec `identity()` describes, without a data shape (what a dense-run job rebuilds)."""
        if "factory" in d:
            return ModelSpec("factory", 0, 1.0, None, None, d["factory"], dict(d.get("kwargs") or {}),
                             d.get("source", ""))
        return ModelSpec(d["arch"], d["depth"], d["width"], None, None)

    @property
    def stage_channels(self) -> tuple[int, int, int]:
        """PreResNet's channels per stage (16, 32, 64 times the width)."""
        return tuple(scaled(c, self.width) for c in (16, 32, 64))

    @property
    def first_channels(self) -> int:
        """Channels of the network's first (largest) activation: what fusing K copies costs on a CPU.
        A factory's network is unknown before it is built: taken as 64 (a ResNet's stem)."""
        if self.factory:
            return FACTORY_FIRST_CHANNELS
        return ARCHITECTURES[self.arch].first_channels(self)


FACTORY_FIRST_CHANNELS = 64
# Keys a factory must not receive: they ask for downloaded (pretrained) weights, and the
# three-regime analysis trains from scratch.
_PRETRAINED_KEYS = ("weights", "pretrained", "weights_backbone", "pretrained_backbone")


def _check_factory_kwargs(kwargs) -> None:
    if not isinstance(kwargs, dict):
        raise ConfigError(f"model.kwargs must be a mapping of argument names to values, got {kwargs!r}")
    for k in _PRETRAINED_KEYS:
        if kwargs.get(k) not in (None, False):
            raise ConfigError(f"model.kwargs.{k}: {kwargs[k]!r} asks for pretrained weights; the networks here "
                              f"are trained from scratch: drop model.kwargs.{k}")


def split_factory(factory: str) -> tuple[str, str, bool]:
    """(where, function, is_file) of 'my_models.py:small_cnn' or 'package.module:function'.
    A target ending in .py or containing a path separator is a file (relative to the working
    directory); anything else a module to import."""
    where, sep, fn = str(factory).rpartition(":")
    if not sep or not where or not fn.isidentifier():
        raise ConfigError(f"model.factory: {factory!r} is not 'file.py:function' or 'package.module:function' "
                          f"(e.g. 'my_models.py:small_cnn' or 'torchvision.models:resnet18')")
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    return where, fn, is_file


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()[:16]


def _top_level_names(path: str) -> set[str]:
    """Names a Python file defines at its top level (functions, classes, assignments, imports),
    read with ast: no import, so planning never runs the user's code (or torch)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@lru_cache(maxsize=None)
def _distributions() -> dict:
    return metadata.packages_distributions()


def _module_file(module: str) -> str | None:
    """The source file of an importable module, found on sys.path without importing it."""
    parts = module.split(".")
    for entry in sys.path:
        base = os.path.join(entry or os.getcwd(), *parts)
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return candidate
    return None


def factory_source(factory: str) -> str:
    """What identifies the code behind a factory, without importing it (planning stays
    torch-free): a file's SHA-256, an installed library's name and version, or the SHA-256
    of a module's source file found on sys.path. Refuses a factory that is not there."""
    where, fn, is_file = split_factory(factory)
    if is_file:
        if not os.path.isfile(where):
            raise ConfigError(f"model.factory: file {where!r} not found (relative to the working directory "
                              f"{os.getcwd()}); write the path to your Python file, e.g. 'my_models.py:{fn}'")
        try:
            names = _top_level_names(where)
        except SyntaxError as e:
            raise ConfigError(f"model.factory: {where} is not valid Python: {e}") from None
        if fn not in names:
            defined = sorted(n for n in names if not n.startswith("_"))
            raise ConfigError(f"model.factory: {where} defines no {fn!r} at its top level; it defines: {defined}")
        return _file_digest(where)
    top = where.split(".")[0]
    dists = _distributions().get(top)
    if dists:
        return f"{dists[0]}=={metadata.version(dists[0])}"
    path = _module_file(where)
    if path is None:
        raise ConfigError(f"model.factory: module {where!r} is neither installed nor on the Python path; "
                          f"write 'file.py:{fn}' for a file, or install the package")
    return _file_digest(path)


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
    # Translation (threeregime.seq2seq): depth is the layers of each stack (6: Transformer-base,
    # 6 encoder + 6 decoder layers), width multiplies d_model 512 and the feed-forward 2048
    # (transformer_dims). num_classes is the vocabulary size and in_channels 0: the job fills
    # them in with spec.for_data(0, vocab_size). One copy per network (no fused copies).
    "transformer": Architecture(
        "threeregime.seq2seq.transformer:build_transformer_copies", lambda d: d >= 1,
        ">= 1 (layers per stack: encoder and decoder each)",
        lambda s: transformer_dims(s.width)[0],
        "encoder-decoder Transformer (post-LN), 8 heads, d_model 512 x width, tied embeddings"),
}
