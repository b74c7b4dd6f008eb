"""GPU claiming for local multi-GPU runs (threeregime.devices), tested with fake GPU counts.

No GPU is needed: the lock logic only needs a GPU count and a lock folder; claims from
other jobs are made by real separate processes, as in a Snakemake run.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from threeregime import devices  # noqa: E402
from threeregime.devices import NoFreeGPUError, claim_gpu, select_device  # noqa: E402

FAKE = "cuda:0 (FakeGPU)"


@pytest.fixture(autouse=True)
def _release():
    devices.release_gpus()
    yield
    devices.release_gpus()


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Holder:
    """Another job: a process that claims a GPU and holds it until stopped."""

    def __init__(self, n_gpus, lock_dir):
        code = textwrap.dedent(f"""
            import sys
            from threeregime.devices import claim_gpu
            print(claim_gpu({n_gpus}, {str(lock_dir)!r}), flush=True)
            sys.stdin.read()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=_env(), cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise AssertionError(f"holder failed: {self.proc.stderr.read()}")
        self.index = line.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def holders():
    started = []

    def start(n_gpus, lock_dir):
        h = Holder(n_gpus, lock_dir)
        started.append(h)
        return h

    yield start
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait(timeout=30)


def test_two_processes_claim_different_gpus(tmp_path, holders):
    a = holders(2, tmp_path)
    b = holders(2, tmp_path)
    assert {a.index, b.index} == {"0", "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu0.lock", "gpu1.lock"]


def test_third_claim_fails_with_clear_message(tmp_path, holders):
    holders(2, tmp_path)
    holders(2, tmp_path)
    t0 = time.monotonic()
    with pytest.raises(NoFreeGPUError) as e:
        claim_gpu(2, str(tmp_path), wait=0)
    assert time.monotonic() - t0 < 5  # non-blocking
    msg = str(e.value)
    assert "all 2 GPUs (0,1) are claimed" in msg and str(tmp_path) in msg
    assert "--resources gpu=2" in msg and "THREEREGIME_GPU_WAIT" in msg


def test_third_claim_waits_for_a_release(tmp_path, holders):
    holders(2, tmp_path)
    b = holders(2, tmp_path)
    threading.Timer(1.0, b.stop).start()
    t0 = time.monotonic()
    assert claim_gpu(2, str(tmp_path), wait=20, poll=0.1) == b.index
    assert 0.5 < time.monotonic() - t0 < 15


def test_lock_dies_with_its_process(tmp_path, holders):
    a = holders(1, tmp_path)
    with pytest.raises(NoFreeGPUError):
        claim_gpu(1, str(tmp_path))
    a.kill()  # even SIGKILL releases the flock: no stale locks
    assert claim_gpu(1, str(tmp_path)) == "0"


def test_claim_is_held_until_release_and_idempotent(tmp_path):
    assert claim_gpu(3, str(tmp_path)) == "0"
    assert claim_gpu(3, str(tmp_path)) == "0"  # same process: same GPU, no second lock
    # another process sees GPU 0 taken
    out = subprocess.run([sys.executable, "-c",
                          f"from threeregime.devices import claim_gpu; print(claim_gpu(3, {str(tmp_path)!r}))"],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "1", out.stderr
    devices.release_gpus()
    assert claim_gpu(3, str(tmp_path)) == "0"


def test_select_device_claims_free_gpu_and_sets_cuda_visible_devices(tmp_path, holders):
    a = holders(3, tmp_path)
    assert a.index == "0"
    env, logs = {}, []
    dev = select_device(logs.append, gpu_count=3, lock_dir=str(tmp_path), environ=env,
                        cuda_description=lambda: FAKE)
    assert dev == "cuda"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert logs and logs[-1].startswith(f"device: {FAKE} via CUDA_VISIBLE_DEVICES=1 ")
    assert "gpu1.lock" in logs[-1]


def test_select_device_uses_lock_dir_from_environment(tmp_path):
    env, logs = {"THREEREGIME_GPU_LOCK_DIR": str(tmp_path / "locks")}, []
    assert select_device(logs.append, gpu_count=2, environ=env, cuda_description=lambda: FAKE) == "cuda"
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert (tmp_path / "locks" / "gpu0.lock").exists()


def test_select_device_all_claimed_raises(tmp_path, holders):
    holders(2, tmp_path)
    holders(2, tmp_path)
    env = {}
    with pytest.raises(NoFreeGPUError):
        select_device(lambda *a: None, gpu_count=2, lock_dir=str(tmp_path), environ=env,
                      cuda_description=lambda: FAKE)
    assert "CUDA_VISIBLE_DEVICES" not in env


def test_select_device_respects_preset_cuda_visible_devices(tmp_path):
    env, logs = {"CUDA_VISIBLE_DEVICES": "3"}, []
    dev = select_device(logs.append, gpu_count=4, lock_dir=str(tmp_path / "locks"), environ=env,
                        cuda_description=lambda: FAKE)
    assert dev == "cuda"
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (tmp_path / "locks").exists()  # nothing claimed
    assert logs == [f"device: {FAKE} via CUDA_VISIBLE_DEVICES=3 (preset, e.g. by Slurm)"]


def test_select_device_narrows_a_preset_list_outside_slurm(tmp_path, holders):
    a = holders(["5", "7"], tmp_path)
    assert a.index == "5"
    env, logs = {"CUDA_VISIBLE_DEVICES": "5,7"}, []
    assert select_device(logs.append, lock_dir=str(tmp_path), environ=env,
                         cuda_description=lambda: FAKE) == "cuda"
    assert env["CUDA_VISIBLE_DEVICES"] == "7"
    assert logs[-1].startswith(f"device: {FAKE} via CUDA_VISIBLE_DEVICES=7 (claimed GPU 7 of 5,7")


def test_select_device_keeps_a_preset_list_inside_slurm(tmp_path):
    env, logs = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "7"}, []
    assert select_device(logs.append, lock_dir=str(tmp_path), environ=env,
                         cuda_description=lambda: FAKE) == "cuda"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and not any(tmp_path.iterdir())


def test_select_device_preset_but_no_cuda_is_cpu(tmp_path):
    # what a --gpus=1 job sees on the CI cluster (fake GPU, no CUDA)
    env, logs = {"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "7"}, []
    assert select_device(logs.append, gpu_count=1, environ=env, cuda_description=lambda: None) == "cpu"
    assert logs == ["device: cpu (no CUDA; CUDA_VISIBLE_DEVICES=0 (preset, e.g. by Slurm))"]


def test_select_device_slurm_job_without_gpu_is_cpu(tmp_path):
    env, logs = {"SLURM_JOB_ID": "7"}, []
    assert select_device(logs.append, gpu_count=4, lock_dir=str(tmp_path), environ=env,
                         cuda_description=lambda: FAKE) == "cpu"
    assert logs == ["device: cpu (Slurm job without a GPU allocation)"]
    assert not any(tmp_path.iterdir())


def test_select_device_no_gpu_is_cpu(tmp_path):
    logs = []
    assert select_device(logs.append, gpu_count=0, lock_dir=str(tmp_path), environ={},
                         cuda_description=lambda: FAKE) == "cpu"
    assert logs == ["device: cpu (no CUDA GPU)"]


def test_select_device_single_gpu_not_claimed(tmp_path):
    env, logs = {}, []
    assert select_device(logs.append, gpu_count=1, lock_dir=str(tmp_path), environ=env,
                         cuda_description=lambda: FAKE) == "cuda"
    assert "CUDA_VISIBLE_DEVICES" not in env and not any(tmp_path.iterdir())
    assert logs == [f"device: {FAKE} via the only GPU"]


def test_force_cpu(tmp_path):
    logs = []
    env = {"THREEREGIME_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "0"}
    assert select_device(logs.append, gpu_count=2, environ=env, cuda_description=lambda: FAKE) == "cpu"
    assert logs == ["device: cpu (THREEREGIME_DEVICE=cpu)"]


def test_real_machine_without_arguments(tmp_path):
    """select_device() on this machine, in a fresh process: counts GPUs without initialising
    CUDA, logs one 'device:' line and returns cpu or cuda."""
    code = textwrap.dedent("""
        import torch
        from threeregime.devices import count_gpus, select_device
        n = count_gpus()
        assert not torch.cuda.is_initialized(), "count_gpus initialised CUDA"
        print("count", n)
        print("result", select_device())
        if n >= 2:
            import os
            assert torch.cuda.device_count() == 1, os.environ.get("CUDA_VISIBLE_DEVICES")
    """)
    env = _env()
    env["THREEREGIME_GPU_LOCK_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("count ")
    assert lines[1].startswith("device: ")
    assert lines[2] in ("result cpu", "result cuda")
