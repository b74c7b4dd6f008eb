"""Studies, axes and the identity of artifacts: the path scheme is an interface, pin it."""

import copy

import pytest
import yaml

from conftest import ROOT
from threeregime.spec.common import ConfigError
from threeregime.study import AXES, Index, resolve_study, studies

REFERENCE = yaml.safe_load((ROOT / "config.yaml").read_text())


def config(**over):
    from threeregime.spec.common import deep_merge

    return deep_merge(REFERENCE, over)


def test_reference_paths_are_pinned():
    s = resolve_study(REFERENCE, "epochs_density")
    t, l, c = s.cells()[0]
    assert (t, l, c.seed) == (10, 0.05, 1)
    run = c.run.key
    assert run.startswith("cifar10_preresnet20w1_sgd_bs64_e160-") and len(run.split("-")[-1]) == 8
    assert c.dense_path == f"results/dense/{run}/seed1/epoch10.pt"
    assert c.cell_dir == f"results/cells/{run}/seed1/epoch10/uniform_d0.05"
    assert c.retrain.key.startswith("sgd_bs64_e160_x3-")
    assert c.landscape_path == f"{c.cell_dir}/{c.retrain.key}/landscape_p11_bn10000_err10000_cka6400.json"
    assert s.dir == "results/studies/epochs_density"
    assert len(s.cells()) == 16 * 9 * 3


def test_studies_share_artifacts_and_never_key_by_name():
    all_, broken = studies(REFERENCE)
    assert not broken, broken
    fig2, fig12 = all_["epochs_density"], all_["epochs_density_global"]
    assert {c.run.key for *_, c in fig2.cells()} == {c.run.key for *_, c in fig12.cells()}
    assert not {c.cell_dir for *_, c in fig2.cells()} & {c.cell_dir for *_, c in fig12.cells()}
    # Figure 13's SGD -> SGD study is Figure 2's dense seed 1 at two densities: the same files
    sgd = {c.landscape_path for *_, c in all_["sgd_sgd"].cells()}
    assert sgd <= {c.landscape_path for *_, c in fig2.cells()} and len(sgd) == 32
    # SAM's rho = 0 is Figure 2's SGD run, final checkpoint
    sam = all_["sam_rho_density"]
    assert sam.cell(0, 0.05, 1).dense_path == fig2.cell(160, 0.05, 1).dense_path
    assert sam.cell(0.1, 0.05, 1).run.train.optimizer == "sam" and sam.cell(0.1, 0.05, 1).run.train.rho == 0.1
    # a renamed study makes the same files
    renamed = copy.deepcopy(REFERENCE)
    renamed["studies"]["another_name"] = renamed["studies"].pop("epochs_density")
    assert resolve_study(renamed, "another_name").cells()[5][2] == fig2.cells()[5][2]


@pytest.mark.parametrize("over", [
    {"defaults": {"data": {"root": "/somewhere/else", "download": True}}},
    {"engine": {"device": "cpu", "threads": 7, "eval_batch_size": 128, "compile": True}},
    {"on_divergence": "record"},
    {"defaults": {"regimes": {"cka_threshold": 0.5}}},
])
def test_where_data_lives_and_how_jobs_run_are_not_identity(over):
    before = {c.landscape_path for *_, c in resolve_study(REFERENCE, "epochs_density").cells()}
    after = {c.landscape_path for *_, c in resolve_study(config(**over), "epochs_density").cells()}
    assert before == after


@pytest.mark.parametrize("over", [
    {"defaults": {"data": {"crop_padding": 2}}},
    {"defaults": {"train": {"lr": 0.05}}},
    {"defaults": {"train": {"weight_decay": 5e-4}}},
    {"defaults": {"model": {"width": 2}}},
    {"defaults": {"data": {"name": "cifar100"}}},
])
def test_what_makes_a_dense_run_is_identity(over):
    ref = resolve_study(REFERENCE, "epochs_density").cell(160, 0.05, 1)
    new = resolve_study(config(**over), "epochs_density").cell(160, 0.05, 1)
    assert ref.run.key != new.run.key


def test_retraining_and_landscape_settings_key_only_what_follows():
    ref = resolve_study(REFERENCE, "epochs_density").cell(160, 0.05, 1)
    new = resolve_study(config(defaults={"retrain": {"epochs": 80, "milestones": [40, 60]}}),
                        "epochs_density").cell(160, 0.05, 1)
    assert new.dense_path == ref.dense_path and new.cell_dir == ref.cell_dir and new.retrain_dir != ref.retrain_dir
    new = resolve_study(config(defaults={"landscape": {"bn_samples": 0}}), "epochs_density").cell(160, 0.05, 1)
    assert new.retrain_dir == ref.retrain_dir and new.landscape_path != ref.landscape_path


def test_whole_numbers_written_as_floats_are_the_same_run():
    a = resolve_study(REFERENCE, "epochs_density").cell(160, 0.05, 1)
    b = resolve_study(config(defaults={"train": {"batch_size": 64.0, "epochs": 160.0, "milestones": [80.0, 120]}}),
                      "epochs_density").cell(160.0, 0.05, 1)
    assert a == b
    with pytest.raises(ConfigError, match="train.batch_size must be a whole number"):
        resolve_study(config(defaults={"train": {"batch_size": 64.5}}), "epochs_density")


def test_axes_apply_to_the_right_part_of_a_cell():
    all_, _ = studies(REFERENCE)
    b = all_["batch_density"].cell(16, 0.1, 2)
    assert (b.run.train.batch_size, b.run.train.iterations, b.ckpt, b.seed) == (16, 62400, "final", 2)
    assert b.retrain.train.batch_size == 128 and b.retrain.train.iterations == 62400
    w = all_["epochs_width"].cell(30, 4, 1)
    assert (w.run.model.width, w.prune.density, w.ckpt) == (4.0, 0.05, "epoch30")
    d = all_["epochs_depth"].cell(30, 152, 1)
    assert (d.run.model.depth, d.prune.density) == (152, 0.05)
    assert {a.kind for a in AXES.values()} == {"temperature", "load"}
    assert AXES["sam_rho"].hotter == "high" and AXES["epochs"].hotter == "low"
    assert AXES["density"].tick(0.05) == "5"


@pytest.mark.parametrize("study, message", [
    ({"temperature": {"axis": "density", "values": [0.1]}, "load": {"axis": "density", "values": [0.1]}},
     "not a temperature axis"),
    ({"temperature": {"axis": "epochs", "values": [15]}, "load": {"axis": "density", "values": [0.1]}},
     "epoch 15 is not a saved checkpoint"),
    ({"temperature": {"axis": "epochs", "values": [10]}, "load": {"axis": "density", "values": [0.1, 1.5]}},
     "density 1.5 must be in"),
    ({"temperature": {"axis": "epochs", "values": [10]}, "load": {"axis": "depth", "values": [21]}},
     "6n\\+2"),
    ({"temperature": {"axis": "epochs", "values": [10]}, "load": {"axis": "density", "values": ["1e-3"]}},
     "1.0e-3"),
    ({"temperature": {"axis": "epochs", "values": [10, 10.0]}, "load": {"axis": "density", "values": [0.1]}},
     "duplicate"),
    ({"temperature": {"axis": "epochs", "values": [10]}, "load": {"axis": "density", "values": [0.1]},
      "seeds": {"retrain": [1, 1]}}, "duplicate"),
    ({"temperature": {"axis": "epochs", "values": [10]}, "load": {"axis": "density", "values": [0.1]},
      "regimes": {"lmc_epsilon": 0.05}}, "lmc_epsilon must be <= 0"),
    ({"temperature": {"axis": "batch_size", "values": [64]}, "load": {"axis": "density", "values": [0.1]},
      "train": {"optimizer": "rmsprop"}}, "rmsprop"),
])
def test_bad_study_names_the_key(study, message):
    cfg = config(studies={"bad": study})
    all_, broken = studies(cfg)
    assert "bad" in broken and "bad" not in all_
    assert __import__("re").search(message, broken["bad"]), broken["bad"]
    assert "studies.bad" in broken["bad"]


def test_densities_that_collide_in_paths_are_refused():
    cfg = config(studies={"a": {"temperature": {"axis": "epochs", "values": [10]},
                                "load": {"axis": "density", "values": [0.1, 0.1000000001]}}})
    assert "duplicate" in studies(cfg)[1]["a"]
    cfg = config(studies={"b": {"temperature": {"axis": "epochs", "values": [10]},
                                "load": {"axis": "density", "values": [0.0500000001]}}})
    with pytest.raises(ConfigError, match="same path"):
        studies(cfg)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "", "-x"])
def test_study_names_cannot_leave_results(name):
    cfg = copy.deepcopy(REFERENCE)
    cfg["studies"][name] = cfg["studies"]["epochs_density"]
    with pytest.raises(ConfigError, match="must match"):
        studies(cfg)


def test_index_maps_keys_back_to_hyperparameters():
    all_, _ = studies(REFERENCE)
    ix = Index.of(all_)
    c = all_["sam_rho_density"].cell(0.3, 0.2, 3)
    assert ix.run(c.run.key) == c.run and ix.retrain(c.retrain.key) == c.retrain
    assert ix.data_of(c.run.key).root == "data"
    with pytest.raises(ConfigError, match="not in the config"):
        ix.run("cifar10_x-0000abcd")
