"""The settle option through the real Snakefile: the second round plans only the extra copies of
the unsettled cells and reuses every existing file (README "More seeds only where they decide")."""

import json

import pandas as pd
import pytest

from test_workflow import ENGINE, TINY_STUDY, job_counts, smk, write_config
from threeregime.results_schema import SETTLED, problems
from threeregime.uncertainty import interval

pytestmark = pytest.mark.slow  # runs a grid through the real Snakefile

STUDY = {**TINY_STUDY, "temperature": {"axis": "epochs", "values": [2]},
         "load": {"axis": "density", "values": [0.1, 0.3, 0.5]}}


def config(folder, **study):
    return write_config(folder, {"default_studies": ["tiny"], "studies": {"tiny": {**STUDY, **study}},
                                 "engine": ENGINE})


def test_the_second_round_adds_copies_only_to_unsettled_cells(tmp_path):
    smk("-d", str(tmp_path), "results/studies/tiny/cells.parquet", "--configfile", config(tmp_path), "--cores", "2")
    cells = pd.read_parquet(tmp_path / "results/studies/tiny/cells.parquet")
    # Regimes name no path: choose thresholds on the measured values so that one cell is unsettled and
    # the others settled (every cell connected, ε = -10; the CKA threshold at one cell's mean CKA,
    # outside the others' 50 % intervals).
    table = pd.read_parquet(tmp_path / "results/studies/tiny/table.parquet")
    pairs = table[table.kind == "pair"]

    def at_half(load):  # the 50 % interval of a cell's mean CKA
        p = pairs[pairs.load == load]
        return interval({1: {tuple(map(int, s.split("-"))): v for s, v in zip(p.pair, p.cka)}}, 0.5)

    ivs = {load: at_half(load) for load in cells.load}
    choice = None
    for a, iv in ivs.items():
        thr = iv.mean
        if iv.hi > thr and all(not (o.lo <= thr <= o.hi) for b, o in ivs.items() if b != a):
            choice = (a, thr)
            break
    assert choice, f"no cell's mean CKA lies outside every other cell's 50 % interval: {ivs}"
    unsettled_load, threshold = choice
    settle_cfg = config(tmp_path, regimes={"lmc_epsilon": -10.0, "cka_threshold": float(threshold), "confidence": 0.5},
                        settle={"rounds": 1})
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()}

    smk("-d", str(tmp_path), "results/studies/tiny/settle/round0.json", "--configfile", settle_cfg, "--cores", "1")
    round0 = json.loads((tmp_path / "results/studies/tiny/settle/round0.json").read_text())
    assert [(n["load"], n["seeds"]) for n in round0["next"]] == [(unsettled_load, [4, 5, 6])]
    dry = smk("-d", str(tmp_path), "-n", "results/studies/tiny/settled.pdf", "--configfile", settle_cfg).stdout
    assert job_counts(dry) == {"retrain_cell": 1, "landscape_metrics": 1, "settle_round": 1, "settled_table": 1,
                               "settled_diagram": 1}

    smk("-d", str(tmp_path), "results/studies/tiny/settled.pdf", "--configfile", settle_cfg, "--cores", "2")
    for p, t in before.items():  # every existing file reused, none rewritten
        assert p.stat().st_mtime_ns == t, p
    settled = pd.read_parquet(tmp_path / "results/studies/tiny/settled.parquet")
    assert problems(settled, SETTLED) == []
    s = settled.set_index("load")
    assert s.loc[unsettled_load, "n_copies"] == 6 and s.loc[unsettled_load, "n_pairs"] == 6
    assert s.loc[unsettled_load, "settle_rounds"] == 1
    others = s.drop(index=unsettled_load)
    assert (others.n_copies == 3).all() and (others.settle_rounds == 0).all()
    assert others.settle_reason.str.startswith("settled with 3 copies").all()
    extra = s.loc[unsettled_load, "settle_reason"]
    assert extra.startswith("settled with 6 copies") or "budget (settle.max_copies, rounds) is spent" in extra
    assert (tmp_path / "results/studies/tiny/settled.png").read_bytes()[:4] == b"\x89PNG"
