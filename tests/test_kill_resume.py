"""Kill -9 real training jobs mid-epoch, rerun them, and compare with uninterrupted runs."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT
from threeregime.pipeline import prune_checkpoint

JOB = r"""
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from threeregime.data import DataSpec
from threeregime.pipeline import prune_checkpoint, retrain_cell, train_dense
from threeregime.training import Engine, TrainSpec
kind, out = sys.argv[1], sys.argv[2]
data = DataSpec("digits", "", False, 1, False)
model = {{"arch": "preresnet", "depth": 8, "width": 0.5}}
quiet = lambda *a: print(*a, file=sys.stderr)
if kind == "dense":
    train_dense(data, model, TrainSpec(epochs=4, milestones=(2,)), 1, {{2: out + "/epoch2.pt", 4: out + "/epoch4.pt"}},
                out + "/.partial", Engine(), {{"kind": "dense"}}, log=quiet)
else:
    retrain_cell(sys.argv[3], {{1: out + "/retrain1.pt", 2: out + "/retrain2.pt"}}, out + "/log.csv", data,
                 TrainSpec(epochs=4, milestones=(2,)), Engine(), out + "/.resume", {{"kind": "retrained"}},
                 {{"kind": "pruned"}}, log=quiet)
"""


def run_job(kind, out, *extra, kill_after=None, state=None):
    """Run a job; with kill_after (a fraction), SIGKILL it that far into its third epoch,
    timed by the resume state it writes at the end of every epoch."""
    cmd = [sys.executable, "-c", JOB.format(root=str(ROOT)), kind, str(out), *map(str, extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        return err.decode()
    def wait(cond):
        deadline = time.time() + 300
        while not cond() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)

    mtime = lambda: os.stat(state).st_mtime_ns if os.path.exists(state) else None  # noqa: E731
    wait(lambda: mtime() is not None)  # end of epoch 1
    first, t1 = mtime(), time.time()
    wait(lambda: mtime() != first)     # end of epoch 2: now we know how long an epoch takes
    time.sleep(kill_after * (time.time() - t1))
    if proc.poll() is not None:
        return False  # finished before the kill: nothing was tested
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def outputs_equal(a, b, names):
    for n in names:
        x = torch.load(a / n, weights_only=True)
        y = torch.load(b / n, weights_only=True)
        for k in x["state_dict"]:
            assert torch.equal(x["state_dict"][k], y["state_dict"][k]), (n, k)
        assert x.get("history") == y.get("history"), n


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref")
    run_job("dense", ref)
    prune_checkpoint(str(ref / "epoch4.pt"), str(ref / "pruned.pt"), 0.1, "uniform", {"kind": "dense"},
                     {"kind": "pruned"}, log=lambda *a: None)
    run_job("retrain", ref, ref / "pruned.pt")
    return ref


@pytest.mark.parametrize("kill_seed", [0, 1, 2])
def test_killed_jobs_resume_bitwise_equal(reference, tmp_path, kill_seed):
    ref = reference
    rng = random.Random(kill_seed)
    for kind, names, extra, state in (
        ("dense", ["epoch2.pt", "epoch4.pt"], [], ".partial/resume.pt"),
        ("retrain", ["retrain1.pt", "retrain2.pt"], [ref / "pruned.pt"], ".resume/group1-2.pt"),
    ):
        out = tmp_path / kind
        out.mkdir()
        # kill at a random point of epoch 3 (of 4)
        killed = run_job(kind, out, *extra, kill_after=rng.uniform(0.02, 0.9), state=out / state)
        assert killed, f"{kind} job finished before it could be killed"
        log = run_job(kind, out, *extra)
        assert "resumed from" in log, log[-2000:]
        outputs_equal(ref, out, names)
        if kind == "retrain":
            assert (ref / "log.csv").read_bytes() == (out / "log.csv").read_bytes()
        assert not (out / ".partial").exists() and not (out / ".resume").exists()
