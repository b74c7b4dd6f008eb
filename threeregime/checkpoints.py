"""Torch checkpoints: written atomically (threeregime.atomic), read back checked against what
their path says they are."""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from .atomic import write_atomic


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or does not belong where it is; the message says what to do."""


def save_torch(obj: Any, path: str) -> None:
    def write(f):
        buf = io.BytesIO()
        torch.save(obj, buf)
        f.write(buf.getbuffer())
    write_atomic(path, write)


def load_torch(path: str, expect: dict[str, Any] | None = None) -> dict:
    """Load a checkpoint; refuse a corrupt one or one made with other hyperparameters.

    `expect` maps keys of the checkpoint's 'meta' dict to the values its path implies.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"missing checkpoint {path}: rerun the workflow to rebuild it")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbled zip archives
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e}). "
                              f"Delete it and rerun: Snakemake will rebuild it.") from None
    if expect:
        meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
        wrong = {k: (meta.get(k), v) for k, v in expect.items() if meta.get(k) != v}
        if wrong:
            detail = ", ".join(f"{k}: file has {a!r}, path says {b!r}" for k, (a, b) in wrong.items())
            raise CheckpointError(f"checkpoint {path} was made with other hyperparameters than its path "
                                  f"says ({detail}). Delete it and rerun to rebuild it.")
    return obj
