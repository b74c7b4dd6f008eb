"""The case studies' decision logic (threeregime.casestudies.ALGORITHMS refers here): pure
functions on metric tables (one row per temperature x load cell, as in a study's
cells.parquet), each algorithm's summary, and a case study's table from its studies' tables.

* `temperature_decisions` (Algorithm 1), `select_models` (Algorithms 2 and 2.1),
  `sgd_vs_sam` (Figure 5), `sam_rho_by_cka` (Figure 6).

Ties are broken by the candidates' order in the base study's temperature values (the first
wins); NaN cells (a diverged or missing cell) are never chosen.

Imports pandas: jobs only (planning reads threeregime.casestudies).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .casestudies import SELECT_BY, CaseStudy
from .regimes import MISSING, Regimes
from .spec.common import fmt, resolve


def _at(cells: pd.DataFrame, temperature: float, load: float, column: str) -> float:
    m = cells[np.isclose(cells.temperature, temperature) & np.isclose(cells.load, load)]
    return float(m[column].iloc[0]) if len(m) and column in m and pd.notna(m[column].iloc[0]) else math.nan


def _lmc_interval(cells: pd.DataFrame, temperature: float, load: float) -> tuple[float, float]:
    """The cell's interval for its mean LMC (cells.parquet's lmc_lo, lmc_hi; NaN: unknown, read
    as unbounded). A table without these columns (written before they existed) gives the
    point itself, so its decisions are those of the mean alone."""
    if "lmc_lo" not in cells or "lmc_hi" not in cells:
        lmc = _at(cells, temperature, load, "lmc")
        return lmc, lmc
    return _at(cells, temperature, load, "lmc_lo"), _at(cells, temperature, load, "lmc_hi")


# --- Algorithm 1 ---------------------------------------------------------------------------------

DECISION_OF_SIDE = {"I": "raise", "II": "keep", "unsettled": "unsettled", MISSING: "missing"}


def temperature_decisions(cells: pd.DataFrame, t0: float, t1: float, epsilon: float,
                          quality: dict | None = None) -> pd.DataFrame:
    """Algorithm 1 for every load of `cells` (temperature, load, lmc, test_error; lmc_lo and
    lmc_hi where the table has them).

    decision: 'raise' (LMC at T0 < ε, its interval too: Regime I, go to T0 + ΔT = t1), 'keep'
    (the interval at or above ε: stay at T0), 'unsettled' (the interval reaches both sides: no
    decision; more retrain seeds for this cell, README "How sure is a cell's regime") or
    'missing' (no LMC at T0). regime_I: the mean alone below ε. right: whether the quality
    actually reached agrees - raising is right when it is better at t1 than at T0, keeping when
    it is not better; None when there is no decision or a value is missing.

    The quality is the test error, unless `quality` names the study task's quality metric
    ({"column", "higher_is_better", ...}: a translation study's BLEU, panel_info): then its
    values at T0 and t1 are columns <column>_t0 and <column>_t1 beside test_error_t0/_t1 (a
    translation table's validation token error), and `right` is judged on it."""
    column = quality["column"] if quality else "test_error"
    higher = bool(quality["higher_is_better"]) if quality else False
    rule = Regimes(lmc_epsilon=epsilon)
    rows = []
    for load in sorted(set(cells.load)):
        lmc = _at(cells, t0, load, "lmc")
        lo, hi = _lmc_interval(cells, t0, load)
        e0, e1 = _at(cells, t0, load, "test_error"), _at(cells, t1, load, "test_error")
        q0, q1 = _at(cells, t0, load, column), _at(cells, t1, load, column)
        decision = DECISION_OF_SIDE[rule.side(lmc, (lo, hi))]
        right = None
        if decision in ("raise", "keep") and np.isfinite(q0) and np.isfinite(q1):
            better = q1 > q0 if higher else q1 < q0
            right = bool(better) if decision == "raise" else not better
        row = {"load": load, "lmc": lmc, "lmc_lo": lo, "lmc_hi": hi, "regime_I": rule.is_one(lmc),
               "decision": decision, "t0": t0, "t1": t1, "test_error_t0": e0, "test_error_t1": e1}
        if column != "test_error":
            row.update({f"{column}_t0": q0, f"{column}_t1": q1})
        rows.append({**row, "right": right})
    return pd.DataFrame(rows)


def temperature_summary(case: CaseStudy, table: pd.DataFrame) -> list[str]:
    out = []
    for title, t in table.groupby("panel", sort=False):
        judged = t[t.right.notna()]
        unsettled = t[t.decision == "unsettled"]
        out.append(f"{title}: T0 = {fmt(t.t0.iloc[0])} -> {fmt(t.t1.iloc[0])}; raise at "
                   f"{int((t.decision == 'raise').sum())} of {len(t)} loads, unsettled at {len(unsettled)}"
                   + (f" ({', '.join(fmt(v) for v in unsettled.load)}: LMC interval across ε)" if len(unsettled)
                      else "")
                   + f"; decision right in {int(judged.right.astype(bool).sum())} of {len(judged)} loads")
    return out


# --- Algorithms 2 and 2.1 ------------------------------------------------------------------------

def _best(candidates, value, lowest: bool):
    """The first candidate with the lowest (or highest) finite value; None if none is finite."""
    best, best_v = None, None
    for c in candidates:
        v = value(c)
        if v is None or not np.isfinite(v):
            continue
        if best is None or (v < best_v if lowest else v > best_v):
            best, best_v = c, v
    return best


def select_models(candidates, dense_error: dict, alpha_cells: pd.DataFrame, full_cells: pd.DataFrame,
                  epsilon: float, select_by: str, alpha_epochs: float, full_epochs: float) -> pd.DataFrame:
    """Algorithm 2 (select_by='test_error') or 2.1 (select_by='cka') for every load, with the
    baseline (the lowest dense test error) and the grid search (the lowest test error after full
    retraining) beside it.

    candidates: temperatures in the base study's order (ties: the first wins).
    dense_error: temperature -> dense test error. alpha_cells: cells after α retraining epochs
    (lmc, cka, test_error); full_cells: cells after full retraining (test_error, lmc).
    The baseline's LMC is measured on its α-epoch copies (`lmc_test`: the side of ε its
    interval lies on, threeregime.regimes.Regimes.side): 'II' (at or above ε) stops there (α
    epochs spent); 'I', 'unsettled' (the interval reaches both sides: the test cannot say, so the
    search runs, which costs α·n epochs and can still pick the baseline) or 'missing' (a diverged
    baseline) retrains every candidate for α epochs (α·n).
    Retraining epochs are counted per pruned model (the paper's accounting: 2 vs 160 per candidate)."""
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}, got {select_by!r}")
    candidates = [float(c) for c in candidates]
    baseline = _best(candidates, lambda c: dense_error.get(c, math.nan), lowest=True)
    if baseline is None:
        raise ValueError("no candidate has a finite dense test error")
    rows = []
    for load in sorted(set(full_cells.load)):
        lmc_b = _at(alpha_cells, baseline, load, "lmc")
        lo_b, hi_b = _lmc_interval(alpha_cells, baseline, load)
        lmc_test = Regimes(lmc_epsilon=epsilon).side(lmc_b, (lo_b, hi_b))
        searched = lmc_test != "II"
        ours = baseline
        if searched:
            column = "test_error" if select_by == "test_error" else "cka"
            ours = _best(candidates, lambda c: _at(alpha_cells, c, load, column), lowest=(select_by == "test_error"))
            ours = baseline if ours is None else ours
        grid = _best(candidates, lambda c: _at(full_cells, c, load, "test_error"), lowest=True)
        rows.append({
            "load": load, "select_by": select_by,
            "baseline": baseline, "baseline_dense_error": dense_error.get(baseline, math.nan),
            "baseline_lmc_alpha": lmc_b, "baseline_lmc_alpha_lo": lo_b, "baseline_lmc_alpha_hi": hi_b,
            "lmc_test": lmc_test, "searched": searched,
            "ours": ours, "grid": grid,
            "baseline_error": _at(full_cells, baseline, load, "test_error"),
            "ours_error": _at(full_cells, ours, load, "test_error"),
            "grid_error": math.nan if grid is None else _at(full_cells, grid, load, "test_error"),
            "baseline_lmc": _at(full_cells, baseline, load, "lmc"),
            "ours_lmc": _at(full_cells, ours, load, "lmc"),
            "grid_lmc": math.nan if grid is None else _at(full_cells, grid, load, "lmc"),
            "baseline_epochs": 0.0,
            "ours_epochs": alpha_epochs * (len(candidates) if searched else 1),
            "grid_epochs": full_epochs * len(candidates),
        })
    return pd.DataFrame(rows)


def dense_test_error(path: str) -> float:
    """A dense checkpoint's test error at the epoch it was saved (the last of its history)."""
    from .checkpoints import load_torch

    history = load_torch(path).get("history") or []
    if not history:
        raise ValueError(f"dense checkpoint {path} has no training history to read its test error from")
    return float(np.mean(history[-1]["test_error"]))


def retrain_epochs(table: pd.DataFrame) -> float:
    """Retraining epochs one pruned model of a study got (from its per-copy rows)."""
    return float(table[table.kind == "copy"].epochs.max())


def selection_panel_data(table, dense_errors: dict) -> dict:
    """What select_models needs beyond the cells: the dense test error of each candidate (mean
    over dense seeds) and the retraining epochs of the α-epoch and the full retraining."""
    return {"dense_error": {t: sum(v) / len(v) for t, v in dense_errors.items()},
            "alpha_epochs": retrain_epochs(table("alpha")), "full_epochs": retrain_epochs(table("grid"))}


def selection_summary(case: CaseStudy, table: pd.DataFrame) -> list[str]:
    out = []
    for title, t in table.groupby("panel", sort=False):
        unsettled = int((t.lmc_test == "unsettled").sum()) if "lmc_test" in t else 0
        out.append(f"{title} ({t.select_by.iloc[0]}): baseline's α-epoch LMC test unsettled at {unsettled} of "
                   f"{len(t)} loads (searched there); mean final test error ours {t.ours_error.mean():.4f}, "
                   f"baseline {t.baseline_error.mean():.4f}, grid search {t.grid_error.mean():.4f}; "
                   f"ours = grid choice in {int((t.ours == t.grid).sum())} of {len(t)} loads; retraining "
                   f"epochs ours {t.ours_epochs.sum():g} vs grid search {t.grid_epochs.sum():g}")
    return out


# --- SGD vs SAM ------------------------------------------------------------------------------------

def sgd_vs_sam(sgd: pd.DataFrame, sam: pd.DataFrame, rho: float) -> pd.DataFrame:
    """Figure 5: the cells of the SGD study and of its SAM twin, one above the other."""
    cols = ["temperature", "load", "test_error", "lmc", "cka", "regime"]
    return pd.concat([sgd[cols].assign(optimizer="SGD"), sam[cols].assign(optimizer="SAM", rho=rho)],
                     ignore_index=True)


def sam_vs_sgd_summary(case: CaseStudy, table: pd.DataFrame) -> list[str]:
    out = []
    for title, t in table.groupby("panel", sort=False):
        sgd, sam = t[t.optimizer == "SGD"], t[t.optimizer == "SAM"]
        out.append(f"{title}: mean test error SGD {sgd.test_error.mean():.4f}, SAM {sam.test_error.mean():.4f}; "
                   f"mean LMC SGD {sgd.lmc.mean():+.4f}, SAM {sam.lmc.mean():+.4f}")
    return out


# --- SAM's ρ by CKA --------------------------------------------------------------------------------

def sam_rho_by_cka(cells: pd.DataFrame, small_rho: float, large_rho: float) -> pd.DataFrame:
    """Per load: the ρ with the highest CKA (the paper's tuning rule; ties: the smaller ρ), the ρ
    with the lowest test error, and the test errors of a small ρ, a large ρ and the selected ρ."""
    rows = []
    for load in sorted(set(cells.load)):
        rhos = sorted(float(t) for t in set(cells[np.isclose(cells.load, load)].temperature))
        chosen = _best(rhos, lambda r: _at(cells, r, load, "cka"), lowest=False)
        best = _best(rhos, lambda r: _at(cells, r, load, "test_error"), lowest=True)
        err = lambda r: math.nan if r is None else _at(cells, r, load, "test_error")  # noqa: E731
        rows.append({"load": load, "selected_rho": chosen, "selected_cka": math.nan if chosen is None else
                     _at(cells, chosen, load, "cka"), "selected_error": err(chosen), "best_rho": best,
                     "best_error": err(best), "small_rho": small_rho, "small_error": err(small_rho),
                     "large_rho": large_rho, "large_error": err(large_rho),
                     "selected_is_best": None if chosen is None or best is None else
                     bool(err(chosen) <= err(best))})
    return pd.DataFrame(rows)


def sam_rho_summary(case: CaseStudy, table: pd.DataFrame) -> list[str]:
    judged = table[table.selected_is_best.notna()]
    return [f"ρ by CKA is the best ρ by test error in {int(judged.selected_is_best.astype(bool).sum())} of "
            f"{len(judged)} loads; mean test error selected {table.selected_error.mean():.4f}, "
            f"best {table.best_error.mean():.4f}"]


# --- one case study's table from its studies' tables -----------------------------------------------

def summary_lines(case: CaseStudy, table: pd.DataFrame) -> list[str]:
    """What the case study found, in words (the job's log and the README's demo section)."""
    return resolve(case.entry.summary)(case, table)


def case_table(case: CaseStudy, panels: list[dict]) -> pd.DataFrame:
    """The case study's result table. panels[i] holds, for case.panels[i]: the cells tables of its
    studies by role (the entry's roles: 'grid', 'alpha', 'sgd', 'sam'), 'epsilon' (the base
    study's lmc_epsilon), 'candidates' and what the entry's panel_data adds (selection:
    'dense_error' {temperature: error}, 'alpha_epochs', 'full_epochs')."""
    entry = case.entry
    decide = resolve(entry.decide)
    frames = [decide(*entry.decide_args(case.params, panel, data)).assign(panel=panel.title, base_study=panel.base)
              for panel, data in zip(case.panels, panels)]
    table = pd.concat(frames, ignore_index=True)
    return table[["panel", "base_study", *[c for c in table.columns if c not in ("panel", "base_study")]]]
