"""Translation studies in the workflow (issue 24): the Figure 14 reference study planned per
rule, image studies' paths unchanged, bad input refused before any job, the tables, phase
diagram and Figure 14 drawn from translation results, the adaptive search and the settle option
planned on a translation study, and the offline demo through the real Snakefile (slow)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from test_workflow import job_counts, smk, write_config

TOY = {
    "task": "translation", "temperature": {"axis": "epochs", "values": [1, 2]},
    "load": {"axis": "density", "values": [0.1, 0.5]},
    "data": {"name": "toy", "toy_train": 300, "toy_valid": 20, "vocab_size": 64, "max_len": 16},
    "model": {"arch": "transformer", "depth": 1, "width": 0.125},
    "train": {"epochs": 2, "warmup": 10, "batch_size": 32}, "retrain": {"epochs": 1, "warmup": 10, "batch_size": 32},
    "seeds": {"dense": [1], "retrain": [1, 2]},
    "landscape": {"points": 3, "error_samples": 20, "cka_samples": 100},
}


def test_figure14_plans_one_dense_run_of_10_epochs_and_10_x_6_cells_x_3_seeds(tmp_path):
    """The paper's grid: 1 vocabulary, one dense run in 10 one-epoch segments, 60 cells (10 epochs x
    6 densities), each pruned once and retrained as one job of 3 seeds, measured once."""
    counts = job_counts(smk("-n", "-d", str(tmp_path), "results/figure14.pdf").stdout)
    # prune_selected: the linear layers are a layer selection (rules/prune.smk)
    assert counts == {"vocabulary": 1, "train_dense": 10, "prune_selected": 60, "retrain_cell": 60,
                      "landscape_metrics": 60, "study_table": 1, "paper_figure": 1}
    from threeregime.plan import load_plan

    s = load_plan([]).study("wmt14_epochs_density")
    assert s.base.retrain.seeds == (1, 2, 3) and s.dense_seeds == (1,)
    assert s.loads == (0.05, 0.1, 0.2, 0.4, 0.6, 0.8) and s.temperatures == tuple(range(1, 11))
    assert {c.run.key for _, _, c in s.cells()} == {s.base.run.key}  # every epoch a checkpoint of one run
    assert s.base.run.key.startswith("wmt14deen-n1280000-v32000-l256_transformer6w1_adam_bs128_e10-")
    assert s.base.prune.layers == ("linear",) and s.base.run.train.warmup == 4000


# The sorted planned paths (dense checkpoints, cells, retrainings, landscape files) of every
# study in config.yaml other than the translation one, as planned before tasks existed (main
# at 64a7024): 13866 paths.
IMAGE_PATHS = (13866, "f352a3073eb5a7f7")


def test_image_studies_keep_their_paths():
    from threeregime.plan import load_plan

    plan = load_plan([])
    paths = set()
    for s in plan.studies.values():
        if s.task == "image_classification":
            for _, _, c in s.cells():
                paths |= {c.dense_path, c.cell_dir, c.retrain_dir, c.landscape_path}
    text = "\n".join(sorted(paths))
    assert (len(paths), hashlib.sha256(text.encode()).hexdigest()[:16]) == IMAGE_PATHS


def test_a_missing_wmt14_folder_is_noted_by_a_dry_run_and_refused_before_any_job(tmp_path):
    study = {**TOY, "data": {"name": "wmt14", "pair": "de-en", "train_pairs": 1000, "vocab_size": 64, "max_len": 16,
                             "root": str(tmp_path / "nowhere")}}
    cfg = write_config(tmp_path, {"default_studies": ["w"], "studies": {"w": study}, "engine": {"device": "cpu"}})
    dry = smk("-n", "-d", str(tmp_path), "--configfile", cfg)
    assert "data problem (a real run stops here, before any job)" in dry.stderr
    assert f"WMT14 de-en is not at {tmp_path / 'nowhere' / 'wmt14-de-en'}" in dry.stderr
    assert "data.download: true" in dry.stderr
    real = smk("-d", str(tmp_path), "--configfile", cfg, "--cores", "1", check=False)
    assert real.returncode != 0 and "is not at" in real.stdout + real.stderr
    assert not (tmp_path / "results").exists()  # no job ran


def test_adaptive_search_and_settle_option_plan_on_a_translation_study(tmp_path):
    study = {**TOY, "adaptive": {"per_round": 2}, "settle": {"rounds": 1}}
    cfg = write_config(tmp_path, {"default_studies": ["t"], "studies": {"t": study}, "engine": {"device": "cpu"}})
    # the adaptive search's first round picks its cells (their jobs are planned after it); the
    # settle option's first round reads the whole grid
    for target, first_jobs in (("results/studies/t/adaptive.pdf", {"adaptive_round": 1}),
                               ("results/studies/t/settled.pdf", {"settle_round": 1, "vocabulary": 1,
                                                                  "train_dense": 2, "retrain_cell": 4})):
        counts = job_counts(smk("-n", "-d", str(tmp_path), target, "--configfile", cfg).stdout)
        assert {k: counts.get(k) for k in first_jobs} == first_jobs, counts


def _cell_files(folder, seeds, bleu, test_error, lmc, cka):
    """A retrain_log.csv with the translation columns (BLEU at the last epoch only) and a
    landscape JSON, as the translation jobs write them."""
    rows = []
    for s, b in zip(seeds, bleu):
        rows.append({"retrain_seed": s, "epoch": 1, "lr": 1e-3, "train_loss": 3.0, "train_error": 0.5,
                     "test_loss": 3.1, "test_error": test_error + 0.1, "bleu": np.nan})
        rows.append({"retrain_seed": s, "epoch": 2, "lr": 1e-3, "train_loss": 2.0, "train_error": 0.4,
                     "test_loss": 2.1, "test_error": test_error, "bleu": b})
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "retrain_log.csv", index=False)
    pairs = [{"seed_a": a, "seed_b": b, "lmc": lmc, "cka": cka, "cka_logit": cka} for a, b in ((1, 2), (1, 3), (2, 3))]
    (folder / "landscape.json").write_text(json.dumps({"pairs": pairs, "achieved_density": 0.1}))
    return str(folder / "retrain_log.csv"), str(folder / "landscape.json")


def test_tables_carry_bleu_and_the_figures_draw_it(tmp_path):
    from threeregime.plan import plan_of, read_config
    from threeregime.plots import phase_diagram, quality_lines
    from threeregime.results_schema import CELLS, TABLE, problems
    from threeregime.study import axis_style
    from threeregime.tables import build_tables, cell_key

    base = read_config([])
    plan = plan_of({**base, "studies": {"t": {**TOY, "seeds": {"dense": [1], "retrain": [1, 2, 3]}}},
                    "default_studies": ["t"], "figures": {}, "case_studies": {}})
    s = plan.study("t")
    cells = []
    for i, (t, l, c) in enumerate(s.cells()):
        # BLEU rises with epochs at density 0.5 and falls at 0.1 (the dichotomy of Figure 14)
        bleu = [20 + 5 * t + k for k in range(3)] if l == 0.5 else [12 - 4 * t + k for k in range(3)]
        log, land = _cell_files(tmp_path / f"c{i}", [1, 2, 3], bleu, 0.3, -0.1 if l == 0.1 else 0.0, 0.8)
        cells.append({**cell_key(s, t, l, c), "log": log, "landscape": land})
    table, summary = build_tables(cells, str(tmp_path / "table.parquet"), str(tmp_path / "cells.parquet"), s.regimes)
    assert problems(pd.read_parquet(tmp_path / "table.parquet"), TABLE) == []
    assert problems(pd.read_parquet(tmp_path / "cells.parquet"), CELLS) == []
    copies = table[table.kind == "copy"]
    assert copies.bleu.notna().all() and len(copies) == 12
    got = summary.set_index(["temperature", "load"]).bleu.to_dict()
    assert got == {(1.0, 0.1): 9.0, (1.0, 0.5): 26.0, (2.0, 0.1): 5.0, (2.0, 0.5): 31.0}  # means over 3 seeds
    assert summary.set_index(["temperature", "load"]).regime.to_dict()[(1.0, 0.1)] == "I"
    assert s.entry.quality.column == "bleu" and s.entry.quality.higher_is_better
    paths = {}
    for name, draw, kw in (("phase", phase_diagram, {"quality": s.entry.quality}),
                           ("lines", quality_lines, {"quality": s.entry.quality})):
        pdf, png = str(tmp_path / f"{name}.pdf"), str(tmp_path / f"{name}.png")
        draw(summary, pdf, png, s.regimes, temperature=axis_style(s.temperature), load=axis_style(s.load), **kw)
        paths[name] = png
        assert (tmp_path / f"{name}.png").stat().st_size > 10000
    assert paths


def test_image_tables_have_no_bleu(tmp_path):
    """An image study's log has no bleu column: its copies' and cells' BLEU is missing."""
    from threeregime.regimes import Regimes
    from threeregime.tables import summarize, cell_rows

    log, land = _cell_files(tmp_path / "c", [1, 2, 3], [1, 2, 3], 0.2, 0.0, 0.9)
    pd.read_csv(log).drop(columns=["bleu"]).to_csv(log, index=False)
    key = {"study": "s", "temperature_axis": "epochs", "temperature": 1.0, "load_axis": "density", "load": 0.1,
           "dense_seed": 1, "density": 0.1, "run": "r", "ckpt": "epoch1", "prune": "p", "retrain": "x"}
    rows = pd.DataFrame(cell_rows(key, log, land))
    assert rows[rows.kind == "copy"].bleu.isna().all()
    assert summarize(rows, Regimes()).bleu.isna().all()


# --- the offline demo -------------------------------------------------------------------------------

def test_translation_demo_preset_plans_its_figure(tmp_path):
    counts = job_counts(smk("-n", "-d", str(tmp_path), "results/figure14_demo.pdf", "--configfile",
                            str(ROOT / "presets" / "translation_demo.yaml")).stdout)
    assert counts["vocabulary"] == 1 and counts["train_dense"] == 12 and counts["retrain_cell"] == 12


@pytest.mark.slow
def test_tiny_translation_grid_end_to_end(tmp_path):
    """A 2 x 2 translation grid through the real Snakefile: the vocabulary, dense segments,
    pruning of the linear weights, retraining, translation LMC/CKA, tables with BLEU, phase
    diagram and the Figure 14 lines."""
    cfg = {"default_studies": ["t"], "studies": {"t": TOY}, "engine": {"device": "cpu", "threads": 1},
           "figures": {"fig": {"study": "t", "lines": True}}}
    path = write_config(tmp_path, cfg)
    smk("-d", str(tmp_path), "results/fig.pdf", "results/studies/t/phase.pdf", "--configfile", path, "--cores", "2")
    cells = pd.read_parquet(tmp_path / "results/studies/t/cells.parquet")
    assert len(cells) == 4 and cells.bleu.notna().all() and cells.lmc.notna().all() and cells.cka.notna().all()
    assert list((tmp_path / "results" / "vocab").glob("*/sentencepiece.model"))
    pruned = next((tmp_path / "results" / "cells").glob("*/seed1/epoch1/uniform_d0.1_s*/densities.json"))
    layers = json.loads(pruned.read_text())["layers"]
    assert layers and all("embed" not in name for name in layers)  # only linear weights, the embeddings dense
    assert (tmp_path / "results" / "fig.png").stat().st_size > 10000
    yaml.safe_dump(cells.to_dict("records"))
