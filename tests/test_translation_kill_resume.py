"""Kill -9 real translation jobs (threeregime.seq2seq.pipeline) mid-epoch, rerun them, and
compare with uninterrupted runs: a dense segment from initialisation, a dense segment
continuing a checkpoint, and a cell's retraining killed in its second copy (the first one
finished and kept, the second one resumed mid-training).
The same protocol as tests/test_kill_resume.py (image jobs), on a tiny Transformer and the toy
corpus."""

import random
import sys

import pytest
import torch

from conftest import ROOT
from killing import run_or_kill
from threeregime.engine import Engine
from threeregime.pipeline import prune_checkpoint
from threeregime.seq2seq.pipeline import retrain_cell, train_dense, train_vocabulary_job
from threeregime.spec.corpus import CorpusSpec
from threeregime.spec.identity import DenseRun
from threeregime.spec.model import ModelSpec
from threeregime.spec.train import TrainSpec

CORPUS = CorpusSpec("toy", toy_train=500, toy_valid=16, vocab_size=90, max_len=24)
HP = TrainSpec(optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=32, epochs=6, milestones=(),
               schedule="inverse_sqrt", warmup=10, label_smoothing=0.1)
RUN = DenseRun(CORPUS.identity, ModelSpec("transformer", 1, 1 / 16, None, None), HP, checkpoint_every=3)


def job(kind: str, out: str, vocab: str, extra: list[str], log) -> None:
    """One job: a dense segment of 3 epochs ("epoch3" from initialisation, "epoch6" from the
    epoch3.pt in extra), or the retraining of two copies of the pruned checkpoint in extra."""
    if kind in ("epoch3", "epoch6"):
        train_dense(CORPUS, vocab, RUN, 1, kind, extra[0] if extra else None, f"{out}/{kind}.pt",
                    f"{out}/.partial/resume.pt", Engine(), log=log)
    else:
        retrain_cell(extra[0], f"{out}/retrained.pt", f"{out}/log.csv", CORPUS, vocab,
                     TrainSpec(**{**HP.as_dict(), "epochs": 3}), [1, 2], Engine(), f"{out}/.resume",
                     {"kind": "retrained"}, {"kind": "pruned"}, log=log)


# The killed jobs run this module's `job` in a fresh process with one torch thread.
JOB = r"""
import sys, torch
sys.path[:0] = [{root!r}, {tests!r}]
torch.set_num_threads(1)
from test_translation_kill_resume import job
job(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:], lambda *a: print(*a, file=sys.stderr))
"""


def run_job(kind, out, vocab, *extra, kill_after=None, state=None):
    """Run a job; with kill_after (a fraction), SIGKILL it that far into the third epoch watched
    by `state`, timed by the resume state written at the end of every epoch."""
    script = JOB.format(root=str(ROOT), tests=str(ROOT / "tests"))
    cmd = [sys.executable, "-c", script, kind, str(out), str(vocab), *map(str, extra)]
    return run_or_kill(cmd, kill_after, state)


def outputs_equal(a, b, name):
    x = torch.load(a / name, weights_only=True)
    y = torch.load(b / name, weights_only=True)
    pairs = [(x, y)] if "state_dict" in x else [(x["copies"][s], y["copies"][s]) for s in x["copies"]]
    for p, q in pairs:
        assert p["state_dict"].keys() == q["state_dict"].keys()
        for k in p["state_dict"]:
            assert torch.equal(p["state_dict"][k], q["state_dict"][k]), (name, k)
        # histories hold NaN BLEU before the last epoch: compare their text
        assert repr(p["history"]) == repr(q["history"]), name
    if "train_state" in x:  # what the next segment continues from
        assert repr(x["train_state"]["history"]) == repr(y["train_state"]["history"])
        assert torch.equal(x["train_state"]["generator"], y["train_state"]["generator"])
        assert torch.equal(x["train_state"]["rng"]["cpu"], y["train_state"]["rng"]["cpu"])
        assert x["train_state"]["step"] == y["train_state"]["step"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The vocabulary, and the uninterrupted jobs: the dense run's two segments and the retraining
    of its epoch-3 checkpoint pruned to 30 % of the linear weights. In this process (a process
    start is most of a job's time here), with one torch thread as the killed jobs have."""
    ref = tmp_path_factory.mktemp("ref")
    vocab = str(ref / "sentencepiece.model")
    quiet = lambda *a: None  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_vocabulary_job(CORPUS, vocab, log=quiet)
        job("epoch3", str(ref), vocab, [], quiet)
        job("epoch6", str(ref), vocab, [str(ref / "epoch3.pt")], quiet)
        prune_checkpoint(str(ref / "epoch3.pt"), str(ref / "pruned.pt"), 0.3, "uniform", {"kind": "dense"},
                         {"kind": "pruned"}, log=quiet, layers=("linear",))
        job("retrain", str(ref), vocab, [str(ref / "pruned.pt")], quiet)
    finally:
        torch.set_num_threads(threads)
    return ref


# (job, the test's name, its output, the resume state whose writes time the kill)
KINDS = [("epoch3", "dense", "epoch3.pt", ".partial/resume.pt"),
         ("epoch6", "dense-continued", "epoch6.pt", ".partial/resume.pt"),
         ("retrain", "retrain-second-copy", "retrained.pt", ".resume/training2.pt")]


@pytest.mark.parametrize("job, test, name, state", KINDS, ids=[k[1] for k in KINDS])
def test_killed_translation_jobs_resume_bitwise_equal(reference, tmp_path, job, test, name, state):
    """Bitwise on this machine with one torch thread, as tests/test_kill_resume.py says: the
    reference and the killed-and-resumed job repeat every float op in the same order, and the
    resume file keeps every float's bits (model, Adam's moments, the step, the data-order
    generator, torch's RNG that drives dropout, the history)."""
    rng = random.Random(test)
    extra = {"epoch6": [reference / "epoch3.pt"], "retrain": [reference / "pruned.pt"]}.get(job, [])
    vocab = reference / "sentencepiece.model"
    # kill at a random point of the watched copy's epoch 3 (its last: BLEU is decoded after the resume)
    killed = run_job(job, tmp_path, vocab, *extra, kill_after=rng.uniform(0.02, 0.9), state=tmp_path / state)
    assert killed, f"{test} job finished before it could be killed"
    assert not (tmp_path / name).exists()
    if test == "retrain-second-copy":  # the first copy was finished and kept; the rerun does not redo it
        assert (tmp_path / ".resume" / "seed1.pt").exists() and not (tmp_path / ".resume" / "seed2.pt").exists()
    log = run_job(job, tmp_path, vocab, *extra)
    resumed_at = 5 if job == "epoch6" else 2  # the state counts the run's epochs, not the segment's
    assert f"resumed from {tmp_path / state} at epoch {resumed_at}" in log, log[-2000:]
    if test == "retrain-second-copy":
        assert "seed 1 epoch" not in log, "the finished first copy was retrained again"
    outputs_equal(reference, tmp_path, name)
    if job == "retrain":
        assert (reference / "log.csv").read_bytes() == (tmp_path / "log.csv").read_bytes()
    assert not (tmp_path / ".partial" / "resume.pt").exists() and not (tmp_path / ".resume").exists()
