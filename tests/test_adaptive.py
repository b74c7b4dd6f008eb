"""The adaptive search's logic on synthetic phase diagrams (threeregime.adaptive)."""

import itertools
import math

import numpy as np
import pytest

from threeregime.adaptive import (DEFAULT_PER_ROUND, advance, cell_table, line_patterns, plan,
                                  search)
from threeregime.regimes import Regimes


def allowed(seq) -> bool:
    """The monotone model, written independently of line_patterns: the Regime-I cells are one
    block touching an end of the line, and the II-A cells one block touching an end of what
    is left."""
    def block_at_an_end(flags):
        idx = [i for i, f in enumerate(flags) if f]
        return not idx or (idx == list(range(idx[0], idx[-1] + 1)) and (idx[0] == 0 or idx[-1] == len(flags) - 1))
    rest = [s for s in seq if s != "I"]
    return block_at_an_end([s == "I" for s in seq]) and block_at_an_end([s == "II-A" for s in rest])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_line_patterns_are_exactly_the_monotone_labellings(n):
    names = ("I", "II-A", "II-B")
    expected = {seq for seq in itertools.product(names, repeat=n) if allowed(seq)}
    got = {tuple(names[c] for c in row) for row in line_patterns(n)}
    assert got == expected
    assert ("II-A", "I", "II-B") not in got and ("I", "II-B", "I") not in got


def paper_like(rows=8, cols=6, shift=0.0):
    """Regime I cold and sparse (bottom left), II-A hot and sparse, II-B dense: two staircases."""
    g = np.empty((rows, cols), dtype=object)
    for r in range(rows):
        for c in range(cols):
            t, d = r / (rows - 1), c / (cols - 1)
            lmc = -(t - 0.35 - 0.9 * d - shift)
            g[r, c] = "I" if lmc < 0 else ("II-B" if t + 1.2 * d >= 0.9 else "II-A")
    return g


@pytest.mark.parametrize("shape, per_round, n_computed", [((8, 6), 2, 22), ((16, 9), 2, 37), ((8, 6), 1, 23)])
def test_monotone_boundaries_are_found_exactly(shape, per_round, n_computed):
    truth = paper_like(*shape)
    assert {"I", "II-A", "II-B"} == set(truth.ravel())
    run = search(truth, per_round)
    assert run.agreement(truth) == 1.0
    assert len(run.computed) == n_computed
    # every boundary is pinned: each pair of neighbouring cells of different regimes has at
    # least one computed cell, and the rest follows from the rules recorded per cell
    assert set(run.plan.inferred_from) | set(run.computed) == set(np.ndindex(*shape))
    assert not run.plan.contradicted and not run.plan.outliers
    # the same diagram mirrored along both axes: the model assumes no direction
    flipped = truth[::-1, ::-1]
    assert search(flipped, per_round).agreement(flipped) == 1.0


def test_starts_from_the_corners_and_the_middle():
    p = plan((8, 6), {})
    assert [c for c, _ in p.next] == [(0, 0), (0, 5), (7, 0), (7, 5), (4, 3)]
    assert not p.done and len(p.undetermined) == 48


@pytest.mark.parametrize("name", ["I", "II-A", "II-B"])
def test_an_all_one_regime_grid_costs_its_corners_and_middle(name):
    truth = np.full((8, 6), name, dtype=object)
    run = search(truth)
    assert sorted(run.computed) == [(0, 0), (0, 5), (4, 3), (7, 0), (7, 5)]
    assert run.rounds == 1 and run.agreement(truth) == 1.0


def test_an_all_one_regime_column():
    truth = np.full((8, 1), "II-A", dtype=object)
    run = search(truth)
    assert sorted(run.computed) == [(0, 0), (4, 0), (7, 0)] and run.agreement(truth) == 1.0


def test_a_noisy_cell_sends_the_search_to_its_neighbours():
    clean = paper_like(8, 6)
    noisy = clean.copy()
    assert clean[4, 3] == "II-B"
    noisy[4, 3] = "I"  # the middle cell, computed in the first round, is wrong
    run = search(noisy)
    checks = {c for c, (_, why) in run.computed.items() if "breaks the monotone order" in why}
    assert {(3, 3), (5, 3), (4, 2), (4, 4)} <= set(run.computed) and checks
    assert run.plan.outliers == {(4, 3)}
    # the outlier keeps its measured regime; every other cell is labelled as the clean grid
    assert run.plan.labels[(4, 3)] == "I"
    assert all(run.plan.labels[c] == clean[c] for c in np.ndindex(8, 6) if c != (4, 3))
    assert run.agreement(noisy) == 1.0


def test_an_isolated_cell_in_a_column_is_checked_and_kept_as_measured():
    truth = np.array([["I"], ["I"], ["II-B"], ["I"], ["I"]], dtype=object)
    run = search(truth)
    assert sorted(run.computed) == [(i, 0) for i in range(5)]
    assert "breaks the monotone order of column 0" in run.computed[(1, 0)][1]
    assert run.plan.outliers == {(2, 0)} and run.agreement(truth) == 1.0


def test_a_contradicted_column_is_computed_rather_than_guessed():
    # two regimes interleaved: the column fits no monotone labelling, so nothing is inferred
    truth = np.array([["I"], ["II-B"], ["II-B"], ["II-B"], ["I"], ["I"], ["I"]], dtype=object)
    run = search(truth)
    assert len(run.computed) == 7 and run.agreement(truth) == 1.0


def test_missing_cells_constrain_nothing():
    truth = paper_like(8, 6)
    with_nan = truth.copy()
    with_nan[4, 3] = "missing"  # a diverged cell where the search starts
    run = search(with_nan)
    assert run.plan.labels[(4, 3)] == "missing"
    assert all(run.plan.labels[c] == truth[c] for c in np.ndindex(8, 6) if c != (4, 3))


def test_ties_at_epsilon_and_threshold_follow_the_full_grids_rule():
    assert Regimes(-0.05, 0.9).classify(-0.05, 0.9) == "II-B"      # LMC = ε is connected; CKA = threshold is II-B
    assert Regimes(-0.05, 0.9).classify(-0.0500001, 0.9) == "I"
    assert Regimes(-0.05, 0.9).classify(float("nan"), 0.9) == "missing"


def values_of(truth):
    """Metrics that give each cell its regime under ε = -0.05, threshold 0.9 (ties included)."""
    metrics = {"I": (-0.3, 0.5), "II-A": (-0.05, 0.6), "II-B": (0.0, 0.9), "missing": (math.nan, math.nan)}
    return {k: dict(zip(("lmc", "cka"), metrics[v])) for k, v in truth.items()}


def test_advance_round_by_round_matches_the_search_and_explains_every_cell():
    truth = paper_like(8, 6)
    temps = [5, 10, 15, 20, 25, 30, 35, 40]
    loads = [0.02, 0.03, 0.04, 0.05, 0.1, 0.2]
    metrics = values_of({(float(temps[r]), loads[c]): truth[r, c] for r, c in np.ndindex(8, 6)})
    state, measured = None, {}
    for _ in range(100):
        state = advance(state, measured, temps, loads)
        if state["done"]:
            break
        measured = {}
        for n in state["next"]:
            m = metrics[(n["temperature"], n["load"])]
            measured[(n["temperature"], n["load"])] = {**m, "regime": Regimes(-0.05, 0.9).classify(m["lmc"], m["cka"]),
                                                       "cka_logit": 0.0, "test_error": 0.1}
    table = cell_table(state, "s", "epochs", "density")
    ref = search(truth, DEFAULT_PER_ROUND)
    assert int(table.computed.sum()) == len(ref.computed) == 22 and state["round"] == ref.rounds
    got = table.set_index(["temperature", "load"]).regime
    assert all(got[(float(temps[r]), loads[c])] == truth[r, c] for r, c in np.ndindex(8, 6))
    assert table[table.computed].reason.str.match(r"start|bisection|check|pin").all()
    assert table[~table.computed].reason.str.startswith("inferred from the ").all()
    assert (table[~table.computed]["round"] == -1).all() and table[~table.computed].lmc.isna().all()


def test_near_regimes_are_the_regimes_within_the_margins():
    eps, thr = -0.05, 0.9
    assert Regimes(eps, thr).near("I", -0.055, 0.5, 0.01, 0.0) == ("II-A",)
    assert Regimes(eps, thr).near("I", -0.055, 0.95, 0.01, 0.0) == ("II-B",)    # across ε: II-B by its CKA
    assert Regimes(eps, thr).near("II-A", -0.045, 0.5, 0.01, 0.0) == ("I",)
    assert Regimes(eps, thr).near("II-A", -0.045, 0.899, 0.01, 0.002) == ("I", "II-B")
    assert Regimes(eps, thr).near("II-B", 0.0, 0.901, 0.01, 0.002) == ("II-A",)
    assert Regimes(eps, thr).near("I", -0.07, 0.5, 0.01, 0.5) == ()              # CKA margin: Regime II only
    assert Regimes(-0.5, thr).near("I", -0.75, 0.5, 0.25, 0.0) == ()             # |LMC - ε| = margin: not near
    assert Regimes(eps, thr).near("I", -0.055, 0.5, 0.0, 0.0) == ()              # margins of 0: off
    assert Regimes(eps, thr).near("missing", math.nan, 0.5, 0.01, 0.01) == ()


def test_nothing_is_inferred_from_a_cell_near_the_boundary():
    """A column I, I, I, II-A, II-A whose middle cell measures LMC just below ε: without a margin
    the cells between it and the Regime-I end are inferred Regime I; with it, they are computed."""
    truth = np.array([["I"], ["I"], ["I"], ["II-A"], ["II-A"]], dtype=object)
    near = {(2, 0): ("II-A",)}
    plain, careful = search(truth, 1), search(truth, 1, near=near)
    assert set(plain.computed) == {(0, 0), (2, 0), (3, 0), (4, 0)} and plain.plan.inferred_from[(1, 0)]
    assert set(careful.computed) == {(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)}
    assert careful.agreement(truth) == plain.agreement(truth) == 1.0
    # a near cell keeps its measured regime, and no staircase is read from it
    p = plan((2, 2), {(0, 0): "I", (1, 1): "II-B"}, near={(0, 0): ("II-A",)})
    assert p.labels[(0, 0)] == "I" and (0, 1) not in p.labels and (1, 0) not in p.labels


def test_advance_reads_near_cells_from_the_measured_rows():
    truth = np.array([["I"], ["I"], ["I"], ["II-A"], ["II-A"]], dtype=object)
    temps, loads = [10, 20, 30, 40, 50], [0.1]
    state, measured, rounds = None, {}, 0
    while True:
        state = advance(state, measured, temps, loads, per_round=1)
        if state["done"]:
            break
        rounds += 1
        measured = {(n["temperature"], n["load"]): {
            "regime": truth[temps.index(n["temperature"]), 0], "lmc": 0.0, "cka": 0.0,
            "near": ["II-A"] if n["temperature"] == 30 else []} for n in state["next"]}
    ref = search(truth, 1, near={(2, 0): ("II-A",)})
    assert len(state["computed"]) == len(ref.computed) == 5 and state["round"] == ref.rounds
    table = cell_table(state).set_index("temperature")
    assert table.near[30.0] == "II-A" and table.near[10.0] == ""


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="regime 'III'"):
        plan((2, 2), {(0, 0): "III"})
    with pytest.raises(ValueError, match="outside"):
        plan((2, 2), {(2, 0): "I"})
    with pytest.raises(ValueError, match="per_round"):
        plan((2, 2), {}, per_round=0)
    first = advance(None, {}, [1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="not the cells the previous round asked for"):
        advance(first, {(9.0, 0.1): {"regime": "I"}}, [1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="another grid"):
        advance(first, {}, [1, 2, 3], [0.1, 0.2])


# The regimes the full 8 x 6 grid of presets/adaptive_demo.yaml measured (rows: epochs 5..40,
# columns: density 2..20 %; the demo's retraining: 12 epochs, three copies), and the same grid
# again with retrain seeds 4-6 (presets/adaptive_demo_repeat.yaml). LMC sits within its noise of
# ε in the 3-5 % columns, so the two full grids agree on 39 of the 48 cells.
DEMO_GRID = np.array([r.split() for r in (
    "I II-A II-A II-A II-B II-B", "I II-A II-A II-A II-B II-B", "I II-A II-A II-A II-B II-B",
    "II-A I II-A II-A II-B II-B", "I I II-A II-A II-B II-B", "I I I II-A II-B II-B",
    "I II-A II-A II-A II-B II-B", "I II-A I II-A II-B II-B")], dtype=object)
DEMO_REPEAT = np.array([r.split() for r in (
    "I I II-A II-A II-B II-B", "I I II-A II-A II-B II-B", "I I II-A II-A II-B II-B",
    "II-A I I II-A II-B II-B", "I I I II-A II-B II-B", "I I I I II-B II-B",
    "I II-A II-A I II-B II-B", "I I I I II-B II-B")], dtype=object)


# The cells of each measured grid whose LMC lies within 0.01 of ε (the default lmc_margin), with
# the regime across ε (threeregime.adaptive.near_regimes of the measured LMC and CKA).
DEMO_NEAR = {(0, 1): ("I",), (1, 0): ("II-A",), (4, 1): ("II-A",), (4, 2): ("I",), (5, 2): ("II-A",),
             (5, 3): ("I",), (6, 1): ("I",), (6, 2): ("I",), (7, 1): ("I",), (7, 3): ("I",)}
DEMO_REPEAT_NEAR = {(0, 1): ("II-A",), (0, 2): ("I",), (1, 0): ("II-A",), (2, 1): ("II-A",), (2, 2): ("I",),
                    (3, 1): ("II-A",), (3, 2): ("II-A",), (5, 1): ("II-A",), (5, 2): ("II-A",), (6, 1): ("I",),
                    (6, 3): ("II-A",), (7, 1): ("II-A",), (7, 2): ("II-A",), (7, 3): ("II-A",)}


def test_the_demo_grids_agree_on_39_cells():
    assert int((DEMO_GRID == DEMO_REPEAT).sum()) == 39


@pytest.mark.parametrize("grid, pin, margin, n_computed, n_same, n_same_other", [
    ("grid", "column", True, 26, 47, 38), ("repeat", "column", True, 28, 47, 38),
    ("grid", "column", False, 20, 44, 37), ("grid", "both", False, 42, 48, 39),
    ("repeat", "column", False, 20, 45, 36), ("repeat", "both", False, 29, 45, 36)])
def test_the_demo_grids_measured(grid, pin, margin, n_computed, n_same, n_same_other):
    """The search on the two measured demo grids, with the default LMC margin (near cells) and
    without: cells computed, cells labelled as the grid it searched, and as the other grid
    (which the full grid itself matches on 39 of 48)."""
    this, other = (DEMO_GRID, DEMO_REPEAT) if grid == "grid" else (DEMO_REPEAT, DEMO_GRID)
    near = (DEMO_NEAR if grid == "grid" else DEMO_REPEAT_NEAR) if margin else None
    run = search(this, 2, pin, near=near)
    assert len(run.computed) == n_computed
    assert round(run.agreement(this) * 48) == n_same
    assert round(run.agreement(other) * 48) == n_same_other
