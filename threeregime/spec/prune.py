"""Magnitude pruning as a hyperparameter: the method and the density, and its path segment."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ConfigError, fmt

# uniform (UniformMP): the same density in every layer; global (GlobalMP): one threshold.
METHODS = ("uniform", "global")


@dataclass(frozen=True)
class PruneSpec:
    method: str = "uniform"
    density: float = 0.05

    @property
    def key(self) -> str:
        return f"{self.method}_d{fmt(self.density)}"


def parse_prune_key(key: str) -> PruneSpec:
    m = re.fullmatch(r"([a-z]+)_d([0-9.e-]+)", key)
    if not m or m.group(1) not in METHODS:
        raise ConfigError(f"{key!r} is not a pruning key like 'uniform_d0.05' (methods: {list(METHODS)})")
    return PruneSpec(m.group(1), float(m.group(2)))
