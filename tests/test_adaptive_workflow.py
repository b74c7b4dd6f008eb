"""The adaptive search through the real Snakefile: checkpoint rounds, cached cells shared with
the full grid (README "Adaptive search")."""

import json

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from test_workflow import ENGINE, job_counts, smk, write_config

pytestmark = pytest.mark.slow  # runs grids through the real Snakefile

# 1 temperature x 4 densities (one dense job); thresholds no cell can cross (LMC >= -1 = ε,
# CKA >= 0.001), so every cell is II-B and the search computes the ends of the load axis and its
# middle: 3 of 4 cells, in one round.
TINY = {
    "temperature": {"axis": "epochs", "values": [2]},
    "load": {"axis": "density", "values": [0.1, 0.2, 0.3, 0.5]},
    "data": {"name": "digits", "root": "", "crop_padding": 1, "hflip": False},
    "model": {"depth": 8, "width": 0.5},
    "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 2},
    "retrain": {"epochs": 2, "milestones": [1]},
    "seeds": {"dense": [1], "retrain": [1, 2]},
    "landscape": {"points": 3, "bn_samples": 300, "error_samples": 300, "cka_samples": 300},
    "regimes": {"lmc_epsilon": -1.0, "cka_threshold": 0.001},
    "adaptive": {"per_round": 2},
}
TARGET = "results/studies/tiny/adaptive.pdf"


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adaptive")
    cfg = write_config(folder, {"default_studies": ["tiny"], "studies": {"tiny": TINY}, "engine": ENGINE})
    smk("-d", str(folder), TARGET, "--configfile", cfg, "--cores", "2")
    return folder, cfg


def test_adaptive_search_end_to_end(adaptive_run):
    from threeregime.study import resolve_study

    folder, cfg = adaptive_run
    root = folder / "results" / "studies" / "tiny"
    table = pd.read_parquet(root / "adaptive.parquet")
    assert len(table) == 4 and (pd.read_csv(root / "adaptive.csv").computed == table.computed).all()
    done = table[table.computed]
    assert sorted(zip(done.temperature, done.load)) == [(2, 0.1), (2, 0.3), (2, 0.5)]
    assert set(table.regime) == {"II-B"} and (done["round"] == 0).all()
    assert done.reason.str.startswith("start: ").all() and done[["lmc", "cka", "test_error"]].notna().all().all()
    assert table[~table.computed].reason.str.startswith("inferred from the ").all()
    rounds = sorted(p.name for p in (root / "adaptive").glob("round*.json"))
    assert rounds == ["round0.json", "round1.json"]
    assert json.loads((root / "adaptive" / "round1.json").read_text())["done"]
    assert (root / "adaptive.pdf").stat().st_size > 10_000 and (root / "adaptive.png").read_bytes()[:4] == b"\x89PNG"
    # the computed cells are the full grid's own files, at the paths the full grid uses
    study = resolve_study({**yaml.safe_load((ROOT / "config.yaml").read_text()), "studies": {"tiny": TINY}}, "tiny")
    for row in table.itertuples():
        cell = study.cell(row.temperature, row.load, 1)
        assert (folder / cell.landscape_path).exists() == row.computed
        assert (folder / cell.cell_dir / "pruned.pt").exists() == row.computed


def test_full_grid_after_the_search_computes_only_the_skipped_cells(adaptive_run):
    folder, cfg = adaptive_run
    counts = job_counts(smk("-n", "-d", str(folder), "results/studies/tiny/phase.pdf", "--configfile", cfg).stdout)
    assert {k: counts.get(k, 0) for k in ("train_dense", "prune", "retrain_cell", "landscape_metrics")} == {
        "train_dense": 0, "prune": 1, "retrain_cell": 1, "landscape_metrics": 1}
    assert "Nothing to be done" in smk("-n", "-d", str(folder), TARGET, "--configfile", cfg).stdout


def test_bad_adaptive_setting_is_refused_naming_the_key():
    # what rules/common.smk checks before any job runs
    from threeregime.configfiles import schema_problems

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["studies"]["epochs_density"]["adaptive"] = {"per_round": 0}
    assert schema_problems(config, str(ROOT / "schemas" / "config.schema.yaml")) == [
        "studies.epochs_density.adaptive.per_round: 0 is less than the minimum of 1"]
    config["studies"]["epochs_density"]["adaptive"] = {"per_round": 3}
    assert schema_problems(config, str(ROOT / "schemas" / "config.schema.yaml")) == []
