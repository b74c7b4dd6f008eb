import os

import pytest
import torch

from threeregime.checkpoints import CheckpointError, load_torch, save_torch


def test_atomic_save_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a" / "x.pt"
    save_torch({"meta": {"kind": "dense"}, "w": torch.ones(3)}, str(path))
    assert os.listdir(path.parent) == ["x.pt"]
    assert torch.equal(load_torch(str(path))["w"], torch.ones(3))


def test_truncated_checkpoint_names_file_and_fix(tmp_path):
    path = tmp_path / "x.pt"
    save_torch({"w": torch.randn(1000)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"x\.pt is truncated or corrupt.*Delete it and rerun"):
        load_torch(str(path))


def test_checkpoint_from_other_hyperparameters_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    save_torch({"meta": {"kind": "dense", "epoch": 20}}, str(path))
    assert load_torch(str(path), expect={"kind": "dense", "epoch": 20})
    with pytest.raises(CheckpointError, match="epoch: file has 20, path says 30"):
        load_torch(str(path), expect={"kind": "dense", "epoch": 30})


def test_failed_write_keeps_the_old_target(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    save_torch({"v": 1}, str(path))

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match=r"could not write .*x\.pt: No space left"):
        save_torch({"v": 2}, str(path))
    assert load_torch(str(path))["v"] == 1
    assert os.listdir(tmp_path) == ["x.pt"]
