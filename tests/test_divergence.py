import json
import math

import pytest
import torch

from threeregime.checkpoints import load_torch
from threeregime.spec.data import DataSpec
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.spec.landscape import LandscapeSpec
from threeregime.pipeline import measure_cell, prune_checkpoint, retrain_cell
from threeregime.checkpoints import save_torch
from threeregime.regimes import Regimes
from threeregime.tables import build_tables
from threeregime.training import DivergedError
from threeregime.engine import Engine
from threeregime.spec.train import TrainSpec

DIGITS = DataSpec("digits", "", False, 1, False)
QUIET = lambda *a: None  # noqa: E731


@pytest.fixture
def pruned(tmp_path):
    spec = ModelSpec(depth=8, width=0.25, in_channels=1)
    torch.manual_seed(0)
    from dataclasses import asdict
    save_torch({"meta": {"kind": "dense"}, "spec": asdict(spec), "state_dict": PreResNet(spec).copy_state(0)},
               str(tmp_path / "dense.pt"))
    prune_checkpoint(str(tmp_path / "dense.pt"), str(tmp_path / "pruned.pt"), 0.5, "uniform", {"kind": "dense"},
                     {"kind": "pruned"}, log=QUIET)
    return tmp_path


def _retrain(folder, on_divergence):
    retrain_cell(str(folder / "pruned.pt"), str(folder / "retrained.pt"), str(folder / "log.csv"), DIGITS,
                 TrainSpec(epochs=3, lr=1e4, milestones=()), [1, 2], Engine(), str(folder / ".resume"),
                 {"kind": "retrained"}, {"kind": "pruned"}, log=QUIET, on_divergence=on_divergence)


def test_divergence_fails_naming_epoch_and_last_finite_loss(pruned):
    with pytest.raises(DivergedError, match=r"in epoch \d+ \(last finite loss: .*\).*on_divergence: record"):
        _retrain(pruned, "fail")
    assert not (pruned / "retrained.pt").exists()


def test_divergence_recorded_makes_the_cell_missing(pruned):
    _retrain(pruned, "record")
    assert load_torch(str(pruned / "retrained.pt"))["copies"][1]["diverged"]
    res = measure_cell(str(pruned / "retrained.pt"), str(pruned / "land.json"), DIGITS,
                       Engine(), LandscapeSpec(points=3, cka_samples=100), {"kind": "landscape"},
                       {"kind": "retrained"}, log=QUIET)
    assert res["diverged"] and math.isnan(json.loads((pruned / "land.json").read_text())["pairs"][0]["lmc"])
    cell = {"study": "s", "temperature_axis": "epochs", "temperature": 10.0, "load_axis": "density", "load": 0.5,
            "dense_seed": 1, "density": 0.5, "run": "r", "ckpt": "epoch10", "prune": "uniform_d0.5", "retrain": "t",
            "log": str(pruned / "log.csv"), "landscape": str(pruned / "land.json")}
    table, summary = build_tables([cell], str(pruned / "t.parquet"), str(pruned / "c.parquet"), Regimes())
    assert table[table.kind == "copy"].diverged.all()
    assert summary.regime.tolist() == ["missing"] and math.isnan(summary.test_error[0])
