"""The case studies through the real Snakefile: one tiny grid, then the case-study targets in one
Snakemake call (digits, a width-0.5 PreResNet-8, 2 epochs, 2 retrain seeds).

Every job is a process (about 3 s of imports), so the test keeps to 17 jobs: Algorithms 1, 2 and
2.1 in full, and SAM's rho by CKA on a one-rho grid shared with the SGD grid (its plumbing; the
rho choice itself is tested on synthetic tables). Figure 5 needs a SAM dense run (another 12
jobs): its derived studies are tested in test_casestudies.py and it runs end to end in the demo
(presets/demo_case_studies.yaml)."""

import pandas as pd
import pytest

from test_workflow import job_counts, smk, write_config

pytestmark = pytest.mark.slow  # runs grids through the real Snakefile

SETTINGS = {
    "data": {"name": "digits", "root": "", "crop_padding": 1, "hflip": False},
    "model": {"depth": 8, "width": 0.5},
    "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 1},
    "retrain": {"epochs": 2, "milestones": [1]},
    "seeds": {"dense": [1], "retrain": [1, 2]},
    "landscape": {"points": 3, "cka_samples": 300, "bn_samples": 500, "error_samples": 500},
}
CONFIG = {
    "default_studies": ["tiny"],
    "studies": {
        "tiny": {"temperature": {"axis": "epochs", "values": [1, 2]},
                 "load": {"axis": "density", "values": [0.1]}, **SETTINGS},
        # rho 0 is tiny's SGD run at epoch 2: its one cell is the grid's
        "tiny_rho": {"temperature": {"axis": "sam_rho", "values": [0]},
                     "load": {"axis": "density", "values": [0.1]}, **SETTINGS},
    },
    "case_studies": {
        "case_t": {"algorithm": "temperature", "panels": [{"study": "tiny", "t0": 2}]},
        "case_sel": {"algorithm": "selection", "select_by": "test_error", "alpha": 1, "panels": [{"study": "tiny"}]},
        "case_cka": {"algorithm": "selection", "select_by": "cka", "alpha": 1, "panels": [{"study": "tiny"}]},
        "case_rho": {"algorithm": "sam_rho", "small_rho": 0, "large_rho": 0, "panels": [{"study": "tiny_rho"}]},
    },
    "engine": {"device": "cpu", "eval_batch_size": 500, "dense_threads": 1},
}
CASES = list(CONFIG["case_studies"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny grid, the dry run of Algorithm 2 after it, then all case studies in one call."""
    d = tmp_path_factory.mktemp("cases")
    cfg = write_config(d, CONFIG)
    smk("-d", str(d), "results/studies/tiny/cells.parquet", "--configfile", cfg, "--cores", "2")
    dry = job_counts(smk("-n", "-d", str(d), "results/case_sel.pdf", "--configfile", cfg).stdout)
    r = smk("-d", str(d), *[f"results/{c}.pdf" for c in CASES], "--configfile", cfg, "--cores", "2")
    real = job_counts(r.stdout + r.stderr)
    return d, dry, real


def test_algorithm2_after_the_grid_plans_only_the_alpha_epoch_retraining(run):
    _, dry, real = run
    # 2 epochs x 1 density retrained for alpha epochs and measured; their table; the case study
    assert dry == {"retrain_cell": 2, "landscape_metrics": 2, "study_table": 1, "case_study": 1}
    # All four: the alpha runs once for Algorithms 2 and 2.1; Algorithm 1 (T0 = 2, T0 + dT = 1)
    # reads the grid itself; SAM's rho grid reuses the grid's cell. Nothing is trained or pruned.
    assert real == {"retrain_cell": 2, "landscape_metrics": 2, "study_table": 2, "case_study": 4}


def test_case_study_tables_follow_the_grids_tables(run):
    d, _, _ = run
    grid = pd.read_parquet(d / "results/studies/tiny/cells.parquet")
    err = {(r.temperature, r.load): r.test_error for r in grid.itertuples()}
    lmc = {(r.temperature, r.load): r.lmc for r in grid.itertuples()}
    lo_hi = {(r.temperature, r.load): (r.lmc_lo, r.lmc_hi) for r in grid.itertuples()}
    t = pd.read_csv(d / "results/case_t.csv")
    assert sorted(t.load) == [0.1] and set(t.t0) == {2} and set(t.t1) == {1}
    for r in t.itertuples():
        assert r.lmc == pytest.approx(lmc[(2, r.load)]) and r.test_error_t1 == pytest.approx(err[(1, r.load)])
        lo, hi = lo_hi[(2, r.load)]
        assert (r.lmc_lo, r.lmc_hi) == pytest.approx((lo, hi), nan_ok=True)  # NaN: one pair, no interval
        # the grid's interval decides: below ε raise, at or above keep, across it (or unknown) no decision
        assert r.decision == ("raise" if hi < -0.05 else "keep" if lo >= -0.05 else "unsettled")
        if r.decision == "unsettled":
            assert pd.isna(r.right)
        else:
            assert r.right == ((r.test_error_t1 < r.test_error_t0) if r.decision == "raise"
                               else (r.test_error_t1 >= r.test_error_t0))
    for name in ("case_sel", "case_cka"):
        s = pd.read_csv(d / f"results/{name}.csv")
        assert len(s) == 1 and set(s.grid_epochs) == {2 * 2}
        for r in s.itertuples():
            best = min((1.0, 2.0), key=lambda temp: err[(temp, r.load)])
            assert r.grid == best and r.grid_error == pytest.approx(err[(best, r.load)])
            assert r.ours_epochs == (2 if r.searched else 1)
            # the α-epoch LMC test stops only when its interval lies at or above ε (NaN: one pair, unknown)
            assert r.lmc_test == ("II" if r.baseline_lmc_alpha_lo >= -0.05 else
                                  "I" if r.baseline_lmc_alpha_hi < -0.05 else "unsettled")
            assert r.searched == (r.lmc_test != "II")
    rho = pd.read_parquet(d / "results/studies/tiny_rho/cells.parquet")
    f6 = pd.read_csv(d / "results/case_rho.csv")
    assert f6.selected_rho.iloc[0] == 0 and f6.selected_is_best.iloc[0]
    assert f6.selected_error.iloc[0] == pytest.approx(err[(2, 0.1)]) == pytest.approx(rho.test_error.iloc[0])


def test_case_study_figures_are_drawn(run):
    d, _, _ = run
    for c in CASES:
        assert (d / f"results/{c}.pdf").stat().st_size > 5_000
        assert (d / f"results/{c}.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(d.rglob("*.tmp"))
    # the Snakemake report files them under "Case studies", each with its algorithm's caption
    report = d / "report.html"
    smk("-d", str(d), "--report", str(report), *[f"results/{c}.pdf" for c in CASES],
        "--configfile", write_config(d, CONFIG))
    html = report.read_text(errors="replace")
    for text in ("Case studies", "which way to move the temperature", "which dense model to prune",
                 "chosen by CKA", "case_rho"):
        assert text in html, text
