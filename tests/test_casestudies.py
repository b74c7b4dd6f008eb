"""The case studies' decision logic on synthetic metric tables, their derived studies, and the
registry of case-study algorithms."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from threeregime.casedecisions import case_table, sam_rho_by_cka, select_models, summary_lines, temperature_decisions
from threeregime.casestudies import (ALGORITHMS, CaseAlgorithm, CaseStudy, Derived, Param, expand_config,
                                     hotter_step)
from threeregime.caseplots import regime_one_runs
from threeregime.spec.common import ConfigError, resolve
from threeregime.study import studies

NAN = math.nan


def cells(rows):
    return pd.DataFrame(rows, columns=["temperature", "load", "lmc", "cka", "test_error"])


# --- Algorithm 1 -------------------------------------------------------------------------------

def test_algorithm1_raises_below_epsilon_keeps_at_the_edge_and_judges_with_the_errors():
    t = cells([
        (160, 0.05, -0.30, 0.5, 0.40), (150, 0.05, -0.2, 0.5, 0.35),   # Regime I, raising helps: right
        (160, 0.10, -0.05, 0.9, 0.20), (150, 0.10, -0.05, 0.9, 0.21),  # LMC = ε exactly: keep; right
        (160, 0.20, -0.0501, 0.9, 0.10), (150, 0.20, 0, 0.9, 0.12),    # just below ε: raise; wrong
        (160, 0.40, 0.00, 0.9, 0.08), (150, 0.40, 0, 0.9, 0.08),       # keep; a tie is not better: right
        (160, 0.80, NAN, NAN, 0.05), (150, 0.80, 0, 0.9, 0.04),        # no LMC: missing, not judged
        (160, 0.90, -0.5, 0.3, NAN), (150, 0.90, 0, 0.9, 0.04),        # raise, error missing: not judged
    ])
    d = temperature_decisions(t, 160, 150, -0.05).set_index("load")
    assert list(d.decision) == ["raise", "keep", "raise", "keep", "missing", "raise"]
    assert list(d.right) == [True, True, False, True, None, None]
    assert list(d.regime_I) == [True, False, True, False, False, True]
    assert d.loc[0.05, "test_error_t1"] == 0.35 and d.loc[0.05, "lmc"] == -0.30


def test_algorithm1_says_unsettled_when_the_lmc_interval_reaches_both_sides_of_epsilon():
    t = pd.DataFrame([
        (160, 0.05, -0.10, -0.15, -0.06, 0.40), (150, 0.05, 0, 0, 0, 0.35),          # interval below ε: raise
        (160, 0.10, -0.06, -0.09, -0.03, 0.30), (150, 0.10, 0, 0, 0, 0.20),          # across ε: unsettled
        (160, 0.20, -0.02, -0.05, 0.01, 0.10), (150, 0.20, 0, 0, 0, 0.12),           # lo = ε exactly: keep
        (160, 0.40, 0.00, NAN, NAN, 0.08), (150, 0.40, 0, 0, 0, 0.08),               # one pair: unsettled
    ], columns=["temperature", "load", "lmc", "lmc_lo", "lmc_hi", "test_error"])
    d = temperature_decisions(t, 160, 150, -0.05).set_index("load")
    assert list(d.decision) == ["raise", "unsettled", "keep", "unsettled"]
    assert list(d.right) == [True, None, True, None]
    assert list(d.regime_I) == [True, True, False, False]  # the mean alone
    assert (d.loc[0.10, "lmc_lo"], d.loc[0.10, "lmc_hi"]) == (-0.09, -0.03)
    case = CaseStudy.from_dict({"name": "f3", "algorithm": "temperature", "params": {},
                                "panels": [{"base": "g", "title": "T", "studies": {"grid": "g"}, "t0": 160,
                                            "t1": 150}]})
    line = summary_lines(case, case_table(case, [{"grid": t, "epsilon": -0.05}]))[0]
    assert "raise at 1 of 4 loads, unsettled at 2 (0.1, 0.4: LMC interval across ε)" in line
    assert line.endswith("decision right in 2 of 2 loads")


def test_hotter_step_is_one_grid_step_towards_higher_temperature():
    epochs = [10, 20, 150, 160]
    assert hotter_step(epochs, 160, 1, "low", "x") == 150
    assert hotter_step(epochs, 160, 2, "low", "x") == 20
    assert hotter_step([16, 64, 92, 128, 512], 128, 1, "low", "x") == 92
    assert hotter_step([0, 0.1, 0.2], 0.1, 1, "high", "x") == 0.2
    with pytest.raises(ConfigError, match="not a temperature"):
        hotter_step(epochs, 155, 1, "low", "case_studies.f.panels[0]")
    with pytest.raises(ConfigError, match="hotter than 10"):
        hotter_step(epochs, 10, 1, "low", "x")


def test_regime_one_boxes_cover_consecutive_loads():
    assert regime_one_runs([True, True, False, True, False]) == [(0, 1), (3, 3)]
    assert regime_one_runs([False, False]) == [] and regime_one_runs([True]) == [(0, 0)]


# --- Algorithms 2 and 2.1 ----------------------------------------------------------------------

DENSE = {10: 0.30, 20: 0.20, 30: 0.10}  # the baseline is epoch 30 (lowest dense error)
ALPHA = cells([
    # density 0.05: the baseline's α-epoch LMC is Regime I: search; 2 has the lowest α-epoch error,
    # 1 the highest CKA
    (10, 0.05, -0.01, 0.95, 0.50), (20, 0.05, -0.2, 0.80, 0.40), (30, 0.05, -0.40, 0.60, 0.60),
    # density 0.5: LMC exactly ε: the baseline stands
    (10, 0.5, 0, 0.99, 0.10), (20, 0.5, 0, 0.99, 0.05), (30, 0.5, -0.05, 0.97, 0.20),
    # density 0.9: the baseline's α cell diverged (NaN): search; ties in error and CKA -> the first
    (10, 0.9, 0, 0.9, 0.15), (20, 0.9, 0, 0.9, 0.15), (30, 0.9, NAN, NAN, NAN),
])
FULL = cells([
    (10, 0.05, -0.02, 0.9, 0.30), (20, 0.05, -0.1, 0.8, 0.25), (30, 0.05, -0.5, 0.5, 0.45),
    (10, 0.5, 0, 0.99, 0.08), (20, 0.5, 0, 0.99, 0.06), (30, 0.5, -0.01, 0.99, 0.07),
    (10, 0.9, 0, 0.99, 0.05), (20, 0.9, 0, 0.99, 0.05), (30, 0.9, 0, 0.99, NAN),
])


def test_algorithm2_searches_only_in_regime_one_and_counts_retraining_epochs():
    r = select_models([10, 20, 30], DENSE, ALPHA, FULL, -0.05, "test_error", 2, 160).set_index("load")
    assert list(r.baseline) == [30, 30, 30]
    assert list(r.searched) == [True, False, True]
    assert list(r.ours) == [20, 30, 10]
    assert list(r.grid) == [20, 20, 10]  # the NaN cell is never chosen; the tie goes to the first
    assert r.loc[0.05, "ours_error"] == 0.25 and r.loc[0.05, "baseline_error"] == 0.45
    assert r.loc[0.5, "ours_error"] == 0.07 and r.loc[0.5, "grid_error"] == 0.06
    assert list(r.ours_epochs) == [6, 2, 6] and list(r.grid_epochs) == [480, 480, 480]
    assert list(r.baseline_epochs) == [0, 0, 0]
    assert r.loc[0.05, "baseline_lmc_alpha"] == -0.40 and r.loc[0.05, "ours_lmc"] == -0.1


def test_algorithm2_searches_when_the_baselines_lmc_test_is_unsettled():
    # density 0.5's baseline LMC is ε exactly (a stop by its mean); an interval across ε makes
    # the test unsettled: the search runs (and may pick the baseline again)
    alpha = ALPHA.assign(lmc_lo=ALPHA.lmc - 0.01, lmc_hi=ALPHA.lmc + 0.01)
    r = select_models([10, 20, 30], DENSE, alpha, FULL, -0.05, "test_error", 2, 160).set_index("load")
    assert list(r.lmc_test) == ["I", "unsettled", "missing"]
    assert list(r.searched) == [True, True, True] and list(r.ours_epochs) == [6, 6, 6]
    assert list(r.ours) == [20, 20, 10]
    assert r.loc[0.5, "baseline_lmc_alpha_lo"] == pytest.approx(-0.06)
    # without interval columns the mean decides, as before
    plain = select_models([10, 20, 30], DENSE, ALPHA, FULL, -0.05, "test_error", 2, 160)
    assert list(plain.lmc_test) == ["I", "II", "missing"]


def test_algorithm2_1_takes_the_highest_cka_instead():
    r = select_models([10, 20, 30], DENSE, ALPHA, FULL, -0.05, "cka", 2, 160).set_index("load")
    assert list(r.ours) == [10, 30, 10]
    assert r.loc[0.05, "ours_error"] == 0.30


def test_selection_refuses_what_it_cannot_decide():
    with pytest.raises(ValueError, match="select_by"):
        select_models([10], DENSE, ALPHA, FULL, -0.05, "loss", 2, 160)
    with pytest.raises(ValueError, match="finite dense test error"):
        select_models([10, 20], {10: NAN}, ALPHA, FULL, -0.05, "test_error", 2, 160)


# --- SAM's rho by CKA -------------------------------------------------------------------------

def test_sam_rho_by_cka_picks_the_highest_cka_and_says_whether_it_was_best():
    t = cells([
        (0, 0.05, -0.5, 0.5, 0.40), (0.4, 0.05, -0.1, 0.8, 0.30), (0.8, 0.05, 0, 0.9, 0.25),
        (0, 0.4, 0, 0.95, 0.08), (0.4, 0.4, 0, 0.95, 0.09), (0.8, 0.4, 0, 0.90, 0.07),  # CKA tie: smaller ρ
        (0, 0.8, 0, NAN, 0.06), (0.4, 0.8, 0, 0.97, 0.05), (0.8, 0.8, 0, NAN, NAN),
    ])
    r = sam_rho_by_cka(t, 0, 0.8).set_index("load")
    assert list(r.selected_rho) == [0.8, 0.0, 0.4]
    assert list(r.best_rho) == [0.8, 0.8, 0.4]
    assert list(r.selected_is_best) == [True, False, True]
    assert r.loc[0.05, "small_error"] == 0.40 and r.loc[0.4, "large_error"] == 0.07
    assert np.isnan(r.loc[0.8, "large_error"])


# --- config -> derived studies -------------------------------------------------------------------

def base_config(case_studies, **studies_extra):
    grid = {"temperature": {"axis": "epochs", "values": [10, 20, 30]},
            "load": {"axis": "density", "values": [0.05, 0.5]},
            "train": {"epochs": 30, "milestones": [20]}}
    rho = {"temperature": {"axis": "sam_rho", "values": [0, 0.4, 0.8]}, "load": {"axis": "density", "values": [0.1]},
           "train": {"epochs": 30, "milestones": [20]}}
    import yaml
    from conftest import ROOT

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["studies"] = {"grid": grid, "rho": rho, **studies_extra}
    cfg["case_studies"] = case_studies
    cfg["figures"] = {}
    cfg["default_studies"] = []
    return cfg


def expanded(cfg):
    cases, derived, broken = expand_config(cfg)
    cfg["studies"].update(derived)
    ok, bad = studies(cfg)
    return cases, ok, broken, bad


def test_algorithms_2_and_2_1_share_their_alpha_epoch_runs_and_the_grid():
    cfg = base_config({"a": {"algorithm": "selection", "select_by": "test_error", "alpha": 2,
                             "panels": [{"study": "grid"}]},
                       "b": {"algorithm": "selection", "select_by": "cka", "alpha": 2,
                             "panels": [{"study": "grid"}]}})
    cases, ok, broken, bad = expanded(cfg)
    assert not broken and not bad
    pa, pb = cases["a"].panels[0], cases["b"].panels[0]
    assert pa.studies == pb.studies and pa.studies["grid"] == "grid"
    alpha = ok[pa.studies["alpha"]]
    assert alpha.base.retrain.train.epochs == 2 and alpha.base.retrain.train.milestones == ()
    grid = ok["grid"]
    # same dense runs and pruned cells as the grid; only the retraining differs
    pairs = [(a.cell_dir, g.cell_dir, a.retrain_dir != g.retrain_dir) for (_, _, a), (_, _, g)
             in zip(alpha.cells(), grid.cells())]
    assert all(x == y and differs for x, y, differs in pairs)


def test_temperature_panel_keeps_t0_and_one_step_hotter_on_the_base_grid():
    cfg = base_config({"f3": {"algorithm": "temperature", "panels": [
        {"study": "grid", "t0": 30}, {"study": "grid", "t0": 30, "load": {"axis": "width", "values": [0.5, 1]}}]}})
    cases, ok, _, bad = expanded(cfg)
    p0, p1 = cases["f3"].panels
    assert (p0.t0, p0.t1) == (30, 20) and not bad
    s0, s1 = ok[p0.studies["grid"]], ok[p1.studies["grid"]]
    assert s0.temperatures == (20, 30) and s0.loads == (0.05, 0.5)
    assert s1.load.name == "width" and s1.loads == (0.5, 1.0)
    grid_cells = {c.retrain_dir for _, _, c in ok["grid"].cells()}
    assert {c.retrain_dir for _, _, c in s0.cells()} <= grid_cells  # reused, not recomputed


def test_sam_cases_derive_sam_runs_and_check_their_base_study():
    cfg = base_config({"f5": {"algorithm": "sam_vs_sgd", "rho": 0.6, "density": 0.05, "panels": [{"study": "grid"}]},
                       "f6": {"algorithm": "sam_rho", "small_rho": 0, "large_rho": 0.8, "panels": [{"study": "rho"}]},
                       "bad6": {"algorithm": "sam_rho", "panels": [{"study": "grid"}]},
                       "bad_rho": {"algorithm": "sam_rho", "small_rho": 0.3, "panels": [{"study": "rho"}]},
                       "bad_t0": {"algorithm": "temperature", "panels": [{"study": "grid", "t0": 10}]},
                       "no_study": {"algorithm": "temperature", "panels": [{"study": "nope", "t0": 10}]}})
    cases, ok, broken, _ = expanded(cfg)
    sam = ok[cases["f5"].panels[0].studies["sam"]]
    assert sam.base.run.train.optimizer == "sam" and sam.base.run.train.rho == 0.6 and sam.loads == (0.05,)
    assert cases["f6"].panels[0].studies == {"grid": "rho"}
    assert "sam_rho" in broken["bad6"] and "0.3" in broken["bad_rho"] and "hotter" in broken["bad_t0"]
    assert "no study named 'nope'" in broken["no_study"]


def test_a_case_study_named_like_a_figure_is_refused():
    cfg = base_config({"figure2": {"algorithm": "sam_rho", "panels": [{"study": "rho"}]}})
    cfg["figures"] = {"figure2": {"study": "grid"}}
    with pytest.raises(ConfigError, match="figure2"):
        expand_config(cfg)


def test_case_table_labels_panels_and_round_trips_the_case():
    case = CaseStudy.from_dict({"name": "f3", "algorithm": "temperature", "params": {},
                                "panels": [{"base": "grid", "title": "T × L", "studies": {"grid": "g"},
                                            "t0": 160, "t1": 150}]})
    assert CaseStudy.from_dict(case.as_dict()) == case
    t = case_table(case, [{"grid": cells([(160, 0.1, -0.3, 0.5, 0.3), (150, 0.1, 0, 0.9, 0.2)]), "epsilon": -0.05}])
    assert list(t.columns[:2]) == ["panel", "base_study"] and t.panel.iloc[0] == "T × L"
    assert t.decision.iloc[0] == "raise" and bool(t.right.iloc[0])


def test_every_case_study_figure_draws_from_synthetic_tables(tmp_path):
    """Each figure type from a two-panel table (a regime-I run to box, NaN cells, the ρ stars)."""
    from threeregime.caseplots import draw_case_study

    info = [{"epsilon": -0.05, "temperature_axis": "epochs", "load_axis": "density", "candidates": [10, 20, 30]},
            {"epsilon": -0.05, "temperature_axis": "batch_size", "load_axis": "width", "candidates": [10, 20, 30]}]
    grid = cells([(t, l, -0.3 if l < 0.3 and t == 30 else 0.0, 0.9, 0.1 + l / 10 + t / 1000)
                  for t in (10, 20, 30) for l in (0.05, 0.1, 0.5)]).assign(regime="II-B")
    panels = [{"base": "a", "title": "T_epochs × L_density", "studies": {"grid": "a", "alpha": "b", "sgd": "a",
                                                                            "sam": "c"}, "t0": 30, "t1": 20},
              {"base": "d", "title": "T_batch × L_width", "studies": {"grid": "d", "alpha": "e", "sgd": "d",
                                                                       "sam": "f"}, "t0": 30, "t1": 20}]
    data = {"grid": grid, "alpha": grid, "sgd": grid[grid.load == 0.1], "sam": grid[grid.load == 0.1],
            "epsilon": -0.05, "candidates": [10, 20, 30], "dense_error": {10: 0.3, 20: 0.2, 30: 0.1},
            "alpha_epochs": 2, "full_epochs": 160}
    rho_grid = grid.assign(temperature=grid.temperature / 50)
    for name, algorithm, params, ps, ds in [
        ("f3", "temperature", {}, panels, [data, data]),
        ("f4", "selection", {"alpha": 2, "select_by": "test_error"}, panels, [data, data]),
        ("f5", "sam_vs_sgd", {"rho": 0.6, "density": 0.1}, panels, [data, data]),
        ("f6", "sam_rho", {"small_rho": 0.2, "large_rho": 0.6}, panels[:1], [{**data, "grid": rho_grid}]),
    ]:
        case = CaseStudy.from_dict({"name": name, "algorithm": algorithm, "params": params, "panels": ps})
        table = case_table(case, ds)
        draw_case_study(case, table, ds, info[:len(ps)], str(tmp_path / f"{name}.pdf"), str(tmp_path / f"{name}.png"))
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    f3 = case_table(CaseStudy.from_dict({"name": "f3", "algorithm": "temperature", "params": {}, "panels": panels}),
                    [data, data])
    assert list(f3[f3.panel == "T_epochs × L_density"].decision) == ["raise", "raise", "keep"]


# --- the registry ----------------------------------------------------------------------------------

def test_registry_names_match_the_config_schema(repo_root):
    import yaml

    schema = yaml.safe_load((repo_root / "schemas" / "config.schema.yaml").read_text())
    case = schema["properties"]["case_studies"]["additionalProperties"]
    assert case["properties"]["algorithm"]["enum"] == list(ALGORITHMS)
    # every parameter of an entry is a key the schema lets a case study have
    assert {p.name for e in ALGORITHMS.values() for p in e.params} <= set(case["properties"])


def test_every_entry_names_functions_that_exist():
    for name, e in ALGORITHMS.items():
        for ref in (e.decide, e.summary, e.draw, *([e.panel_data] if e.panel_data else [])):
            assert callable(resolve(ref)), (name, ref)
        assert e.base_role in e.roles, name


def test_planning_imports_neither_pandas_matplotlib_nor_torch(repo_root):
    code = ("import sys; import threeregime.plan; import threeregime.casestudies; "
            "print([m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_parameters_are_defaulted_and_checked_with_their_messages():
    cfg = base_config({"sel": {"algorithm": "selection", "panels": [{"study": "grid"}]},
                       "f5": {"algorithm": "sam_vs_sgd", "panels": [{"study": "grid"}]},
                       "f6": {"algorithm": "sam_rho", "small_rho": 0, "panels": [{"study": "rho"}]},
                       "bad_alpha": {"algorithm": "selection", "alpha": 0, "panels": [{"study": "grid"}]},
                       "bad_by": {"algorithm": "selection", "select_by": "loss", "panels": [{"study": "grid"}]},
                       "bad_rho": {"algorithm": "sam_vs_sgd", "rho": 0, "panels": [{"study": "grid"}]},
                       "bad_density": {"algorithm": "sam_vs_sgd", "density": 1.5, "panels": [{"study": "grid"}]},
                       "str_rho": {"algorithm": "sam_vs_sgd", "rho": "1e-3", "panels": [{"study": "grid"}]},
                       "unknown": {"algorithm": "annealing", "panels": [{"study": "grid"}]},
                       "no_panels": {"algorithm": "selection", "panels": []}})
    cases, _, broken, _ = expanded(cfg)
    assert cases["sel"].params == {"alpha": 2, "select_by": "test_error"}
    assert cases["f5"].params == {"rho": 0.6, "density": 0.07}
    assert cases["f6"].params == {"small_rho": 0.0, "large_rho": 0.8}
    assert broken["bad_alpha"] == "case_studies.bad_alpha.alpha must be >= 1 retraining epoch, got 0"
    assert broken["bad_by"] == "case_studies.bad_by.select_by: 'loss'; allowed: ['test_error', 'cka']"
    assert broken["bad_rho"] == "case_studies.bad_rho.rho must be > 0 (SAM's ρ; 0 is plain SGD), got 0.0"
    assert broken["bad_density"] == "case_studies.bad_density.density must be in (0, 1], got 1.5"
    assert "not a number (YAML reads 1e-3 as a string" in broken["str_rho"]
    assert broken["unknown"] == ("case_studies.unknown.algorithm: 'annealing'; allowed: "
                                 "['temperature', 'selection', 'sam_vs_sgd', 'sam_rho']")
    assert "panels is empty" in broken["no_panels"]
    # what the workflow reads of each: the base grid's role, and dense checkpoints for selection only
    assert cases["sel"].base_study(cases["sel"].panels[0]) == "grid"
    assert cases["f5"].base_study(cases["f5"].panels[0]) == cases["f5"].panels[0].studies["sgd"]
    assert [n for n, e in ALGORITHMS.items() if e.reads_dense] == ["selection"]


def _lowest_error(cells, epsilon):
    i = cells.test_error.idxmin()
    return pd.DataFrame([{"load": cells.load[i], "temperature": cells.temperature[i], "epsilon": epsilon}])


def test_an_algorithm_is_one_entry(monkeypatch):
    """A new algorithm: its entry is all that expand_config, case_table, summary_lines and
    draw_case_study need."""
    from threeregime.caseplots import draw_case_study

    drawn = []
    entry = CaseAlgorithm(
        params=(Param("cap", 1.0, lambda v, key: float(v), valid=lambda c: c > 0, rule="must be > 0"),),
        roles=("grid", "twin"),
        derive=lambda c: Derived({"grid": c.raw, "twin": {**c.raw, "seeds": {"dense": [7]}}}),
        decide=_lowest_error,
        decide_args=lambda params, panel, data: (data["grid"], data["epsilon"]),
        summary=lambda case, table: [f"{len(table)} rows, cap {case.params['cap']:g}"],
        draw=lambda table, info, pdf, png, title, **kw: drawn.append((title, pdf, len(info))),
        title=lambda params: f"lowest error under {params['cap']:g}")
    monkeypatch.setitem(ALGORITHMS, "lowest", entry)
    cfg = base_config({"f9": {"algorithm": "lowest", "panels": [{"study": "grid"}]},
                       "f9bad": {"algorithm": "lowest", "cap": -1, "panels": [{"study": "grid"}]}})
    cases, ok, broken, bad = expanded(cfg)
    assert broken == {"f9bad": "case_studies.f9bad.cap must be > 0, got -1.0"} and not bad
    case = cases["f9"]
    assert case.panels[0].studies["grid"] == "grid" and case.panels[0].studies["twin"] in ok
    assert CaseStudy.from_dict(case.as_dict()) == case
    grid = cells([(10, 0.05, 0, 0.9, 0.3), (20, 0.05, 0, 0.9, 0.2)])
    table = case_table(case, [{"grid": grid, "twin": grid, "epsilon": -0.05}])
    assert list(table.columns) == ["panel", "base_study", "load", "temperature", "epsilon"]
    assert table.temperature.iloc[0] == 20 and summary_lines(case, table) == ["1 rows, cap 1"]
    draw_case_study(case, table, [], [{}], "x.pdf", "x.png")
    assert drawn == [("f9: lowest error under 1", "x.pdf", 1)]
