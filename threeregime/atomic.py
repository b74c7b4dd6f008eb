"""Atomic writes of every file the workflow produces (temp file in the target's folder, fsync,
rename). Torch-free, so jobs that only write tables and figures do not import torch; torch
checkpoints are in threeregime.checkpoints."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str, write) -> None:
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


def save_bytes(data: bytes, path: str) -> None:
    write_atomic(path, lambda f: f.write(data))


def save_json(obj: Any, path: str) -> None:
    save_bytes((json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), path)


def save_text(text: str, path: str) -> None:
    save_bytes(text.encode(), path)
