"""The settle option (threeregime/settle.py): which seeds each round adds, to which cells, and why."""

import math

import pytest
import yaml

from conftest import ROOT
from threeregime.settle import advance, batches, cost, round_cells
from threeregime.spec.common import ConfigError
from threeregime.study import Index, resolve_study

STUDY = {
    "temperature": {"axis": "epochs", "values": [10, 20]},
    "load": {"axis": "density", "values": [0.1, 0.5]},
    "seeds": {"dense": [1], "retrain": [1, 2, 3]},
    "train": {"epochs": 20, "milestones": [10, 15], "checkpoint_every": 10},
    "settle": {"rounds": 3, "max_copies": 9},
}


def study(**settle):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["studies"] = {"s": {**STUDY, "settle": settle or STUDY["settle"]}}
    return resolve_study(cfg, "s")


def test_batches_are_the_next_unused_seeds_within_the_budget():
    assert batches({"rounds": 3, "max_copies": 9}, (1, 2, 3), "x") == ((4, 5, 6), (7, 8, 9))  # budget: 2 rounds
    assert batches({}, (1, 2, 3), "x") == ((4, 5, 6), (7, 8, 9))                              # default: 2 rounds
    assert batches({"rounds": 1}, (2, 5), "x") == ((6, 7),)
    with pytest.raises(ConfigError, match=r"studies.s.settle.max_copies = 5 leaves no room .* at least 6"):
        batches({"max_copies": 5}, (1, 2, 3), "studies.s")


def test_a_batch_is_its_own_retraining_of_the_same_pruned_cell():
    s = study()
    cell = s.cell(10, 0.1, 1)
    extra = s.batch_cell(cell, 1)
    assert extra.retrain.seeds == (4, 5, 6) and extra.retrain.train == cell.retrain.train
    assert extra.cell_dir == cell.cell_dir and extra.retrain_dir != cell.retrain_dir
    # keyed like any study whose retrain seeds are 4-6: the same path
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["studies"] = {"t": {**STUDY, "seeds": {"dense": [1], "retrain": [4, 5, 6]}}}
    del cfg["studies"]["t"]["settle"]
    assert resolve_study(cfg, "t").cell(10, 0.1, 1).retrain_dir == extra.retrain_dir
    ix = Index.of({"s": s})
    assert extra.retrain.key in ix.retrains and s.batch_cell(cell, 2).retrain.key in ix.retrains
    # a study without the option indexes no batch
    assert len(Index.of({"t": resolve_study(cfg, "t")}).retrains) == 1


def _row(t, l, regime, settled, candidates, n_copies=3, n_pairs=3):
    return {"temperature": t, "load": l, "regime": regime, "settled": settled, "candidates": candidates,
            "n_copies": n_copies, "n_pairs": n_pairs, "lmc": -0.05, "lmc_lo": -0.07, "lmc_hi": -0.03,
            "cka": 0.5, "cka_lo": 0.4, "cka_hi": 0.6}


def test_rounds_add_batches_only_to_unsettled_cells_until_settled_or_spent():
    s = study()
    first = advance(s, None, [_row(10, 0.1, "I", True, "I"), _row(10, 0.5, "II-A", False, "I/II-A"),
                              _row(20, 0.1, "missing", None, "missing"), _row(20, 0.5, "II-B", False, "II-A/II-B")])
    assert first["round"] == 0 and not first["done"]
    assert [(n["temperature"], n["load"], n["seeds"]) for n in first["next"]] == [(10, 0.5, [4, 5, 6]),
                                                                                   (20, 0.5, [4, 5, 6])]
    reasons = {(c["temperature"], c["load"]): c["reason"] for c in first["cells"]}
    assert reasons[(10, 0.1)] == "settled with 3 copies per dense seed (3 pairs)"
    assert reasons[(10, 0.5)] == "unsettled (I/II-A) with 3 copies: round 1 adds seeds 4-6"
    assert reasons[(20, 0.1)].startswith("missing")
    # round 1 reads every cell's own copies and the two asked-for batches
    files = round_cells(s, first)
    assert len(files) == 4 + 2
    assert [(t, l, c.retrain.seeds) for t, l, c in files if c.retrain.seeds != (1, 2, 3)] == [
        (10, 0.5, (4, 5, 6)), (20, 0.5, (4, 5, 6))]
    second = advance(s, first, [_row(10, 0.1, "I", True, "I"), _row(10, 0.5, "II-A", True, "II-A", 6, 6),
                                _row(20, 0.1, "missing", None, "missing"),
                                _row(20, 0.5, "II-B", False, "II-A/II-B", 6, 6)])
    assert [(n["load"], n["batch"], n["seeds"]) for n in second["next"]] == [(0.5, 2, [7, 8, 9])]
    third = advance(s, second, [_row(10, 0.1, "I", True, "I"), _row(10, 0.5, "II-A", True, "II-A", 6, 6),
                                _row(20, 0.1, "missing", None, "missing"),
                                _row(20, 0.5, "II-B", False, "II-A/II-B", 9, 9)])
    assert third["done"] and third["round"] == 2
    last = {(c["temperature"], c["load"]): c for c in third["cells"]}
    assert last[(20, 0.5)]["extra"] == 2 and "budget (settle.max_copies, rounds) is spent" in last[(20, 0.5)]["reason"]
    assert last[(10, 0.5)]["extra"] == 1 and last[(10, 0.5)]["reason"].startswith("settled with 6 copies")
    # 3 batches of 3 copies against 2 batches for each of the 4 cells
    assert cost(third, s) == {"extra_copies": 9, "extra_copies_everywhere": 24, "unsettled": 1, "cells": 4}
    assert math.isclose(last[(10, 0.5)]["lmc_lo"], -0.07)


def test_progress_lines_say_the_pairs_of_each_cell_and_why(tmp_path):
    import json

    from threeregime.settle import progress_lines

    s = study()
    assert progress_lines(s, tmp_path) == ["  settle: no round yet (2 rounds of 3 more copies at most)"]
    first = advance(s, None, [_row(10, 0.1, "I", True, "I"), _row(10, 0.5, "II-A", False, "I/II-A"),
                              _row(20, 0.1, "II-B", True, "II-B"), _row(20, 0.5, "II-B", True, "II-B")])
    folder = tmp_path / s.dir / "settle"
    folder.mkdir(parents=True)
    (folder / "round0.json").write_text(json.dumps(first))
    assert progress_lines(s, tmp_path) == [
        "  settle: round 0 of 2, 1 cells get more copies next; 1 of 4 cells unsettled; extra copies 0 (every cell: 24)",
        "    (10, 0.5): 3 pairs, unsettled (I/II-A) with 3 copies: round 1 adds seeds 4-6"]
