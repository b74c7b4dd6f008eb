"""Pick the compute device for one workflow job, claiming a free GPU on multi-GPU machines.

Snakemake's local executor does not assign GPUs to jobs: with ``--resources gpu=4`` it
runs at most four GPU jobs at once, but all of them would see every GPU and use GPU 0.
:func:`select_device` therefore claims one GPU per job process:

* ``CUDA_VISIBLE_DEVICES`` already set (Slurm sets it for ``--gpus=1`` jobs, or the user
  did): respected as is, nothing is claimed -- except that a list of several GPUs set
  outside Slurm (``CUDA_VISIBLE_DEVICES=2,3 snakemake --profile profiles/local``) is
  narrowed to one claimed entry, as below.
* several GPUs visible: the first GPU whose lock file ``gpu<i>.lock`` in the lock folder
  can be locked (exclusive, non-blocking ``flock``) is claimed, and
  ``CUDA_VISIBLE_DEVICES=<i>`` is set before CUDA is initialised.  The lock is held by an
  open file handle until the process exits (the kernel drops it even on SIGKILL), so
  there are no stale locks.  The lock folder is ``$THREEREGIME_GPU_LOCK_DIR``, default
  ``$TMPDIR/threeregime-gpu-locks``; concurrent runs on one machine must share it.
* one GPU: used as is; no CUDA: ``"cpu"``.
* inside a Slurm job without ``CUDA_VISIBLE_DEVICES`` (no GPU allocated): ``"cpu"``.

GPUs are counted through NVML (``torch.cuda`` does so without creating a CUDA context) or
``nvidia-smi -L``, never by initialising CUDA, because ``CUDA_VISIBLE_DEVICES`` is only
read when CUDA initialises.

Environment:
  THREEREGIME_DEVICE=cpu       force the CPU
  THREEREGIME_GPU_LOCK_DIR     lock folder (see above)
  THREEREGIME_GPU_WAIT         seconds to wait for a free GPU when all are claimed
                               (default 0: fail at once with an explanation)
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from typing import Callable, MutableMapping, Optional, Sequence, Union

__all__ = ["select_device", "claim_gpu", "release_gpus", "count_gpus", "default_lock_dir", "NoFreeGPUError"]

# Open lock files of the GPUs this process claimed: kept open (and so locked) until exit.
_held_locks: dict[str, object] = {}


class NoFreeGPUError(RuntimeError):
    """Every GPU's lock is held by another process."""


def default_lock_dir(environ: Optional[MutableMapping[str, str]] = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("THREEREGIME_GPU_LOCK_DIR") or os.path.join(
        tempfile.gettempdir(), "threeregime-gpu-locks")


def count_gpus() -> int:
    """Number of GPUs on this machine, without initialising CUDA; -1 if unknown."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard requirement
        torch = None
    if torch is not None:
        if not torch.backends.cuda.is_built():
            return 0
        nvml_count = getattr(torch.cuda, "_device_count_nvml", None)
        if nvml_count is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    n = int(nvml_count())
                except Exception:
                    n = -1
            if n >= 0:
                return n
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return -1
        if out.returncode == 0:
            return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return -1


def _make_lock_dir(lock_dir: str) -> None:
    if not os.path.isdir(lock_dir):
        os.makedirs(lock_dir, exist_ok=True)
        try:  # shared by all users of the machine, like /tmp
            os.chmod(lock_dir, 0o1777)
        except OSError:
            pass


def _try_lock(path: str):
    """The open, flock-ed lock file, or None if another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        writable = True
    except PermissionError:  # another user's lock file: flock needs no write access
        fd = os.open(path, os.O_RDONLY)
        writable = False
    f = os.fdopen(fd, "r+" if writable else "r")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        f.close()
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    if writable:  # who holds it, for humans looking at the folder
        try:
            os.fchmod(f.fileno(), 0o666)
        except OSError:
            pass
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
    return f


def claim_gpu(gpus: Union[int, Sequence[str]], lock_dir: Optional[str] = None,
              wait: float = 0.0, poll: float = 0.5) -> str:
    """Claim the first GPU that no other process holds and return its id.

    ``gpus`` is a GPU count (ids ``"0"`` .. ``"n-1"``) or a list of ids as they appear in
    ``CUDA_VISIBLE_DEVICES``.  The claim lasts until this process exits (or
    :func:`release_gpus`); claiming again in the same process returns the GPU already
    held.  If all are held, retries for ``wait`` seconds, then raises
    :class:`NoFreeGPUError`.
    """
    if _held_locks:
        return next(iter(_held_locks))
    ids = [str(i) for i in range(gpus)] if isinstance(gpus, int) else [str(g) for g in gpus]
    if not ids:
        raise ValueError("no GPUs to claim")
    lock_dir = lock_dir or default_lock_dir()
    _make_lock_dir(lock_dir)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        for gpu in ids:
            f = _try_lock(_lock_path(lock_dir, gpu))
            if f is not None:
                _held_locks[gpu] = f
                return gpu
        if time.monotonic() >= deadline:
            raise NoFreeGPUError(
                f"all {len(ids)} GPUs ({','.join(ids)}) are claimed by other jobs (lock files "
                f"in {lock_dir}). Run at most {len(ids)} GPU jobs at once (snakemake "
                f"--resources gpu={len(ids)}, see profiles/local), set "
                "THREEREGIME_GPU_WAIT=<seconds> to wait for a free GPU, or set "
                "CUDA_VISIBLE_DEVICES to a single GPU yourself.")
        time.sleep(poll)


def _lock_path(lock_dir: str, gpu: str) -> str:
    return os.path.join(lock_dir, "gpu" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu) + ".lock")


def release_gpus() -> None:
    """Drop this process's GPU claims (normally done by process exit)."""
    for f in _held_locks.values():
        f.close()
    _held_locks.clear()


def _cuda_description() -> Optional[str]:
    """'cuda:0 (NVIDIA H100 80GB HBM3)' if CUDA works (initialises it), else None."""
    import torch

    if not torch.cuda.is_available():
        return None
    return f"cuda:0 ({torch.cuda.get_device_name(0)})"


def select_device(log: Callable[[str], object] = print, *, gpu_count: Optional[int] = None,
                  lock_dir: Optional[str] = None, wait: Optional[float] = None,
                  environ: Optional[MutableMapping[str, str]] = None,
                  cuda_description: Callable[[], Optional[str]] = _cuda_description) -> str:
    """Return ``"cuda"`` or ``"cpu"`` for this job, claiming a GPU if there are several.

    Call it before anything touches CUDA.  ``gpu_count``, ``environ`` and
    ``cuda_description`` are for tests (fake GPUs); by default GPUs are counted with
    :func:`count_gpus` and the process environment is used.
    """
    env = os.environ if environ is None else environ
    if env.get("THREEREGIME_DEVICE", "").strip().lower() == "cpu":
        log("device: cpu (THREEREGIME_DEVICE=cpu)")
        return "cpu"

    preset = env.get("CUDA_VISIBLE_DEVICES")
    if preset is None and env.get("SLURM_JOB_ID"):
        # inside a Slurm job GPUs come only from the allocation (--gpus), which sets
        # CUDA_VISIBLE_DEVICES; none set means none allocated to this job
        log("device: cpu (Slurm job without a GPU allocation)")
        return "cpu"
    preset_ids = [g.strip() for g in (preset or "").split(",") if g.strip()]
    if preset is not None and (len(preset_ids) < 2 or env.get("SLURM_JOB_ID")):
        how = f"CUDA_VISIBLE_DEVICES={preset} (preset, e.g. by Slurm)"
    else:
        # several GPUs: claim one.  A preset list (CUDA_VISIBLE_DEVICES=2,3 outside
        # Slurm) is narrowed to one of its entries.
        n = len(preset_ids) if preset is not None else (
            count_gpus() if gpu_count is None else gpu_count)
        if n >= 2:
            _warn_if_cuda_initialised(log)
            if wait is None:
                wait = float(env.get("THREEREGIME_GPU_WAIT", "0") or 0)
            lock_dir = lock_dir or default_lock_dir(env)
            gpu = claim_gpu(preset_ids if preset is not None else n, lock_dir, wait=wait)
            env["CUDA_VISIBLE_DEVICES"] = gpu
            how = (f"CUDA_VISIBLE_DEVICES={gpu} (claimed GPU {gpu} of "
                   f"{preset if preset is not None else n}, lock {_lock_path(lock_dir, gpu)})")
        elif n == 1:
            how = "the only GPU"
        elif n == 0:
            log("device: cpu (no CUDA GPU)")
            return "cpu"
        else:
            how = None  # no NVML/nvidia-smi: let CUDA decide

    desc = cuda_description()
    if desc is None:
        detail = f"; {how}" if how and (preset is not None or _held_locks) else ""
        log(f"device: cpu (no CUDA{detail})")
        return "cpu"
    if how is None:
        how = "CUDA's default GPU (GPU count unknown: no NVML/nvidia-smi)"
    log(f"device: {desc} via {how}")
    return "cuda"


def _warn_if_cuda_initialised(log) -> None:
    try:
        import torch

        if torch.cuda.is_initialized():
            log("warning: CUDA was initialised before select_device(); "
                "CUDA_VISIBLE_DEVICES set now has no effect in this process")
    except Exception:  # pragma: no cover
        pass
