"""Kill -9 real training jobs mid-epoch, rerun them, and compare with uninterrupted runs."""

import random
import sys

import pytest
import torch

from conftest import ROOT
from killing import run_or_kill
from threeregime.pipeline import prune_checkpoint

JOB = r"""
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from threeregime.data import DataSpec
from threeregime.models import ModelSpec
from threeregime.pipeline import retrain_cell, train_dense
from threeregime.spec.data import DataIdentity
from threeregime.spec.identity import DenseRun
from threeregime.engine import Engine
from threeregime.spec.train import TrainSpec
kind, out = sys.argv[1], sys.argv[2]
data = DataSpec("digits", "", False, 1, False)
quiet = lambda *a: print(*a, file=sys.stderr)
TRAIN = {{
    "dense": TrainSpec(epochs=4, milestones=(2,)),
    "sam": TrainSpec(optimizer="sam", rho=0.05, epochs=4, milestones=(2,)),
    # a fixed-iteration schedule (the batch-size temperature): 4 epochs of 22 steps, the last one cut to 10
    "batch": TrainSpec(batch_size=64, iterations=76, milestones=(40,)),
}}
if kind in TRAIN:
    run = DenseRun(DataIdentity("digits", 1, False), ModelSpec(depth=8, width=0.5), TRAIN[kind], checkpoint_every=4)
    ckpt = run.checkpoints()[-1]
    train_dense(data, run, 1, ckpt, None, out + "/dense.pt", out + "/.partial/resume.pt", Engine(), log=quiet)
else:
    retrain_cell(sys.argv[3], out + "/retrained.pt", out + "/log.csv", data, TrainSpec(epochs=4, milestones=(2,)),
                 [1, 2], Engine(), out + "/.resume", {{"kind": "retrained"}}, {{"kind": "pruned"}}, log=quiet)
"""


def run_job(kind, out, *extra, kill_after=None, state=None):
    """Run a job; with kill_after (a fraction), SIGKILL it that far into its third epoch,
    timed by the resume state it writes at the end of every epoch."""
    cmd = [sys.executable, "-c", JOB.format(root=str(ROOT)), kind, str(out), *map(str, extra)]
    return run_or_kill(cmd, kill_after, state)


def outputs_equal(a, b, name):
    x = torch.load(a / name, weights_only=True)
    y = torch.load(b / name, weights_only=True)
    pairs = [(x, y)] if "state_dict" in x else [(x["copies"][s], y["copies"][s]) for s in x["copies"]]
    for p, q in pairs:
        for k in p["state_dict"]:
            assert torch.equal(p["state_dict"][k], q["state_dict"][k]), (name, k)
        assert p.get("history") == q.get("history"), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("ref")
    for kind in ("dense", "sam", "batch"):
        (ref / kind).mkdir()
        run_job(kind, ref / kind)
    prune_checkpoint(str(ref / "dense" / "dense.pt"), str(ref / "pruned.pt"), 0.1, "uniform", {"kind": "dense"},
                     {"kind": "pruned"}, log=lambda *a: None)
    run_job("retrain", ref, ref / "pruned.pt")
    return ref


KINDS = [("dense", "dense.pt", ".partial/resume.pt"), ("sam", "dense.pt", ".partial/resume.pt"),
         ("batch", "dense.pt", ".partial/resume.pt"), ("retrain", "retrained.pt", ".resume/group1-2.pt")]


@pytest.mark.parametrize("kill_seed", [0, 1])
@pytest.mark.parametrize("kind, name, state", KINDS, ids=[k[0] for k in KINDS])
def test_killed_jobs_resume_bitwise_equal(reference, tmp_path, kill_seed, kind, name, state):
    """Bitwise: the reference and the killed-and-resumed job run in this environment on this
    machine, each with one torch thread (the job script sets it) and the same kernels, so every
    float op repeats in the same order; a resume file keeps every float's bits. Not a claim
    across CPUs, code paths or thread counts."""
    rng = random.Random(kill_seed)
    ref = reference if kind == "retrain" else reference / kind
    extra = [reference / "pruned.pt"] if kind == "retrain" else []
    out = tmp_path / kind
    out.mkdir()
    # kill at a random point of epoch 3 (of 4)
    killed = run_job(kind, out, *extra, kill_after=rng.uniform(0.02, 0.9), state=out / state)
    assert killed, f"{kind} job finished before it could be killed"
    log = run_job(kind, out, *extra)
    assert "resumed from" in log, log[-2000:]
    outputs_equal(ref, out, name)
    if kind == "retrain":
        assert (ref / "log.csv").read_bytes() == (out / "log.csv").read_bytes()
    assert not (out / ".partial" / "resume.pt").exists() and not (out / ".resume").exists()
