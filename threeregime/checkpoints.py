"""Atomic writes and checked reads of every file the workflow produces."""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or does not belong where it is; the message says what to do."""


_UMASK = os.umask(0)
os.umask(_UMASK)


def _write_atomic(path: str, write) -> None:
    """Write through a temp file in the target's folder, fsync, then rename over the target.

    A killed job leaves at most a stray '.tmp' file, never a target that looks complete.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; targets get the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise OSError(e.errno, f"could not write {path}: {e.strerror}") from e
        raise


def save_torch(obj: Any, path: str) -> None:
    def write(f):
        buf = io.BytesIO()
        torch.save(obj, buf)
        f.write(buf.getbuffer())
    _write_atomic(path, write)


def save_bytes(data: bytes, path: str) -> None:
    _write_atomic(path, lambda f: f.write(data))


def save_json(obj: Any, path: str) -> None:
    save_bytes((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), path)


def save_text(text: str, path: str) -> None:
    save_bytes(text.encode(), path)


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
