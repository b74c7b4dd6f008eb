"""Magnitude pruning as a hyperparameter: the method, the density and which weights it acts on,
and its path segment."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ConfigError, digest, fmt

# uniform (UniformMP): the same density in every layer; global (GlobalMP): one threshold.
METHODS = ("uniform", "global")
# Layer types whose weights can be pruned (threeregime.pruning.LAYER_TYPES maps them to module
# classes): convolutions of any dimension, fully connected layers.
LAYER_TYPES = ("conv", "linear")
DEFAULT_LAYERS = ("conv",)
_SELECTION = r"_s[0-9a-f]{8}"
# The prune wildcard: a method, a density and, for a non-default choice of weights, 's' and
# 8 hex digits of the choice (rules/common.smk constrains {prune} with it).
DEFAULT_KEY_PATTERN = r"[a-z]+_d[0-9.e-]+"
KEY_PATTERN = DEFAULT_KEY_PATTERN + "(?:" + _SELECTION + ")?"
# The keys with a selection digest: rules/prune.smk gives them a rule of their own (prune_selected)
# with the selection as a parameter, so the default keys' rule keeps the no parameters it was
# recorded with (Snakemake reruns a job whose recorded parameters changed, and all after it).
SELECTED_KEY_PATTERN = DEFAULT_KEY_PATTERN + _SELECTION


@dataclass(frozen=True)
class PruneSpec:
    """method and density; `layers` (types in LAYER_TYPES) and `exclude` (fnmatch globs over
    the network's module names, e.g. 'fc' or 'layer4.*') choose the prunable weights. The
    default, every convolution, keeps the key it always had ('uniform_d0.05'); another choice
    adds 8 hex digits of it ('uniform_d0.05_s1a2b3c4d')."""

    method: str = "uniform"
    density: float = 0.05
    layers: tuple[str, ...] = DEFAULT_LAYERS
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        unknown = [t for t in self.layers if t not in LAYER_TYPES]
        if unknown or not self.layers:
            raise ConfigError(f"prune.layers: {list(self.layers)} must be a non-empty list of layer types from "
                              f"{list(LAYER_TYPES)} (unknown: {unknown})")
        if len(set(self.layers)) != len(self.layers) or len(set(self.exclude)) != len(self.exclude):
            raise ConfigError(f"prune.layers / prune.exclude list a value twice: {list(self.layers)}, "
                              f"{list(self.exclude)}")

    @property
    def default_selection(self) -> bool:
        return tuple(sorted(self.layers)) == DEFAULT_LAYERS and not self.exclude

    @property
    def key(self) -> str:
        base = f"{self.method}_d{fmt(self.density)}"
        if self.default_selection:
            return base
        return f"{base}_s{digest({'layers': sorted(self.layers), 'exclude': list(self.exclude)})}"

    def as_dict(self) -> dict:
        return {"method": self.method, "density": self.density, "layers": list(self.layers),
                "exclude": list(self.exclude)}

    @staticmethod
    def from_dict(d: dict) -> "PruneSpec":
        return PruneSpec(d["method"], float(d["density"]), tuple(d.get("layers", DEFAULT_LAYERS)),
                         tuple(d.get("exclude", ())))


def parse_prune_key(key: str) -> PruneSpec:
    """The spec of a default-selection key ('uniform_d0.05'); a key with a selection digest
    names its layers only through the plan's index (study.Index.prune)."""
    m = re.fullmatch(r"([a-z]+)_d([0-9.e-]+)", key)
    if not m or m.group(1) not in METHODS:
        raise ConfigError(f"{key!r} is not a pruning key like 'uniform_d0.05' (methods: {list(METHODS)})")
    return PruneSpec(m.group(1), float(m.group(2)))
