"""What every spec module shares: the config error, numbers as written in paths, digests."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import json
import math


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what is allowed."""


def fmt(x: float) -> str:
    """Number as it appears in paths and labels: 0.05 -> '0.05', 1.0 -> '1', 64 -> '64'."""
    return f"{float(x):g}"


def digest(obj) -> str:
    """8 hex digits identifying a JSON-able object (canonical: sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def fields_without_late_defaults(spec, late: tuple[str, ...]) -> dict:
    """A frozen dataclass's fields as a dict, without the `late` ones (fields added after
    artifacts were made) where they hold their default: the keys, digests and recorded rule
    parameters of what was made before them stay as they were."""
    out = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    for f in dataclasses.fields(spec):
        if f.name in late and out[f.name] == f.default:
            del out[f.name]
    return out


def whole(value, key: str) -> int:
    """An integer config value; 64.0 is accepted as 64, 64.5 is refused naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not float(value).is_integer():
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    return int(value)


def resolve(ref):
    """The object a registry entry names: "package.module:attribute" is imported on first use
    (so the spec layer never imports torch); a callable is returned as it is."""
    if callable(ref):
        return ref
    module, _, attr = str(ref).partition(":")
    if not attr:
        raise ValueError(f"{ref!r} is not a 'module:attribute' reference")
    return getattr(importlib.import_module(module), attr)
