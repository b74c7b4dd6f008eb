"""Figures 8-11 (the appendix): their studies in config.yaml, and VGG and DenseNet through the
real Snakefile on the offline digits data."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT
from test_workflow import ENGINE, smk, write_config
from threeregime.spec.common import deep_merge
from threeregime.study import resolve_study, studies

EPOCHS = list(range(10, 161, 10))
APPENDIX = {  # figure: (study, data set, arch, depth, densities)
    "figure8": ("densenet40_epochs_density", "cifar10", "densenet", 40,
                [0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 0.2, 0.4, 0.8]),
    "figure9": ("vgg19_epochs_density", "cifar10", "vgg", 19, [0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.4, 0.8]),
    "figure10": ("cifar100_epochs_density", "cifar100", "preresnet", 20,
                 [0.05, 0.06, 0.07, 0.08, 0.1, 0.14, 0.2, 0.4, 0.8]),
    "figure11": ("svhn_epochs_density", "svhn", "preresnet", 20, [0.05, 0.06, 0.07, 0.08, 0.1, 0.14, 0.2, 0.4, 0.8]),
}


@pytest.mark.parametrize("figure", list(APPENDIX))
def test_appendix_studies_follow_figure_2s_protocol(figure):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    name, data, arch, depth, densities = APPENDIX[figure]
    assert config["figures"][figure] == {"study": name}
    s = resolve_study(config, name)
    fig2 = resolve_study(config, "epochs_density")
    assert (s.base.run.data.name, s.base.run.model.arch, s.base.run.model.depth, s.base.run.model.width) == \
        (data, arch, depth, 1.0)
    assert list(s.temperatures) == EPOCHS and list(s.loads) == densities
    assert s.dense_seeds == (1, 2, 3) and s.base.retrain.seeds == (1, 2, 3)
    # the same training, retraining and landscape recipe as Figure 2; only network or data differ
    assert s.base.run.train == fig2.base.run.train and s.base.retrain == fig2.base.retrain
    assert s.base.landscape == fig2.base.landscape and s.data.crop_padding == 4 and s.data.hflip
    cells = s.cells()
    assert len(cells) == 16 * 9 * 3 and len({c.dense_path for _, _, c in cells}) == 16 * 3
    assert len({c.run.key for _, _, c in cells}) == 1  # one dense run (3 seeds), its checkpoints the temperatures
    assert all(c.run.key.startswith(f"{data}_{arch}{depth}w1_sgd_bs64_e160-") for _, _, c in cells)
    assert not {c.run.key for _, _, c in cells} & {c.run.key for _, _, c in fig2.cells()}


def test_all_reference_studies_still_resolve():
    ok, broken = studies(yaml.safe_load((ROOT / "config.yaml").read_text()))
    assert not broken and {v[0] for v in APPENDIX.values()} <= set(ok)


# Narrow VGG-11 and a DenseNet-10 (3 dense blocks of 2 layers) on 300 of the offline 8x8
# digits: one dense epoch, one density, two retrain copies, both studies' tables in one
# Snakemake invocation (job start-up, not training, is most of its time; the phase diagram
# is tested elsewhere and left out).
TINY_BASE = {
    "temperature": {"axis": "epochs", "values": [1]},
    "load": {"axis": "density", "values": [0.1]},
    "data": {"name": "npz", "crop_padding": 1, "hflip": False},
    "train": {"epochs": 1, "milestones": [], "checkpoint_every": 1},
    "retrain": {"epochs": 1, "milestones": []},
    "seeds": {"dense": [1], "retrain": [1, 2]},
    "landscape": {"points": 3, "bn_samples": 200, "error_samples": 200, "cka_samples": 100},
}
TINY_MODELS = {"tiny_vgg": {"arch": "vgg", "depth": 11, "width": 0.125},
               "tiny_densenet": {"arch": "densenet", "depth": 10, "width": 0.5}}


@pytest.fixture(scope="module")
def tiny_architectures_run(tmp_path_factory):
    from threeregime.data import load_digits_dataset

    root = tmp_path_factory.mktemp("archs")
    d = load_digits_dataset()
    np.savez(root / "digits300.npz", x_train=d.x_train[:300], y_train=d.y_train[:300], x_test=d.x_test[:100],
             y_test=d.y_test[:100])
    base = deep_merge(TINY_BASE, {"data": {"root": str(root / "digits300.npz")}})
    cfg = {"default_studies": list(TINY_MODELS), "engine": ENGINE,
           "studies": {name: {**base, "model": model} for name, model in TINY_MODELS.items()}}
    smk(*[f"results/studies/{name}/cells.parquet" for name in TINY_MODELS], "-d", str(root),
        "--configfile", write_config(root, cfg), "--cores", "2")
    return root


@pytest.mark.parametrize("study, prefix, convs", [("tiny_vgg", "npz-digits300-npz_vgg11w0.125_sgd_bs64_e1-", 8),
                                                   ("tiny_densenet", "npz-digits300-npz_densenet10w0.5_sgd_bs64_e1-", 9)])
@pytest.mark.slow
def test_vgg_and_densenet_run_end_to_end(tiny_architectures_run, study, prefix, convs):
    root = tiny_architectures_run
    out = root / "results" / "studies" / study
    table, cells = pd.read_parquet(out / "table.parquet"), pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 1 and set(cells.regime) <= {"I", "II-A", "II-B"}
    pairs = table[table.kind == "pair"]
    assert len(pairs) == 1 and pairs[["lmc", "cka"]].notna().all().all()
    assert (table.achieved_density - table.density).abs().max() < 0.01
    copies = table[table.kind == "copy"]
    assert len(copies) == 2 and copies.test_error.between(0, 1).all()
    (run,) = [p for p in (root / "results" / "dense").iterdir() if p.name.startswith(prefix)]
    pruned = torch.load(next((root / "results" / "cells" / run.name).rglob("uniform_d0.1/pruned.pt")),
                        weights_only=True)
    assert pruned["spec"]["arch"] == TINY_MODELS[study]["arch"] and len(pruned["mask"]) == convs
    assert not any(name.startswith("fc") for name in pruned["mask"])  # the classifier stays dense
    for name, mask in pruned["mask"].items():  # every conv pruned to 10 %, uniformly
        assert abs(mask.float().mean().item() - 0.1) < 0.5 / mask.numel() + 1e-9
        assert torch.all(pruned["state_dict"][name][~mask] == 0)
