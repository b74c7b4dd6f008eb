"""The paper's three case studies (Section 4): which way to move the temperature (Algorithm 1),
which dense model to prune without a grid search (Algorithms 2 and 2.1), and SAM's ρ chosen by
CKA (Figures 5, 6).

Two halves:

* Config -> derived studies. A case study (config `case_studies.<name>`, the name being the
  figure it draws, e.g. `figure3`) names base studies and its inputs. Each panel becomes one or
  more *derived studies*: the base study restricted or changed as the algorithm needs (only T0
  and T0 + ΔT; the α-epoch retraining; SAM at ρ instead of SGD). A derived study is an ordinary
  study, named `case-<base>-<role>-<8 hex of its settings>`, so its artifacts are keyed by
  their hyperparameters like every other: whatever the grids already computed is reused, and
  the α-epoch runs are shared by Algorithms 2 and 2.1 (same settings, same name, same files).
  `expand_config` adds them to the config's `studies`.
* Decision logic as pure functions on metric tables (one row per temperature x load cell, as
  in a study's cells.parquet): `temperature_decisions`, `select_models`, `sam_rho_by_cka`.

Ties are broken by the candidates' order in the base study's temperature values (the first
wins); NaN cells (a diverged or missing cell) are never chosen.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .regimes import Regimes
from .spec.common import ConfigError, deep_merge, digest, fmt
from .study import AXES

ALGORITHMS = ("temperature", "selection", "sam_vs_sgd", "sam_rho")
SELECT_BY = ("test_error", "cka")


@dataclass(frozen=True)
class Panel:
    """One column of a case study's figure: a base study and the derived studies it reads."""

    base: str
    title: str
    studies: dict  # role -> study name: grid | alpha (selection) | sgd, sam (sam_vs_sgd)
    t0: float | None = None  # temperature: the initial temperature and one grid step hotter
    t1: float | None = None


@dataclass(frozen=True)
class CaseStudy:
    name: str
    algorithm: str
    panels: tuple[Panel, ...]
    params: dict = field(default_factory=dict)  # alpha, select_by, rho, density, small_rho, large_rho

    def study_names(self) -> list[str]:
        return [s for p in self.panels for s in p.studies.values()]

    @staticmethod
    def from_dict(d: dict) -> "CaseStudy":
        return CaseStudy(d["name"], d["algorithm"], tuple(Panel(**p) for p in d["panels"]), dict(d["params"]))

    def as_dict(self) -> dict:
        return {"name": self.name, "algorithm": self.algorithm, "params": dict(self.params),
                "panels": [{"base": p.base, "title": p.title, "studies": dict(p.studies), "t0": p.t0, "t1": p.t1}
                           for p in self.panels]}


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        hint = " (YAML reads 1e-3 as a string: write 1.0e-3)" if isinstance(v, str) else ""
        raise ConfigError(f"{where}: {v!r} is not a number{hint}")
    return float(v)


def hotter_step(values, t0: float, steps: int, hotter: str, where: str) -> float:
    """The temperature `steps` grid steps hotter than t0 among `values` (the base study's grid):
    epochs 160 -> 150, batch size 128 -> 92 (hotter = 'low'); SAM ρ 0.4 -> 0.5 (hotter = 'high')."""
    grid = sorted(set(float(v) for v in values), reverse=(hotter == "low"))  # coolest first
    if float(t0) not in grid:
        raise ConfigError(f"{where}.t0: {fmt(t0)} is not a temperature of the base study; "
                          f"its values: {[fmt(v) for v in sorted(grid)]}")
    i = grid.index(float(t0)) + steps
    if i >= len(grid):
        raise ConfigError(f"{where}.t0: no temperature {steps} grid step(s) hotter than {fmt(t0)} in the base "
                          f"study (values {[fmt(v) for v in sorted(grid)]}); choose a cooler t0 or add a value")
    return grid[i]


def _derived_name(base: str, role: str, raw: dict) -> str:
    return f"case-{base}-{role}-{digest(raw)}"


def _with_load(raw: dict, load: dict | None) -> dict:
    return deep_merge(raw, {}) if not load else {**copy.deepcopy(raw), "load": copy.deepcopy(load)}


def expand_config(config: dict) -> tuple[dict[str, CaseStudy], dict[str, dict], dict[str, str]]:
    """The config's case studies: (usable case studies, {derived study name: raw study config},
    {case study: error} of those whose base study is missing or wrong for the algorithm).

    Like studies, a case study with an error stops the workflow only when its target is asked
    for; a structural error (a name clash with `figures`) is raised at once."""
    cases, derived, broken = {}, {}, {}
    all_studies = config.get("studies", {}) or {}
    figures = config.get("figures", {}) or {}
    for name, spec in (config.get("case_studies", {}) or {}).items():
        if name in figures:
            raise ConfigError(f"case_studies.{name}: the name is also a figure in `figures`; both would write "
                              f"results/{name}.pdf. Rename one.")
        try:
            case, more = _case_study(name, spec, all_studies)
        except ConfigError as e:
            broken[name] = str(e)
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # a base study the schema let through
            broken[name] = f"case_studies.{name}: its base study cannot be read ({type(e).__name__}: {e})"
            continue
        cases[name] = case
        derived.update(more)
    return cases, derived, broken


def _case_study(name: str, spec: dict, all_studies: dict) -> tuple[CaseStudy, dict[str, dict]]:
    where = f"case_studies.{name}"
    algorithm = spec.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"{where}.algorithm: {algorithm!r}; allowed: {list(ALGORITHMS)}")
    params: dict = {}
    if algorithm == "selection":
        params["alpha"] = int(spec.get("alpha", 2))
        params["select_by"] = spec.get("select_by", "test_error")
        if params["alpha"] < 1:
            raise ConfigError(f"{where}.alpha must be >= 1 retraining epoch, got {params['alpha']}")
        if params["select_by"] not in SELECT_BY:
            raise ConfigError(f"{where}.select_by: {params['select_by']!r}; allowed: {list(SELECT_BY)}")
    if algorithm == "sam_vs_sgd":
        params["rho"] = _number(spec.get("rho", 0.6), f"{where}.rho")
        params["density"] = _number(spec.get("density", 0.07), f"{where}.density")
        if not params["rho"] > 0:
            raise ConfigError(f"{where}.rho must be > 0 (SAM's ρ; 0 is plain SGD), got {params['rho']}")
        if not 0 < params["density"] <= 1:
            raise ConfigError(f"{where}.density must be in (0, 1], got {params['density']}")
    if algorithm == "sam_rho":
        params["small_rho"] = _number(spec.get("small_rho", 0.1), f"{where}.small_rho")
        params["large_rho"] = _number(spec.get("large_rho", 0.8), f"{where}.large_rho")
    panels, derived = [], {}
    for i, p in enumerate(spec.get("panels") or []):
        pw = f"{where}.panels[{i}]"
        base = p.get("study")
        if base not in all_studies:
            raise ConfigError(f"{pw}.study: no study named {base!r}; studies: {sorted(all_studies)}")
        raw = _with_load(all_studies[base], p.get("load"))
        t_axis = AXES.get(raw["temperature"]["axis"])
        l_axis = AXES.get(raw["load"]["axis"])
        if t_axis is None or l_axis is None:
            raise ConfigError(f"{pw}: the base study {base!r} has an unknown axis")
        title = p.get("title") or f"T_{t_axis.name} × L_{l_axis.name}"
        t0 = t1 = None
        if algorithm == "temperature":
            if "t0" not in p:
                raise ConfigError(f"{pw}.t0 is missing: the initial temperature T0 (e.g. 160 epochs, batch 128)")
            t0 = _number(p["t0"], f"{pw}.t0")
            steps = int(p.get("steps", 1))
            if steps < 1:
                raise ConfigError(f"{pw}.steps must be >= 1 grid step, got {steps}")
            t1 = hotter_step(raw["temperature"]["values"], t0, steps, t_axis.hotter, pw)
            # T0 and T0 + ΔT in the base study's order (so a base grid of just these two is reused whole)
            kept = [v for v in raw["temperature"]["values"] if float(v) in (t0, t1)]
            raw = {**raw, "temperature": {"axis": t_axis.name, "values": kept}}
            roles = {"grid": raw}
        elif algorithm == "selection":
            alpha = params["alpha"]
            roles = {"grid": raw,
                     # The first α epochs of retraining at its initial learning rate (the paper's α = 2
                     # lies before the first milestone of any reference schedule).
                     "alpha": deep_merge(raw, {"retrain": {"epochs": alpha, "iterations": 0, "milestones": []}})}
        elif algorithm == "sam_vs_sgd":
            if t_axis.name == "sam_rho":
                raise ConfigError(f"{pw}.study: {base!r} varies SAM's ρ itself; compare SGD and SAM on an epochs "
                                  f"or batch_size study")
            opt = deep_merge({"optimizer": "sgd"}, raw.get("train", {})).get("optimizer")
            if opt != "sgd":
                raise ConfigError(f"{pw}.study: {base!r} trains its dense models with {opt!r}; the comparison "
                                  f"needs an SGD study")
            density = {"axis": "density", "values": [params["density"]]}
            sgd = raw if raw["load"] == density else {**raw, "load": density}
            roles = {"sgd": sgd, "sam": deep_merge(sgd, {"train": {"optimizer": "sam", "rho": params["rho"]}})}
        else:  # sam_rho
            if t_axis.name != "sam_rho":
                raise ConfigError(f"{pw}.study: {base!r} has temperature axis {t_axis.name!r}; tuning ρ by CKA "
                                  f"needs a study over sam_rho (e.g. sam_rho_density)")
            vals = [float(v) for v in raw["temperature"]["values"]]
            for key in ("small_rho", "large_rho"):
                if params[key] not in vals:
                    raise ConfigError(f"{where}.{key}: ρ = {fmt(params[key])} is not a value of {base!r} "
                                      f"({[fmt(v) for v in vals]})")
            roles = {"grid": raw}
        names = {}
        for role, r in roles.items():
            if r == all_studies[base]:
                names[role] = base  # the base study itself: nothing to derive
            else:
                names[role] = _derived_name(base, role, r)
                derived[names[role]] = r
        panels.append(Panel(base, title, names, t0, t1))
    if not panels:
        raise ConfigError(f"{where}.panels is empty: name at least one base study")
    return CaseStudy(name, algorithm, tuple(panels), params), derived


# --- decision logic --------------------------------------------------------------------------

def _at(cells: pd.DataFrame, temperature: float, load: float, column: str) -> float:
    m = cells[np.isclose(cells.temperature, temperature) & np.isclose(cells.load, load)]
    return float(m[column].iloc[0]) if len(m) and column in m and pd.notna(m[column].iloc[0]) else math.nan


def temperature_decisions(cells: pd.DataFrame, t0: float, t1: float, epsilon: float) -> pd.DataFrame:
    """Algorithm 1 for every load of `cells` (temperature, load, lmc, test_error).

    decision: 'raise' (LMC at T0 < ε: Regime I, go to T0 + ΔT = t1), 'keep' (stay at T0) or
    'missing' (no LMC at T0). right: whether the test error actually reached agrees - raising is
    right when the error at t1 is lower than at T0, keeping when it is not lower; None when an
    error is missing."""
    rows = []
    for load in sorted(set(cells.load)):
        lmc = _at(cells, t0, load, "lmc")
        e0, e1 = _at(cells, t0, load, "test_error"), _at(cells, t1, load, "test_error")
        decision = "missing" if not np.isfinite(lmc) else ("raise" if Regimes(lmc_epsilon=epsilon).is_one(lmc) else "keep")
        right = None
        if decision != "missing" and np.isfinite(e0) and np.isfinite(e1):
            right = bool(e1 < e0) if decision == "raise" else bool(e1 >= e0)
        rows.append({"load": load, "lmc": lmc, "regime_I": Regimes(lmc_epsilon=epsilon).is_one(lmc), "decision": decision,
                     "t0": t0, "t1": t1, "test_error_t0": e0, "test_error_t1": e1, "right": right})
    return pd.DataFrame(rows)


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
    The baseline's LMC is measured on its α-epoch copies: LMC ≥ ε stops there (α epochs spent);
    LMC < ε, or no LMC (a diverged baseline), retrains every candidate for α epochs (α·n).
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
        searched = not (np.isfinite(lmc_b) and lmc_b >= epsilon)
        ours = baseline
        if searched:
            column = "test_error" if select_by == "test_error" else "cka"
            ours = _best(candidates, lambda c: _at(alpha_cells, c, load, column), lowest=(select_by == "test_error"))
            ours = baseline if ours is None else ours
        grid = _best(candidates, lambda c: _at(full_cells, c, load, "test_error"), lowest=True)
        rows.append({
            "load": load, "select_by": select_by,
            "baseline": baseline, "baseline_dense_error": dense_error.get(baseline, math.nan),
            "baseline_lmc_alpha": lmc_b, "searched": searched,
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


def summary_lines(case: CaseStudy, table: pd.DataFrame) -> list[str]:
    """What the case study found, in words (the job's log and the README's demo section)."""
    out = []
    if case.algorithm == "temperature":
        for title, t in table.groupby("panel", sort=False):
            judged = t[t.right.notna()]
            out.append(f"{title}: T0 = {fmt(t.t0.iloc[0])} -> {fmt(t.t1.iloc[0])}; raise at "
                       f"{int((t.decision == 'raise').sum())} of {len(t)} loads; decision right in "
                       f"{int(judged.right.astype(bool).sum())} of {len(judged)} loads")
    elif case.algorithm == "selection":
        for title, t in table.groupby("panel", sort=False):
            out.append(f"{title} ({t.select_by.iloc[0]}): mean final test error ours {t.ours_error.mean():.4f}, "
                       f"baseline {t.baseline_error.mean():.4f}, grid search {t.grid_error.mean():.4f}; "
                       f"ours = grid choice in {int((t.ours == t.grid).sum())} of {len(t)} loads; retraining "
                       f"epochs ours {t.ours_epochs.sum():g} vs grid search {t.grid_epochs.sum():g}")
    elif case.algorithm == "sam_rho":
        judged = table[table.selected_is_best.notna()]
        out.append(f"ρ by CKA is the best ρ by test error in {int(judged.selected_is_best.astype(bool).sum())} of "
                   f"{len(judged)} loads; mean test error selected {table.selected_error.mean():.4f}, "
                   f"best {table.best_error.mean():.4f}")
    else:
        for title, t in table.groupby("panel", sort=False):
            sgd, sam = t[t.optimizer == "SGD"], t[t.optimizer == "SAM"]
            out.append(f"{title}: mean test error SGD {sgd.test_error.mean():.4f}, SAM {sam.test_error.mean():.4f}; "
                       f"mean LMC SGD {sgd.lmc.mean():+.4f}, SAM {sam.lmc.mean():+.4f}")
    return out


def case_names_pattern(cases) -> str:
    """The wildcard constraint of the case-study rule: exactly the configured names."""
    return "|".join(re.escape(n) for n in sorted(cases)) or "(?!)"


# --- one case study's table from its studies' tables ------------------------------------------

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


def case_table(case: CaseStudy, panels: list[dict]) -> pd.DataFrame:
    """The case study's result table. panels[i] holds, for case.panels[i]: the cells tables of its
    studies by role ('grid', 'alpha', 'sgd', 'sam'), 'epsilon' (the base study's lmc_epsilon) and,
    for selection, 'dense_error' {temperature: error}, 'candidates', 'alpha_epochs', 'full_epochs'."""
    frames = []
    for panel, data in zip(case.panels, panels):
        if case.algorithm == "temperature":
            t = temperature_decisions(data["grid"], panel.t0, panel.t1, data["epsilon"])
        elif case.algorithm == "selection":
            t = select_models(data["candidates"], data["dense_error"], data["alpha"], data["grid"], data["epsilon"],
                              case.params["select_by"], data["alpha_epochs"], data["full_epochs"])
        elif case.algorithm == "sam_rho":
            t = sam_rho_by_cka(data["grid"], case.params["small_rho"], case.params["large_rho"])
        else:
            cols = ["temperature", "load", "test_error", "lmc", "cka", "regime"]
            t = pd.concat([data["sgd"][cols].assign(optimizer="SGD"),
                           data["sam"][cols].assign(optimizer="SAM", rho=case.params["rho"])], ignore_index=True)
        frames.append(t.assign(panel=panel.title, base_study=panel.base))
    table = pd.concat(frames, ignore_index=True)
    return table[["panel", "base_study", *[c for c in table.columns if c not in ("panel", "base_study")]]]
