"""How sure a cell's regime is (threeregime.uncertainty, Regimes.candidates): intervals on
synthetic pairs with known answers, ties at ε, one pair, NaN pairs, several dense seeds."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from threeregime.regimes import MISSING, Regimes
from threeregime.tables import summarize
from threeregime.uncertainty import cell_intervals, describe, interval, jackknife_se

EPS, THR = -0.05, 0.9
R = Regimes(EPS, THR, 0.9)
T2 = 2.919985580355516  # t quantile, 0.95, 2 degrees of freedom (a 90 % interval from 3 copies)


def additive(x):
    """Pairs whose value is the sum of their two copies' effects."""
    return {(a, b): x[a] + x[b] for a in range(len(x)) for b in range(a + 1, len(x))}


def test_jackknife_over_copies_is_exact_for_additive_pairs():
    # mean over pairs = 2 mean(x); the jackknife of a mean is s / sqrt(n) exactly
    x = [0.0, 0.01, 0.03]
    se = jackknife_se(additive(x))
    assert se == pytest.approx(2 * np.std(x, ddof=1) / math.sqrt(3), rel=1e-12)
    assert se == pytest.approx(0.0176383, rel=1e-5)  # by hand: sqrt(2/3 * 4.6667e-4)
    x5 = [0.3, -0.1, 0.2, 0.05, 0.0]
    assert jackknife_se(additive(x5)) == pytest.approx(2 * np.std(x5, ddof=1) / math.sqrt(5), rel=1e-12)
    iv = interval({1: additive(x)}, 0.9)
    assert iv.mean == pytest.approx(2 * np.mean(x)) and iv.df == 2
    assert (iv.lo, iv.hi) == pytest.approx((iv.mean - T2 * se, iv.mean + T2 * se), rel=1e-12)
    assert iv.sd == pytest.approx(np.std(list(additive(x).values()), ddof=1))
    assert math.isnan(iv.sd_dense)


def test_the_interval_covers_the_true_mean_at_its_confidence():
    """Monte Carlo: 3 copies per cell, pair value = copy effects + the pair's own noise. Purely
    additive pairs: the jackknife-t interval is exact (coverage 0.9); with independent pair noise
    it is conservative (over 0.9)."""
    rng = np.random.default_rng(0)
    for pair_noise, lo, hi in ((0.0, 0.88, 0.92), (1.0, 0.93, 1.0)):
        hits = 0
        n = 3000
        for _ in range(n):
            x = rng.normal(0, 1, 3)
            pairs = {ab: v + pair_noise * rng.normal() for ab, v in additive(x).items()}
            iv = interval({1: pairs}, 0.9)
            hits += iv.lo <= 0.0 <= iv.hi
        assert lo <= hits / n <= hi, (pair_noise, hits / n)


def test_one_pair_has_no_interval_and_nan_pairs_no_mean():
    iv = interval({1: {(1, 2): -0.03}}, 0.9)
    assert iv.mean == -0.03 and math.isnan(iv.lo) and math.isnan(iv.hi) and iv.df == 0 and math.isnan(iv.sd)
    assert R.candidates(-0.03, 0.95, (iv.lo, iv.hi), (math.nan, math.nan)) == ("I", "II-A", "II-B")
    iv = interval({1: {(1, 2): -0.03, (1, 3): math.nan, (2, 3): -0.02}}, 0.9)
    assert math.isnan(iv.mean) and math.isnan(iv.lo)
    assert R.candidates(iv.mean, 0.95) == (MISSING,)
    assert math.isnan(jackknife_se({(1, 2): 0.1, (1, 3): math.nan, (2, 3): 0.2}))


def test_several_dense_seeds_use_the_spread_of_their_means():
    seeds = {1: {(1, 2): -0.02, (1, 3): -0.04, (2, 3): -0.03}, 2: {(1, 2): -0.06, (1, 3): -0.08, (2, 3): -0.07}}
    iv = interval(seeds, 0.9)
    assert iv.mean == pytest.approx(-0.05)
    assert iv.sd_dense == pytest.approx(0.04 / math.sqrt(2))
    assert iv.se == pytest.approx(0.02) and iv.df == 1
    assert iv.hi - iv.mean == pytest.approx(stats.t.ppf(0.95, 1) * 0.02)
    assert iv.sd == pytest.approx(0.01)  # within a seed: -0.02, -0.04, -0.03 around -0.03


def test_candidates_settled_and_unsettled():
    assert R.candidates(-0.10, 0.5, (-0.12, -0.08), (0.4, 0.6)) == ("I",)       # settled I, CKA irrelevant
    assert R.candidates(-0.06, 0.5, (-0.08, -0.04), (0.4, 0.6)) == ("I", "II-A")
    assert R.candidates(-0.02, 0.95, (-0.03, -0.01), (0.93, 0.97)) == ("II-B",)
    assert R.candidates(-0.02, 0.91, (-0.03, -0.01), (0.88, 0.94)) == ("II-A", "II-B")
    assert R.candidates(-0.06, 0.91, (-0.08, -0.04), (0.88, 0.94)) == ("I", "II-A", "II-B")
    assert R.candidates(math.nan, 0.9) == (MISSING,)


def test_ties_at_epsilon_and_the_threshold():
    # no spread: the point's own side (LMC = ε is connected, CKA = threshold is II-B)
    assert R.candidates(EPS, THR, (EPS, EPS), (THR, THR)) == ("II-B",)
    # any spread around a tie reaches both sides
    assert R.candidates(EPS, 0.5, (EPS - 1e-9, EPS + 1e-9), (0.5, 0.5)) == ("I", "II-A")
    # an interval ending exactly at ε on the connected side does not reach Regime I ...
    assert R.candidates(-0.04, 0.5, (EPS, -0.03), (0.5, 0.5)) == ("II-A",)
    # ... nor one ending exactly at ε from below the connected side
    assert R.candidates(-0.06, 0.5, (-0.07, EPS), (0.5, 0.5)) == ("I",)
    # three pairs symmetric around ε: mean ε (connected), interval across it
    iv = interval({1: {(1, 2): -0.06, (1, 3): EPS, (2, 3): -0.04}}, 0.9)
    assert iv.mean == pytest.approx(EPS, abs=1e-15) and iv.lo < EPS < iv.hi
    # identical pairs at ε: no spread, settled connected (ε = -1/16: its mean is exact in binary)
    e = -0.0625
    iv = interval({1: {(1, 2): e, (1, 3): e, (2, 3): e}}, 0.9)
    assert iv.mean == e and iv.se == 0 and iv.lo == iv.hi == e
    assert Regimes(e, THR).candidates(iv.mean, 0.5, (iv.lo, iv.hi), (0.5, 0.5)) == ("II-A",)


def test_confidence_is_checked():
    with pytest.raises(ValueError, match="regimes.confidence must be in"):
        Regimes(EPS, THR, 1.0)
    assert Regimes.from_dict({"confidence": 0.95}).confidence == 0.95
    assert Regimes.from_dict({}).as_dict()["confidence"] == 0.9


def _pair_rows(cells):
    rows = []
    for (t, l), by_seed in cells.items():
        for seed, pairs in by_seed.items():
            for (a, b), (lmc, cka) in pairs.items():
                rows.append({"study": "s", "temperature_axis": "epochs", "temperature": t, "load_axis": "density",
                             "load": l, "dense_seed": seed, "kind": "pair", "pair": f"{a}-{b}", "lmc": lmc,
                             "cka": cka, "cka_logit": cka})
        rows.append({"study": "s", "temperature_axis": "epochs", "temperature": t, "load_axis": "density",
                     "load": l, "dense_seed": 1, "kind": "copy", "retrain_seed": 1, "test_error": 0.1})
    return pd.DataFrame(rows)


def test_summary_rows_carry_intervals_and_confidence():
    table = _pair_rows({
        (10.0, 0.05): {1: {(1, 2): (-0.20, 0.5), (1, 3): (-0.21, 0.5), (2, 3): (-0.19, 0.5)}},  # settled I
        (10.0, 0.10): {1: {(1, 2): (-0.03, 0.5), (1, 3): (-0.07, 0.5), (2, 3): (-0.06, 0.5)}},  # straddles ε
        (20.0, 0.05): {1: {(1, 2): (0.0, 0.95), (1, 3): (0.0, 0.95)}},                          # 3 copies, 2 pairs
        (20.0, 0.10): {1: {(1, 2): (math.nan, 0.9), (1, 3): (0.0, 0.9), (2, 3): (0.0, 0.9)}},   # diverged pair
    })
    s = summarize(table, R).set_index(["temperature", "load"])
    assert s.loc[(10.0, 0.05), "candidates"] == "I" and s.loc[(10.0, 0.05), "settled"]
    assert s.loc[(10.0, 0.10), "regime"] == "I"  # mean -0.0533 < ε
    assert s.loc[(10.0, 0.10), "candidates"] == "I/II-A" and not s.loc[(10.0, 0.10), "settled"]
    se = jackknife_se({(1, 2): -0.03, (1, 3): -0.07, (2, 3): -0.06})
    assert s.loc[(10.0, 0.10), "lmc_hi"] == pytest.approx(s.loc[(10.0, 0.10), "lmc"] + T2 * se)
    # copies 1-2 and 1-3 only: leaving copy 1 out leaves no pair, so no interval
    assert math.isnan(s.loc[(20.0, 0.05), "lmc_lo"]) and s.loc[(20.0, 0.05), "candidates"] == "I/II-A/II-B"
    assert s.loc[(20.0, 0.10), "regime"] == MISSING and pd.isna(s.loc[(20.0, 0.10), "settled"])
    assert s.loc[(20.0, 0.10), "candidates"] == MISSING


def test_cell_intervals_one_row_per_cell():
    table = _pair_rows({(1.0, 0.5): {1: {(1, 2): (-0.1, 0.5), (1, 3): (-0.1, 0.5), (2, 3): (-0.1, 0.5)},
                                     2: {(1, 2): (-0.2, 0.5), (1, 3): (-0.2, 0.5), (2, 3): (-0.2, 0.5)}}})
    out = cell_intervals(table[table.kind == "pair"], ["temperature", "load"], R)
    assert len(out) == 1 and out.lmc_sd[0] == pytest.approx(0, abs=1e-15) and out.lmc_sd_dense[0] == pytest.approx(0.1 / math.sqrt(2))
    half = stats.t.ppf(0.95, 1) * 0.05
    assert (out.lmc_lo[0], out.lmc_hi[0]) == pytest.approx((-0.15 - half, -0.15 + half))


def test_describe():
    assert describe(-0.0633, -0.095, -0.0316, 0.9) == "-0.0633 (90 % interval -0.0950 to -0.0316)"
    assert describe(-0.0633, math.nan, math.nan, 0.9) == "-0.0633 (90 % interval unknown: one pair)"


def test_adaptive_near_is_the_unsettled_rule_floored_by_the_margins():
    from threeregime.adaptive import unsettled_near

    base = {"regime": "I", "lmc": -0.07, "cka": 0.5}
    # the interval reaches ε: near II-A, whatever the (smaller) margin
    assert unsettled_near(R, {**base, "lmc_lo": -0.1, "lmc_hi": -0.04, "cka_lo": 0.4, "cka_hi": 0.6}, 0.01) == ["II-A"]
    # a narrow interval: the margin decides (0.03 reaches ε from -0.07? no; 0.025 ... no; 0.021 yes)
    narrow = {**base, "lmc_lo": -0.075, "lmc_hi": -0.065, "cka_lo": 0.45, "cka_hi": 0.55}
    assert unsettled_near(R, narrow, 0.01) == [] and unsettled_near(R, narrow, 0.021) == ["II-A"]
    # one pair (no interval): the margins alone, so a two-copy study can still be searched
    one_pair = {**base, "lmc_lo": math.nan, "lmc_hi": math.nan, "cka_lo": math.nan, "cka_hi": math.nan}
    assert unsettled_near(R, one_pair, 0.01) == [] and unsettled_near(R, one_pair, 0.05) == ["II-A"]
    # the CKA interval of a connected cell counts too (default cka_margin 0)
    conn = {"regime": "II-B", "lmc": 0.0, "cka": 0.92, "lmc_lo": -0.01, "lmc_hi": 0.01, "cka_lo": 0.89,
            "cka_hi": 0.95}
    assert unsettled_near(R, conn) == ["II-A"]
    assert unsettled_near(R, {**conn, "regime": MISSING, "lmc": math.nan}) == []
    # the same answer as Regimes.near where the interval is the margin
    assert unsettled_near(R, one_pair, 0.03, 0.0) == list(R.near("I", -0.07, 0.5, 0.03, 0.0))


def test_adaptive_diagram_marks_unsettled_cells(tmp_path, monkeypatch):
    from threeregime import adaptive_plots
    from threeregime.adaptive import advance, cell_table

    labels = []
    real = adaptive_plots.plt.Figure.legend
    monkeypatch.setattr(adaptive_plots.plt.Figure, "legend",
                        lambda fig, handles, texts, **kw: labels.extend(texts) or real(fig, handles, texts, **kw))
    temps, loads = [10, 20, 30], [0.1, 0.2, 0.5]
    state, measured = None, {}
    while True:
        state = advance(state, measured, temps, loads, 2, "column")
        if state["done"]:
            break
        measured = {(n["temperature"], n["load"]): {"regime": "II-B", "lmc": 0.0, "cka": 0.95,
                                                    "near": ["II-A"] if n["load"] == 0.2 else []}
                    for n in state["next"]}
    table = cell_table(state, "s", "epochs", "density")
    assert (table[table.near != ""].load == 0.2).all() and (table.near != "").any()
    adaptive_plots.adaptive_diagram(table, str(tmp_path / "a.pdf"), str(tmp_path / "a.png"), R)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert any(t.startswith("unsettled: its 90 % interval") for t in labels)


def test_side_of_epsilon_for_decisions_on_lmc_alone():
    assert R.side(-0.10, (-0.12, -0.08)) == "I"
    assert R.side(-0.04, (EPS, -0.03)) == "II"          # an interval ending at ε is connected
    assert R.side(-0.06, (-0.08, -0.04)) == "unsettled"
    assert R.side(-0.06) == "unsettled"                 # no interval known (one pair): unbounded
    assert R.side(-0.06, (-0.06, -0.06)) == "I" and R.side(EPS, (EPS, EPS)) == "II"
    assert R.side(math.nan) == MISSING
