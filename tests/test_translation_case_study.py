"""Algorithm 1 (the `temperature` case study) on a translation study: it plans through the real
Snakefile (dry run), and decides on a translation table by the LMC on the token error, judging
each decision by BLEU (higher is better), as its figure draws it."""

import pytest

from test_translation_workflow import TOY, _cell_files
from test_workflow import job_counts, smk, write_config

STUDY = {**TOY, "temperature": {"axis": "epochs", "values": [1, 2, 3]}, "train": {**TOY["train"], "epochs": 3},
         "seeds": {"dense": [1], "retrain": [1, 2, 3]}}
CASE = {"algorithm": "temperature", "panels": [{"study": "t", "t0": 3}]}  # T0 = 3 epochs, T0 + ΔT = 2


def _config():
    return {"default_studies": ["t"], "studies": {"t": STUDY}, "engine": {"device": "cpu"}, "figures": {},
            "case_studies": {"alg1": CASE}}


def test_algorithm1_on_a_translation_study_plans_only_t0_and_one_step_hotter(tmp_path):
    cfg = write_config(tmp_path, _config())
    counts = job_counts(smk("-n", "-d", str(tmp_path), "results/alg1.pdf", "--configfile", cfg).stdout)
    # the dense run's 3 one-epoch segments (epoch 3 needs 1 and 2); cells at 2 and 3 epochs x 2 densities
    assert counts == {"vocabulary": 1, "train_dense": 3, "prune_selected": 4, "retrain_cell": 4,
                      "landscape_metrics": 4, "study_table": 1, "case_study": 1}


def test_panel_info_names_bleu_for_translation_and_nothing_new_for_images():
    from threeregime.casestudies import panel_info
    from threeregime.plan import load_plan, plan_of, read_config

    plan = plan_of({**read_config([]), **_config()})
    info = panel_info(plan.study(plan.case("alg1").base_study(plan.case("alg1").panels[0])))
    assert info["quality"] == {"column": "bleu", "label": "BLEU", "higher_is_better": True, "scale": 1.0}
    assert info["candidates"] == [2.0, 3.0]  # the derived grid: T0 and T0 + ΔT only
    # an image study's info is what it was before tasks existed (a case study's params, so its
    # rerun trigger, unchanged)
    image = panel_info(load_plan([]).study("epochs_density"))
    assert list(image) == ["epsilon", "confidence", "temperature_axis", "load_axis", "candidates"]


def test_algorithm1_decides_on_a_translation_table_by_token_error_lmc_and_judges_by_bleu(tmp_path):
    from threeregime.casedecisions import case_table, summary_lines
    from threeregime.caseplots import draw_case_study
    from threeregime.casestudies import panel_info
    from threeregime.plan import plan_of, read_config
    from threeregime.tables import build_tables, cell_key

    plan = plan_of({**read_config([]), **_config()})
    case = plan.case("alg1")
    s = plan.study(case.base_study(case.panels[0]))
    assert (case.panels[0].t0, case.panels[0].t1) == (3.0, 2.0)
    # density 0.1: LMC -0.2 < ε = -0.05 (Regime I: raise the temperature, train fewer epochs), and
    # BLEU is higher at 2 epochs than at 3 (right; the token error, worse at 2, would call it wrong).
    # density 0.5: LMC 0 (keep 3 epochs), BLEU higher at 3 (right).
    bleu = {(2, 0.1): 14, (3, 0.1): 10, (2, 0.5): 25, (3, 0.5): 30}
    token_error = {(2, 0.1): 0.5, (3, 0.1): 0.4, (2, 0.5): 0.35, (3, 0.5): 0.3}
    cells = []
    for i, (t, load, c) in enumerate(s.cells()):
        log, land = _cell_files(tmp_path / f"c{i}", [1, 2, 3], [bleu[(t, load)] + k for k in (-1, 0, 1)],
                                token_error[(t, load)], -0.2 if load == 0.1 else 0.0, 0.8)
        cells.append({**cell_key(s, t, load, c), "log": log, "landscape": land})
    _, summary = build_tables(cells, str(tmp_path / "table.parquet"), str(tmp_path / "cells.parquet"), s.regimes)
    info = panel_info(s)
    data = {"grid": summary, "epsilon": info["epsilon"], "candidates": info["candidates"], "quality": info["quality"]}
    table = case_table(case, [data]).set_index("load")
    assert list(table.decision) == ["raise", "keep"] and list(table.regime_I) == [True, False]
    assert table.lmc.tolist() == pytest.approx([-0.2, 0.0])
    assert table.bleu_t0.tolist() == [10.0, 30.0] and table.bleu_t1.tolist() == [14.0, 25.0]
    # the validation token error kept beside (the mean of the last epochs, as for images)
    assert table.test_error_t0.tolist() == pytest.approx([0.45, 0.35])
    assert table.right.tolist() == [True, True]
    assert "decision right in 2 of 2 loads" in summary_lines(case, table.reset_index())[0]
    # the same cells judged by the token error (lower is better) instead: raising at 0.1 is wrong
    by_error = case_table(case, [{**data, "quality": None}]).set_index("load")
    assert by_error.right.tolist() == [False, True] and "bleu_t0" not in by_error
    pdf, png = tmp_path / "alg1.pdf", tmp_path / "alg1.png"
    draw_case_study(case, table.reset_index(), [data], [info], str(pdf), str(png))
    assert pdf.stat().st_size > 5000 and png.stat().st_size > 20000


def test_sgd_and_sam_comparisons_are_refused_on_translation_while_planning():
    """Figures 5 and 6 compare SGD and SAM; translation trains with Adam only, so a translation
    study with another optimizer, a sam_rho axis, or an SGD-vs-SAM panel on it is refused while
    planning, before any job (the training loop would refuse it only when the job runs)."""
    from threeregime.plan import plan_of, read_config
    from threeregime.spec.common import ConfigError

    base = read_config([])
    sgd = plan_of({**base, "studies": {"t": {**STUDY, "retrain": {**STUDY["retrain"], "optimizer": "sgd"}}},
                   "default_studies": ["t"], "figures": {}, "case_studies": {}})
    assert sgd.broken["t"] == ("studies.t.retrain.optimizer: translation studies train with adam only, got 'sgd': "
                               "remove it or set retrain.optimizer: adam")
    rho = {**STUDY, "temperature": {"axis": "sam_rho", "values": [0.1, 0.8]}}
    plan = plan_of({**base, "studies": {"t": STUDY, "r": rho}, "default_studies": ["t"], "figures": {},
                    "case_studies": {"f5": {"algorithm": "sam_vs_sgd", "panels": [{"study": "t"}]},
                                     "f6": {"algorithm": "sam_rho", "panels": [{"study": "r"}]}}})
    assert "the sam_rho axis trains with SAM" in plan.broken["r"]
    with pytest.raises(ConfigError, match="'t' trains its dense models with 'adam'; the comparison needs an SGD study"):
        plan.case("f5")
    with pytest.raises(ConfigError, match="translation studies train with adam only: choose another axis"):
        plan.case("f6")
