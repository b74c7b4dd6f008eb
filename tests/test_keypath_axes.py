"""Any scalar hyperparameter as a temperature or load axis, named by its key path (train.lr,
model.width, data.train_fraction, ...), and the user's own data (an image folder) through the
real Snakefile. The named axes and the reference studies' paths stay as they were."""

import copy
import hashlib
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from test_data_sets import write_image_folder
from test_workflow import TINY_STUDY, job_counts, smk, tiny, write_config
from threeregime.plan import plan_of
from threeregime.spec.common import deep_merge
from threeregime.study import AXES, axis_named, data_locations, key_paths, studies

REFERENCE = yaml.safe_load((ROOT / "config.yaml").read_text())
LR = {"axis": "train.lr", "values": [0.05, 0.1, 0.2], "hotter": "higher"}
DENSITY = {"axis": "density", "values": [0.1, 0.5]}


def with_study(study: dict) -> dict:
    """The reference defaults with two studies: Figure 2's grid and `study` named `s` (planning
    the whole reference config for each case would take seconds)."""
    cfg = {k: copy.deepcopy(v) for k, v in REFERENCE.items() if k not in ("figures", "case_studies")}
    cfg["studies"] = {"epochs_density": copy.deepcopy(REFERENCE["studies"]["epochs_density"]), "s": study}
    return cfg


def figure2():
    return studies(with_study({"temperature": {"axis": "epochs", "values": [160]}, "load": DENSITY}))[0][
        "epochs_density"]


def resolved(study: dict):
    ok, broken = studies(with_study(study))
    assert "s" in ok, broken.get("s")
    return ok["s"]


def refused(study: dict) -> str:
    ok, broken = studies(with_study(study))
    assert "s" not in ok
    return broken["s"]


def test_reference_studies_keep_every_path():
    """The sha256 of every landscape path the reference config's image studies plan (4,982 of
    them), taken before key-path axes, data forms and tasks existed: a new default changed no key."""
    plan = plan_of(REFERENCE)
    paths = sorted(c.landscape_path for s in plan.studies.values() if s.task == "image_classification"
                   for *_, c in s.cells())
    assert len(paths) == 4982 and not plan.broken
    assert hashlib.sha256("\n".join(paths).encode()).hexdigest() == \
        "ca963e12635f82dc56838416ba803c9bafd587215f20dd23dd7dea72b9195345"


def test_a_key_path_temperature_is_one_dense_run_per_value():
    s = resolved({"temperature": LR, "load": DENSITY})
    assert (s.temperature.name, s.temperature.kind, s.temperature.hotter) == ("train.lr", "temperature", "high")
    assert s.temperature.label == "Temperature (train.lr)"
    runs = {t: s.cell(t, 0.1, 1).run for t in s.temperatures}
    assert [r.train.lr for r in runs.values()] == [0.05, 0.1, 0.2]
    assert len({r.key for r in runs.values()}) == 3
    assert {s.cell(t, 0.1, 1).ckpt for t in s.temperatures} == {"epoch160"}  # each run's last checkpoint
    # lr 0.1 is the default: the very run (and cell) the reference epochs x density grid makes at 160 epochs
    fig2 = figure2()
    assert s.cell(0.1, 0.1, 1) == fig2.cell(160, 0.1, 1)
    # the retraining is not touched by the dense lr
    assert {s.cell(t, 0.1, 1).retrain.key for t in s.temperatures} == {fig2.base.retrain.key}


def test_a_key_path_changes_only_its_own_part_of_a_cell():
    # retrain.lr: one dense run, pruned once per density, retrained once per value
    s = resolved({"temperature": {"axis": "retrain.lr", "values": [0.01, 0.1], "hotter": "higher"},
                  "load": DENSITY})
    a, b = s.cell(0.01, 0.1, 1), s.cell(0.1, 0.1, 1)
    assert a.run == b.run and a.cell_dir == b.cell_dir and a.retrain.key != b.retrain.key
    assert (a.retrain.train.lr, b.retrain.train.lr, a.run.train.lr) == (0.01, 0.1, 0.1)
    # model.width and prune.density as key paths make the named axes' cells
    named = resolved({"temperature": {"axis": "epochs", "values": [40]}, "load": {"axis": "width", "values": [2]}})
    path = resolved({"temperature": {"axis": "epochs", "values": [40]}, "load": {"axis": "model.width", "values": [2]}})
    assert path.cell(40, 2, 1) == named.cell(40, 2, 1) and path.load.label == "Load (model.width)"
    dens = resolved({"temperature": {"axis": "epochs", "values": [40]}, "load": {"axis": "prune.density",
                                                                                  "values": [0.1]}})
    assert dens.cell(40, 0.1, 1) == figure2().cell(40, 0.1, 1)
    # a load over a train key keeps the epochs axis' checkpoint: the run changes, not the epoch
    wd = resolved({"temperature": {"axis": "epochs", "values": [40, 160]},
                   "load": {"axis": "train.weight_decay", "values": [0.0, 0.0005]}})
    c = wd.cell(40, 0.0005, 1)
    assert (c.ckpt, c.run.train.weight_decay) == ("epoch40", 0.0005) and wd.cell(160, 0.0, 1).ckpt == "epoch160"
    assert wd.cell(40, 0.0, 1).run.key != c.run.key
    # integer fields take whole numbers: batch size 32.0 is the run of 32
    bs = resolved({"temperature": {"axis": "train.batch_size", "values": [32.0, 128], "hotter": "lower"},
                   "load": DENSITY})
    assert bs.temperatures == (32, 128) and bs.cell(32, 0.1, 1).run.train.batch_size == 32


def test_train_fraction_is_a_load_with_its_own_data_identity():
    s = resolved({"temperature": {"axis": "epochs", "values": [160]},
                  "load": {"axis": "data.train_fraction", "values": [0.25, 0.5, 1]}})
    runs = [s.cell(160, f, 1).run for f in s.loads]
    assert [r.key.split("_")[0] for r in runs] == ["cifar10-f0.25", "cifar10-f0.5", "cifar10"]
    assert runs[2] == figure2().base.run  # the whole set: the reference run
    assert "train_fraction" in runs[0].as_dict()["data"] and "train_fraction" not in runs[2].as_dict()["data"]
    # where each data set lives: the index (Snakefile) and data_locations (jobs) agree, with the fraction
    plan = plan_of(with_study({"temperature": {"axis": "epochs", "values": [160]},
                               "load": {"axis": "data.train_fraction", "values": [0.25, 0.5, 1]}}))
    jobs = data_locations(plan.config)
    for r in runs:
        located = plan.index.data_of(r.key)
        assert located.train_fraction == r.data.train_fraction and located.root == "data"
        assert jobs[r.data.key()] == located


@pytest.mark.parametrize("axis, message", [
    ({"axis": "train.lrr", "values": [0.1], "hotter": "higher"},
     r"studies.s.temperature.axis: 'train.lrr' is not the key path of a scalar hyperparameter; key paths: "
     r"\['train.lr', .*'data.train_fraction', 'prune.density', 'model.kwargs.<name>'\] \(or a named temperature axis"),
    ({"axis": "train.optimizer", "values": [1], "hotter": "higher"}, "'train.optimizer' is not the key path"),
    ({"axis": "model.in_channels", "values": [1], "hotter": "higher"}, "'model.in_channels' is not the key path"),
    ({"axis": "engine.threads", "values": [1], "hotter": "higher"}, "neither a temperature axis .* key paths"),
    ({"axis": "lr", "values": [0.1]}, r"'lr' is not a temperature axis; allowed: \['batch_size', 'epochs'"),
    ({"axis": "train.lr", "values": [0.1]}, "temperature.hotter is missing: say which values of train.lr"),
    ({"axis": "train.lr", "values": [0.1], "hotter": "up"}, r"hotter: 'up'; allowed: \['higher', 'lower'\]"),
    ({"axis": "epochs", "values": [40], "hotter": "higher"}, "the epochs axis is hotter at lower values"),
    ({"axis": "train.lr", "values": [0, 0.1], "hotter": "higher"}, "temperature.values: train.lr 0.0 must be > 0"),
    ({"axis": "train.momentum", "values": [1.5], "hotter": "higher"}, "train.momentum 1.5 must be <= 1"),
    ({"axis": "train.epochs", "values": [40], "hotter": "lower"},
     r"studies.s.train.epochs: milestones are epochs here and must lie in 1..39"),
])
def test_bad_key_path_temperatures_name_the_key(axis, message):
    assert re.search(message, refused({"temperature": axis, "load": DENSITY}))


@pytest.mark.parametrize("axis, message", [
    ({"axis": "data.train_fraction", "values": [0.5, 1.5]}, "data.train_fraction 1.5 must be <= 1"),
    ({"axis": "data.image_size", "values": [16]}, "data.image_size is the size imagefolder images are resized"),
    ({"axis": "train.lr", "values": [0.1], "hotter": "higher"}, "load.hotter: only a temperature axis"),
    ({"axis": "model.depth", "values": [21]}, "studies.s.model.depth: model.depth of preresnet must be 6n"),
    ({"axis": "model.kwargs.width", "values": [2]}, "model.kwargs.<name> is an argument of a model factory"),
    # the data key in paths does not name the augmentation: jobs could not tell the values apart
    ({"axis": "data.crop_padding", "values": [0, 4]}, "'data.crop_padding' is not the key path"),
])
def test_bad_key_path_loads_name_the_key(axis, message):
    assert re.search(message, refused({"temperature": {"axis": "epochs", "values": [40]}, "load": axis}))


def test_labels_and_the_axes_tables_record():
    s = resolved({"temperature": {**LR, "label": "Temperature (learning rate)"},
                  "load": {**DENSITY, "label": "Load (kept weights)"}})
    assert (s.temperature.label, s.load.label) == ("Temperature (learning rate)", "Load (kept weights)")
    assert s.load.tick(0.1) == "10"  # the named axis' ticks are kept
    # tables record the axis by name; plots of case studies rebuild it from the name
    assert axis_named("train.lr", "temperature").label == "Temperature (train.lr)"
    assert axis_named("density", "load") is AXES["density"]
    assert "train.weight_decay" in key_paths() and "data.train_fraction" in key_paths()


def test_algorithm_1_steps_a_key_path_temperature_the_way_it_is_hotter():
    """Algorithm 1's T0 + ΔT is one grid step hotter: a larger lr with hotter: higher, a
    smaller batch with hotter: lower."""
    for hotter, t0, t1 in (("higher", 0.1, 0.2), ("lower", 0.1, 0.05)):
        cfg = with_study({"temperature": {**LR, "hotter": hotter}, "load": DENSITY})
        cfg["case_studies"] = {"fig": {"algorithm": "temperature", "panels": [{"study": "s", "t0": t0}]}}
        plan = plan_of(cfg)
        assert not plan.cases_broken, plan.cases_broken
        panel = plan.cases["fig"].panels[0]
        assert (panel.t0, panel.t1) == (t0, t1)
        derived = plan.study(panel.studies["grid"])
        assert derived.temperature.hotter == ("high" if hotter == "higher" else "low")
        assert sorted(derived.temperatures) == sorted([t0, t1])


# --- through the real Snakefile ---------------------------------------------------------------------

def test_dry_run_plans_one_dense_run_per_key_path_value(tmp_path):
    cfg = tiny({"temperature": {"axis": "train.lr", "values": [0.02, 0.05, 0.1], "hotter": "higher"},
                "load": {"axis": "data.train_fraction", "values": [0.5, 1]}})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, cfg)).stdout)
    # 3 lrs x 2 fractions = 6 dense runs of 2 one-epoch segments; one pruned model per cell (density 0.05)
    assert {k: counts[k] for k in ("train_dense", "prune", "retrain_cell", "landscape_metrics")} == \
        {"train_dense": 12, "prune": 6, "retrain_cell": 6, "landscape_metrics": 6}


def test_a_bad_image_folder_is_refused_before_any_job(tmp_path):
    write_image_folder(tmp_path / "pets", np.random.default_rng(0), counts={"train": 2})  # no test/
    cfg = tiny({"data": {"name": "imagefolder", "root": str(tmp_path / "pets")}})
    r = smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, cfg), check=False)
    assert r.returncode != 0
    assert re.search(r"studies.tiny.data.root: .*pets' has no test/ folder .*Add test/", r.stdout + r.stderr)


@pytest.mark.slow
def test_image_folder_study_with_lr_as_temperature_end_to_end(tmp_path):
    """A study on PNGs the test writes (3 classes, 16x16 grayscale), lr as the temperature: the
    dense runs, pruning, retraining, LMC/CKA, the cells table and the phase diagram."""
    write_image_folder(tmp_path / "shapes", np.random.default_rng(1), counts={"train": 12, "test": 4},
                       size=(20, 20), mode="L")
    study = deep_merge(TINY_STUDY, {
        "temperature": {"axis": "train.lr", "values": [0.05, 0.2], "hotter": "higher", "label": "learning rate"},
        "load": {"axis": "density", "values": [0.5]},
        "seeds": {"dense": [1], "retrain": [1, 2]},
        "data": {"name": "imagefolder", "root": "shapes", "image_size": 16},
        "train": {"epochs": 1, "milestones": [], "checkpoint_every": 1, "batch_size": 16},
        "retrain": {"epochs": 1, "milestones": [], "batch_size": 16},
        "landscape": {"points": 3, "cka_samples": 30, "bn_samples": 0, "error_samples": 0},
    })
    # one thread a dense job: the two lr runs train side by side on --cores 2 (tests/test_workflow.py ENGINE)
    cfg = {"default_studies": ["shapes"], "studies": {"shapes": study}, "engine": {"device": "cpu", "dense_threads": 1}}
    smk("-d", str(tmp_path), "--configfile", write_config(tmp_path, cfg), "--cores", "2")
    root = tmp_path / "results" / "studies" / "shapes"
    cells = pd.read_parquet(root / "cells.parquet")
    assert len(cells) == 2 and set(cells.regime) <= {"I", "II-A", "II-B"} and cells.lmc.notna().all()
    assert sorted(set(cells.temperature)) == [0.05, 0.2] and set(cells.temperature_axis) == {"train.lr"}
    assert (root / "phase.pdf").stat().st_size > 10_000 and (root / "phase.png").read_bytes()[:4] == b"\x89PNG"
    # the data's shape reached the networks: 1 input channel, 3 classes, one dense run per lr
    from threeregime.checkpoints import load_torch

    dense = sorted((tmp_path / "results" / "dense").glob("*/seed1/epoch1.pt"))
    assert len(dense) == 2 and all(p.parts[-3].startswith("imagefolder-shapes-16px_preresnet8") for p in dense)
    specs = [load_torch(str(p))["spec"] for p in dense]
    assert {(s["in_channels"], s["num_classes"]) for s in specs} == {(1, 3)}
    # the folder was decoded once into results/data, as 1-channel 16x16 images
    cached = list((tmp_path / "results" / "data").glob("imagefolder-shapes-16px-*.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as z:
        assert z["x_train"].shape == (36, 16, 16, 1) and z["x_test"].shape == (12, 16, 16, 1)
