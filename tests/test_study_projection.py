"""benchmarks/study_projection.py's translation projection: known token counts and rates give
known hours (the arithmetic README and benchmarks/README.md quote for Figure 14)."""

import importlib.util

import pytest

from conftest import ROOT
from threeregime.plan import load_plan


@pytest.fixture(scope="module")
def projection():
    spec = importlib.util.spec_from_file_location("study_projection", ROOT / "benchmarks" / "study_projection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure14_grid_hours_from_known_rates(projection):
    """wmt14_epochs_density: 1.28 M pairs x 25 tokens = 32 M target tokens an epoch; 10 dense
    epochs; 10 x 6 = 60 cells x 3 copies x 10 epochs = 1,800 retraining epochs; LMC: 3 pairs of
    copies x 11 points x 10,000 sentence pairs x 25 tokens per cell, forward only (a third of
    the retraining rate); jobs: 1 vocabulary + 10 dense segments + 60 x (prune, retrain, landscape)."""
    study = load_plan([], ROOT).study("wmt14_epochs_density")
    r = projection.translation_projection(study, tokens_per_s=80_000, retrain_tokens_per_s=40_000,
                                          tokens_per_pair=25, overhead_s=6)
    assert (r["cells"], r["dense_epochs"], r["retrain_epochs"], r["jobs"]) == (60, 10, 1800, 191)
    assert r["tokens_per_epoch"] == 32_000_000
    assert r["dense_h"] == pytest.approx(10 * 32e6 / 80_000 / 3600, rel=1e-12)        # 1.11 h
    assert r["retrain_h"] == pytest.approx(1800 * 32e6 / 40_000 / 3600, rel=1e-12)    # 400 h
    assert r["lmc_h"] == pytest.approx(60 * 3 * 11 * 10_000 * 25 / 120_000 / 3600, rel=1e-12)  # 1.15 h
    assert r["overhead_h"] == pytest.approx(191 * 6 / 3600, rel=1e-12)
    assert r["total_h"] == pytest.approx(1.1111111 + 400 + 1.1458333 + 0.3183333, abs=1e-6)


def test_toy_study_counts_its_generated_pairs_and_dense_seeds(projection, tmp_path):
    """The translation demo with two dense seeds: train_pairs 0 keeps all 1,000 generated pairs
    (not WMT14's count); each seed is a dense run of 12 one-epoch segments."""
    override = tmp_path / "seeds.yaml"
    override.write_text("studies:\n  demo_translation:\n    seeds: {dense: [1, 2], retrain: [1, 2, 3]}\n")
    study = load_plan([str(ROOT / "presets" / "translation_demo.yaml"), str(override)], ROOT).study("demo_translation")
    r = projection.translation_projection(study, tokens_per_s=1000, retrain_tokens_per_s=1000, tokens_per_pair=10)
    # 4 epochs x 3 densities x 2 seeds = 24 cells, 3 copies x 2 retraining epochs each
    assert (r["cells"], r["dense_epochs"], r["retrain_epochs"]) == (24, 24, 144)
    assert r["tokens_per_epoch"] == 10_000 and r["jobs"] == 1 + 2 * 12 + 3 * 24
    assert r["dense_h"] == pytest.approx(24 * 10_000 / 1000 / 3600, rel=1e-12)
    assert r["lmc_h"] == pytest.approx(24 * 3 * 5 * 200 * 10 / 3000 / 3600, rel=1e-12)
    assert r["overhead_h"] == 0


def test_wmt14_without_a_subsample_needs_its_pair_count(projection):
    from threeregime.spec.corpus import CorpusIdentity

    assert projection.training_pairs(CorpusIdentity("wmt14", "en-de")) == 4_508_785
    with pytest.raises(SystemExit, match="set the study's data.train_pairs"):
        projection.training_pairs(CorpusIdentity("wmt14", "fr-en"))
