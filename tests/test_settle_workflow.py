"""The settle option through the real Snakefile: the second round plans only the extra copies of
the unsettled cells and reuses every existing file (README "More seeds only where they decide")."""

import json
import shutil

import pandas as pd
import pytest

from test_workflow import ENGINE, TINY_STUDY, job_counts, smk, write_config
from threeregime.results_schema import SETTLED, problems
from threeregime.uncertainty import interval

pytestmark = pytest.mark.slow  # runs a grid through the real Snakefile



def test_the_second_round_adds_copies_only_to_unsettled_cells(tiny_grid, tmp_path):
    # the shared tiny grid (2 epochs x 2 densities, 3 copies per cell), copied with its times
    shutil.copytree(tiny_grid[0], tmp_path, symlinks=True, dirs_exist_ok=True)
    cells = pd.read_parquet(tmp_path / "results/studies/tiny/cells.parquet")
    # Regimes name no path: choose thresholds on the measured values so that one cell is unsettled and
    # the others settled (every cell connected, ε = -1, the lowest the schema allows: LMC lies in [-1, 1]; the CKA threshold at one cell's mean CKA,
    # outside the others' 50 % intervals).
    table = pd.read_parquet(tmp_path / "results/studies/tiny/table.parquet")
    pairs = table[table.kind == "pair"]

    def at_half(t, load):  # the 50 % interval of a cell's mean CKA
        p = pairs[(pairs.temperature == t) & (pairs.load == load)]
        return interval({1: {tuple(map(int, s.split("-"))): v for s, v in zip(p.pair, p.cka)}}, 0.5)

    ivs = {(t, load): at_half(t, load) for t, load in zip(cells.temperature, cells.load)}
    choice = None
    for a, iv in ivs.items():
        thr = iv.mean
        if iv.hi > thr and all(not (o.lo <= thr <= o.hi) for b, o in ivs.items() if b != a):
            choice = (a, thr)
            break
    assert choice, f"no cell's mean CKA lies outside every other cell's 50 % interval: {ivs}"
    unsettled, threshold = choice
    (tmp_path / "settle").mkdir()
    settle_cfg = write_config(tmp_path / "settle", {
        "default_studies": ["tiny"], "engine": ENGINE,
        "studies": {"tiny": {**TINY_STUDY, "settle": {"rounds": 1},
                             "regimes": {"lmc_epsilon": -1.0, "cka_threshold": float(threshold), "confidence": 0.5}}}})
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "cells").rglob("*") if p.is_file()}
    before.update({p: p.stat().st_mtime_ns for p in (tmp_path / "results" / "dense").rglob("*") if p.is_file()})

    smk("-d", str(tmp_path), "results/studies/tiny/settle/round0.json", "--configfile", settle_cfg, "--cores", "1")
    round0 = json.loads((tmp_path / "results/studies/tiny/settle/round0.json").read_text())
    assert [((n["temperature"], n["load"]), n["seeds"]) for n in round0["next"]] == [(unsettled, [4, 5, 6])]
    dry = smk("-d", str(tmp_path), "-n", "results/studies/tiny/settled.pdf", "--configfile", settle_cfg).stdout
    assert job_counts(dry) == {"retrain_cell": 1, "landscape_metrics": 1, "settle_round": 1, "settled_table": 1,
                               "settled_diagram": 1}

    smk("-d", str(tmp_path), "results/studies/tiny/settled.pdf", "--configfile", settle_cfg, "--cores", "2")
    for p, t in before.items():  # every existing file reused, none rewritten
        assert p.stat().st_mtime_ns == t, p
    settled = pd.read_parquet(tmp_path / "results/studies/tiny/settled.parquet")
    assert problems(settled, SETTLED) == []
    csv = pd.read_csv(tmp_path / "results/studies/tiny/settled.csv")
    assert list(csv.columns) == list(settled.columns) and list(csv.n_pairs) == list(settled.n_pairs)
    s = settled.set_index(["temperature", "load"])
    assert s.loc[unsettled, "n_copies"] == 6 and s.loc[unsettled, "n_pairs"] == 6
    assert s.loc[unsettled, "settle_rounds"] == 1
    others = s.drop(index=[unsettled])
    assert (others.n_copies == 3).all() and (others.settle_rounds == 0).all()
    assert others.settle_reason.str.startswith("settled with 3 copies").all()
    extra = s.loc[unsettled, "settle_reason"]
    assert extra.startswith("settled with 6 copies") or "budget (settle.max_copies, rounds) is spent" in extra
    assert (tmp_path / "results/studies/tiny/settled.png").read_bytes()[:4] == b"\x89PNG"
