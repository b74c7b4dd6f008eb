"""A job trains on its own run's data set, augmentation included, wherever the config says the
data set lives: two studies may augment one data set differently (the data key, which names
where it lives, is the same for both), and neither may get the other's augmentation."""

from dataclasses import replace

import torch

from threeregime.checkpoints import load_torch
from threeregime.engine import Engine
from threeregime.pipeline import prune_checkpoint, retrain_cell, train_dense
from threeregime.spec.data import DataSpec
from threeregime.spec.identity import DenseRun
from threeregime.spec.model import ModelSpec
from threeregime.spec.train import TrainSpec

QUIET = lambda *a: None  # noqa: E731
PADDED = DataSpec("digits", "", False, crop_padding=1, hflip=True)  # this run's augmentation
PLAIN = replace(PADDED, crop_padding=0, hflip=False)  # another study's, same data key
TRAIN = TrainSpec(epochs=1, milestones=(), batch_size=128)


def _dense(folder, located: DataSpec, run_data: DataSpec) -> dict:
    run = DenseRun(run_data.identity, ModelSpec(depth=8, width=0.25, in_channels=None, num_classes=None), TRAIN, 1)
    folder.mkdir()
    train_dense(located, run, 1, "epoch1", None, str(folder / "epoch1.pt"), str(folder / "resume.pt"), Engine(),
                log=QUIET)
    return load_torch(str(folder / "epoch1.pt"))


def test_dense_and_retraining_use_the_runs_own_augmentation(tmp_path):
    assert PADDED.identity.key() == PLAIN.identity.key()  # one data entry serves both studies
    own = _dense(tmp_path / "own", PADDED, PADDED)
    other_location = _dense(tmp_path / "other", PLAIN, PADDED)  # the config's first study augments less
    plain = _dense(tmp_path / "plain", PLAIN, PLAIN)
    for name, w in own["state_dict"].items():
        assert torch.equal(w, other_location["state_dict"][name]), name
    assert any(not torch.equal(w, plain["state_dict"][n]) for n, w in own["state_dict"].items())

    dense = {"kind": "dense", "run": own["meta"]["run"], "seed": 1, "ckpt": "epoch1"}
    prune_checkpoint(str(tmp_path / "own" / "epoch1.pt"), str(tmp_path / "pruned.pt"), 0.5, "uniform", dense,
                     {**dense, "kind": "pruned"}, log=QUIET)
    assert load_torch(str(tmp_path / "pruned.pt"))["data"] == PADDED.identity.as_dict()
    retrained = {}
    for name, located in (("own", PADDED), ("other", PLAIN)):
        retrain_cell(str(tmp_path / "pruned.pt"), str(tmp_path / f"{name}.pt"), str(tmp_path / f"{name}.csv"),
                     located, TRAIN, [1], Engine(), str(tmp_path / f".resume-{name}"), {"kind": "retrained"},
                     {**dense, "kind": "pruned"}, log=QUIET)
        retrained[name] = load_torch(str(tmp_path / f"{name}.pt"))["copies"][1]["state_dict"]
    for name, w in retrained["own"].items():
        assert torch.equal(w, retrained["other"][name]), name
