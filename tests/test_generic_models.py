"""Your own network (model.factory): identity in the spec layer, K copies of a generic module
with the interface of the built-in fused networks, checkpoints in the user's own format."""

import importlib.util
import textwrap

import pytest
import torch

from threeregime.data import DeviceData, from_arrays
from threeregime.engine import Engine, build_model, reestimate_bn, shared_input
from threeregime.generic import FactoryError, GenericNetwork, build_module, check_output
from threeregime.models import build_network
from threeregime.spec.common import ConfigError
from threeregime.spec.model import ModelSpec, factory_source
from threeregime.spec.train import TrainSpec
from threeregime.training import train_copies

from tolerance_log import record

QUIET = dict(log=lambda *a: None)

MY_MODELS = textwrap.dedent('''
    import torch.nn as nn
    import torch.nn.functional as F


    class SmallCNN(nn.Module):
        def __init__(self, width=2, in_channels=3, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 4 * width, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4 * width)
            self.conv2 = nn.Conv2d(4 * width, 8 * width, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(8 * width)
            self.fc = nn.Linear(8 * width, num_classes)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.max_pool2d(x, 2, ceil_mode=True)
            x = F.relu(self.bn2(self.conv2(x)))
            return self.fc(x.mean(dim=(2, 3)))


    def small_cnn(width=2, in_channels=3, num_classes=10):
        return SmallCNN(width, in_channels, num_classes)


    def no_bn(num_classes=10):
        return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes))


    def wrong_classes(in_channels=1):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(3))


    def broken(width=1):
        raise RuntimeError("no such width")


    def not_a_module():
        return 42
''')


@pytest.fixture
def my_models(tmp_path):
    path = tmp_path / "my_models.py"
    path.write_text(MY_MODELS)
    return path


def _spec(path, fn="small_cnn", in_channels=1, num_classes=10, **kwargs):
    f = f"{path}:{fn}"
    return ModelSpec("factory", 0, 1.0, in_channels, num_classes, f, kwargs, factory_source(f))


def _user_class(path):
    spec = importlib.util.spec_from_file_location("user_models_for_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _small(ds, n):
    return from_arrays(ds.x_train[:n], ds.y_train[:n], ds.x_test[:64], ds.y_test[:64])


# --- the spec layer ---------------------------------------------------------------------------------

def test_factory_identity_follows_the_file(my_models):
    spec = _spec(my_models, width=2)
    ident = spec.identity()
    assert ident["factory"] == f"{my_models}:small_cnn" and ident["kwargs"] == {"width": 2}
    assert ident["source"].startswith("sha256:") and len(ident["source"]) == len("sha256:") + 16
    assert ModelSpec.from_identity(ident) == spec.for_data(1, 10).__class__.from_identity(ident)
    assert spec.key == "small-cnn" and spec.run_label == "small-cnn"
    before = ident["source"]
    my_models.write_text(MY_MODELS + "\n# an edit\n")
    assert factory_source(f"{my_models}:small_cnn") != before
    # the built-in networks keep their identity (and so their keys)
    assert ModelSpec().identity() == {"arch": "preresnet", "depth": 20, "width": 1.0}
    assert ModelSpec().run_label == "preresnet20w1"
    # a library: its name and version, found without importing it
    assert factory_source("torchvision.models:resnet18").startswith("torchvision==")


def test_factory_refused_in_the_spec_layer(my_models):
    with pytest.raises(ConfigError, match="model.factory: file 'nowhere.py' not found"):
        factory_source("nowhere.py:net")
    with pytest.raises(ConfigError, match=r"defines no 'resnet' at its top level; it defines: .*'small_cnn'"):
        factory_source(f"{my_models}:resnet")
    with pytest.raises(ConfigError, match="is not 'file.py:function'"):
        factory_source("my_models.py")
    with pytest.raises(ConfigError, match="module 'nosuchpkg.nets' is neither installed nor on the Python path"):
        factory_source("nosuchpkg.nets:build")
    with pytest.raises(ConfigError, match="model.kwargs.weights: 'DEFAULT' asks for pretrained weights"):
        ModelSpec("factory", 0, 1.0, None, None, "torchvision.models:resnet18", {"weights": "DEFAULT"}, "x")


def test_factory_refused_at_build(my_models):
    with pytest.raises(FactoryError, match=r"broken\(\*\*\{'width': 1\}\) raised RuntimeError: no such width"):
        build_module(_spec(my_models, "broken", width=1))
    with pytest.raises(FactoryError, match="returned a int, not a torch.nn.Module"):
        build_module(_spec(my_models, "not_a_module"))
    with pytest.raises(FactoryError, match=r"returned \(2, 3\) for 2 images; expected logits \(2, 10\)"):
        check_output(_spec(my_models, "wrong_classes"), (8, 8, 1))
    with pytest.raises(FactoryError, match="fails on images"):
        check_output(_spec(my_models, "no_bn", in_channels=3), (8, 8, 3))
    with pytest.raises(FactoryError, match="model.kwargs.num_classes is 7 but the data set has 10"):
        spec = _spec(my_models)
        build_module(ModelSpec("factory", 0, 1.0, 1, 10, spec.factory, {"num_classes": 7}, spec.source))
    check_output(_spec(my_models, width=1), (8, 8, 1))  # a good one passes


def test_data_shape_reaches_the_factory(my_models):
    net = build_module(_spec(my_models, in_channels=3, num_classes=5, width=1))
    assert net.conv1.in_channels == 3 and net.fc.out_features == 5
    # torchvision's builders take num_classes through **kwargs, and build untrained
    tv = build_module(ModelSpec("factory", 0, 1.0, 3, 7, "torchvision.models:resnet18", {}, "v"))
    assert tv.fc.out_features == 7


# --- K copies ---------------------------------------------------------------------------------------

def test_copies_are_the_users_state_dicts(my_models):
    spec = _spec(my_models, width=1)
    torch.manual_seed(0)
    model = build_network(spec, 3)
    assert isinstance(model, GenericNetwork)
    user = _user_class(my_models)
    one = user.SmallCNN(1, 1, 10)
    assert set(model.state_dict()) == set(one.state_dict())
    assert model.conv1.weight.shape == (3 * 4, 1, 3, 3)                 # copy k in block k of dim 0
    assert model.bn1.num_batches_tracked.shape == (3,)
    for k in range(3):
        one.load_state_dict(model.copy_state(k))                         # MyNet().load_state_dict(...)
    states = [model.copy_state(k) for k in range(3)]
    again = build_network(spec, 3)
    again.load_copies(states[::-1])
    assert torch.equal(again.copy_state(0)["conv1.weight"], states[2]["conv1.weight"])
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        model.eval()
        fused = model(shared_input(x, 3))
    assert fused.shape == (5, 3, 10)
    for k in range(3):
        one.load_state_dict(states[k])
        one.eval()
        with torch.no_grad():
            # fp32, the same arithmetic per copy (vmap turns K convolutions into one grouped
            # one: sums of 9 products in another order): a few ulp of logits ~1
            assert (fused[:, k] - one(x)).abs().max() < 1e-6


def test_fused_training_equals_separate_runs(my_models, cifar_small):
    """Three copies of a user's BatchNorm network trained in one process (vmap) = three
    separate runs, including each copy's running statistics."""
    small = _small(cifar_small, 192)
    c = small.image_shape[-1]
    spec = _spec(my_models, in_channels=c, num_classes=small.num_classes, width=1)
    data = DeviceData(small, torch.device("cpu"), crop_padding=4, hflip=True)
    torch.manual_seed(0)
    init = build_network(spec, 1).copy_state(0)
    hp = TrainSpec(epochs=1, batch_size=64, lr=0.01, milestones=())  # 3 SGD steps
    fused, fh = train_copies(spec, [init] * 3, [1, 2, 3], data, hp, Engine(), **QUIET)
    for k, seed in enumerate((1, 2, 3)):
        (alone,), ah = train_copies(spec, [init], [seed], data, hp, Engine(), **QUIET)
        diff = max((fused[k][n] - alone[n]).abs().max().item() for n in alone if alone[n].is_floating_point())
        record(f"generic: max |fused - alone| seed {seed}", diff, 1e-5)
        # fp32, 3 SGD steps at lr 0.01: the per-step rounding of w (|w| < 2: 1.2e-7) plus lr x the
        # gradient's reordering noise (~1e-6 relative on |g| ~ 1) x 2.7 (momentum) stays below 1e-6;
        # 1e-5 leaves room for one ReLU flipping at 0 (as tests/test_training.py)
        assert diff <= 1e-5, (seed, diff)
        assert torch.equal(fused[k]["bn1.num_batches_tracked"], alone["bn1.num_batches_tracked"])
    assert (fused[0]["conv1.weight"] - fused[1]["conv1.weight"]).abs().max() > 1e-4


def test_sam_and_masks_per_copy(my_models, cifar_small):
    """SAM takes each copy's own ascent norm on the generic layout too (tests/test_optimizers.py's
    FUSED_TOL reasoning: one ReLU flip carried through the ascent, <= 6e-5; 1e-4), and pruned
    weights of convolutions and linear layers stay exactly zero."""
    from threeregime.pruning import apply_masks, magnitude_masks

    small = _small(cifar_small, 192)
    spec = _spec(my_models, in_channels=small.image_shape[-1], num_classes=small.num_classes, width=1)
    data = DeviceData(small, torch.device("cpu"), crop_padding=4, hflip=True)
    torch.manual_seed(0)
    net = build_network(spec, 1)
    init = net.copy_state(0)
    masks = magnitude_masks({n: init[n] for n in net.prunable(("conv", "linear"))}, 0.3, "uniform")
    pruned = apply_masks(init, masks)
    hp = TrainSpec(optimizer="sam", rho=0.05, epochs=1, batch_size=64, lr=0.01, milestones=())
    fused, _ = train_copies(spec, [pruned] * 2, [1, 2], data, hp, Engine(), masks=masks, **QUIET)
    for k, seed in enumerate((1, 2)):
        (alone,), _ = train_copies(spec, [pruned], [seed], data, hp, Engine(), masks=masks, **QUIET)
        diff = max((fused[k][n] - alone[n]).abs().max().item() for n in alone if alone[n].is_floating_point())
        record(f"generic SAM: max |fused - alone| seed {seed}", diff, 1e-4)
        assert diff <= 1e-4, (seed, diff)
        for name, m in masks.items():
            assert torch.all(fused[k][name][~m] == 0), name
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc.weight"}
    assert not torch.equal(fused[0]["fc.weight"], pruned["fc.weight"])


def test_sequential_fallback_is_the_users_module(my_models, cifar_small):
    """One copy after another runs the user's module on each copy's own tensors: outputs,
    gradients and running statistics bitwise those of the plain module."""
    small = _small(cifar_small, 128)
    spec = _spec(my_models, in_channels=small.image_shape[-1], num_classes=small.num_classes, width=1)
    data = DeviceData(small, torch.device("cpu"), crop_padding=0, hflip=False)
    torch.manual_seed(0)
    init = [build_network(spec, 1).copy_state(0) for _ in range(2)]
    model = build_model(spec, init, Engine())
    model.mode = "sequential"
    x = data.normalize(data.x_train[:32]).contiguous()  # the layout one model alone gets in the tests
    model.train()
    out = model(shared_input(x, 2))
    out.pow(2).sum().backward()
    user = _user_class(my_models)
    for k in range(2):
        one = user.SmallCNN(1, small.image_shape[-1], small.num_classes)
        one.load_state_dict(init[k])
        one.train()
        ref = one(x)
        ref.pow(2).sum().backward()
        assert torch.equal(out[:, k], ref)
        assert torch.equal(model.conv1.weight.grad.view(2, *one.conv1.weight.shape)[k], one.conv1.weight.grad)
        assert torch.equal(model.copy_state(k)["bn2.running_var"], one.bn2.running_var)


def test_vmap_failure_falls_back_without_double_counting(tmp_path, cifar_small):
    """A module vmap cannot run (data-dependent control flow) runs one copy after another,
    and the failed fused attempt leaves no trace in the running statistics."""
    path = tmp_path / "branchy.py"
    path.write_text(textwrap.dedent('''
        import torch.nn as nn

        class Branchy(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.bn = nn.BatchNorm2d(1)
                self.fc = nn.Linear(64, num_classes)

            def forward(self, x):
                x = self.bn(x)
                if x.sum().item() > -1e9:   # .item() cannot run under vmap
                    x = x * 1.0
                return self.fc(x.flatten(1))

        def branchy(num_classes=10):
            return Branchy(num_classes)
    '''))
    spec = _spec(path, "branchy", in_channels=1, num_classes=10)
    model = build_network(spec, 2)
    x = torch.randn(4, 2, 8, 8)
    model.train()
    with pytest.warns(RuntimeWarning, match="run one after another"):
        out = model(x)
    assert model.mode == "sequential" and "calling .item()" in model.fallback_reason
    assert "one copy after another" in model.describe()
    assert out.shape == (4, 2, 10)
    assert model.bn.num_batches_tracked.tolist() == [1, 1]


def test_bn_reestimation_reaches_every_copy(my_models, cifar_small):
    """engine.reestimate_bn's hooks on model.modules() see each copy's statistics: the
    re-estimated buffers of copy k equal those of copy k re-estimated alone."""
    small = _small(cifar_small, 96)
    spec = _spec(my_models, in_channels=small.image_shape[-1], num_classes=small.num_classes, width=1)
    data = DeviceData(small, torch.device("cpu"), crop_padding=0, hflip=False)
    torch.manual_seed(1)
    states = [build_network(spec, 1).copy_state(0) for _ in range(3)]
    engine = Engine(eval_batch_size=40)
    fused = build_model(spec, states, engine)
    reestimate_bn(fused, data.x_train, data, engine)
    for k in range(3):
        alone = build_model(spec, [states[k]], engine)
        reestimate_bn(alone, data.x_train, data, engine)
        got, want = fused.copy_state(k), alone.copy_state(0)
        for name in ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"):
            # float32 statistics of the same inputs, merged in float64: rounding of the inputs only
            assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6), name
        assert not torch.equal(got["bn2.running_var"], states[k]["bn2.running_var"])


# --- planning ---------------------------------------------------------------------------------------

def _two_studies(tmp_path, factory):
    import yaml

    study = {"temperature": {"axis": "epochs", "values": [1, 2]}, "load": {"axis": "density", "values": [0.1, 0.5]},
             "data": {"name": "digits", "root": ""}, "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 1},
             "retrain": {"epochs": 2, "milestones": [1]}, "seeds": {"dense": [1], "retrain": [1, 2]}}
    cfg = {"studies": {"builtin": {**study, "model": {"depth": 8, "width": 0.5}},
                       "mine": {**study, "model": {"factory": factory, "kwargs": {"width": 2}},
                                "prune": {"layers": ["conv", "linear"], "exclude": ["fc"]}}}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _paths(plan, name):
    s = plan.study(name)
    return {p for _, _, c in s.cells() for p in (c.dense_path, c.cell_dir, c.landscape_path)}


def test_editing_the_factory_file_replans_only_its_runs(my_models, tmp_path):
    from threeregime.plan import load_plan

    cfg = _two_studies(tmp_path, f"{my_models}:small_cnn")
    before = load_plan([cfg])
    mine = before.study("mine")
    run = mine.base.run
    assert run.model.factory.endswith("my_models.py:small_cnn") and run.model.kwargs == {"width": 2}
    assert run.key.startswith("digits_small-cnn_sgd_bs64_e2-")
    assert mine.base.prune.key.startswith("uniform_d0.05_s")                 # a non-default selection
    assert all("_s" in c.cell_dir.rsplit("/", 1)[1] for _, _, c in mine.cells())
    assert before.index.prune(mine.cell(1, 0.1, 1).prune.key).exclude == ("fc",)
    my_models.write_text(MY_MODELS.replace("padding=1)", "padding=1)  # edited"))
    after = load_plan([cfg])
    assert _paths(after, "builtin") == _paths(before, "builtin")
    assert not _paths(after, "mine") & _paths(before, "mine")                 # every artifact of it is new
    # a kwargs change is another network too, and the width axis of built-in networks is refused
    import yaml

    cfg_dict = yaml.safe_load(open(cfg))
    cfg_dict["studies"]["mine"]["load"] = {"axis": "width", "values": [1, 2]}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg_dict))
    with pytest.raises(ConfigError, match=r"studies.mine: the width axis changes a built-in network .*"
                                          r"model.kwargs.width"):
        load_plan([cfg]).study("mine")


# --- advice for your own model ------------------------------------------------------------------------

def test_advise_takes_a_factory_and_its_kwargs(my_models, tmp_path, capsys):
    import json

    from threeregime.advise import main

    user = _user_class(my_models)
    torch.manual_seed(0)
    ckpt = tmp_path / "mine.pt"
    torch.save(user.SmallCNN(1, 1, 10).state_dict(), ckpt)  # digits: 1 channel, 10 classes
    out = tmp_path / "advice"
    common = ["--density", "0.5", "--data", "digits", "--crop-padding", "1", "--no-hflip", "--epochs", "1",
              "--seeds", "1", "2", "--samples", "200", "--device", "cpu", "--out", str(out)]
    rc = main([str(ckpt), "--factory", f"{my_models}:small_cnn", "--kwargs", '{"width": 1}',
               "--layers", "conv", "linear", "--exclude", "fc", *common])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "advice.json").read_text())
    assert res["model"]["factory"] == f"{my_models}:small_cnn" and res["model"]["kwargs"] == {"width": 1}
    assert res["model"]["in_channels"] == 1 and res["model"]["num_classes"] == 10
    # conv1 (1*4*9 = 36) and conv2 (4*8*9 = 288) pruned uniformly to half: 18 + 144 of 324 kept
    assert res["achieved_density"] == 0.5
    assert res["regime"] in ("I", "II-A", "II-B", "missing")
    # the wrong kwargs: another network's shapes, named
    rc = main([str(ckpt), "--factory", f"{my_models}:small_cnn", "--kwargs", '{"width": 2}', *common])
    assert rc == 2 and "conv1.weight has shape (4, 1, 3, 3), expected (8, 1, 3, 3)" in capsys.readouterr().err
    rc = main([str(ckpt), "--factory", f"{my_models}:small_cnn", "--kwargs", "width=2", *common])
    assert rc == 2 and "--kwargs 'width=2' is not JSON" in capsys.readouterr().err


# --- through the real Snakefile ---------------------------------------------------------------------

def _finished_study(folder, name):
    import pandas as pd

    root = folder / "results" / "studies" / name
    cells = pd.read_parquet(root / "cells.parquet")
    table = pd.read_parquet(root / "table.parquet")
    assert (root / "phase.png").read_bytes()[:4] == b"\x89PNG" and (root / "phase.pdf").stat().st_size > 10_000
    assert set(cells.regime) <= {"I", "II-A", "II-B"}
    assert table[table.kind == "pair"][["lmc", "cka"]].notna().all().all()
    return cells, table


@pytest.mark.slow
def test_studies_of_a_factory_file_and_of_torchvision_resnet18(tmp_path):
    """Through the real Snakefile, one run of two studies, each to its phase diagram and cells
    table: model.factory naming a file in the working directory (a small CNN with a width
    kwarg), and torchvision.models:resnet18 (built untrained) at a small input size (8x8
    images, 3 channels). Per-layer densities lie beside each pruned file, checkpoints load
    into the users' classes, and an edit of the file replans exactly that model's jobs."""
    import json

    import numpy as np

    from test_workflow import ENGINE, job_counts, smk, write_config
    from threeregime.data import load_digits_dataset

    (tmp_path / "my_models.py").write_text(MY_MODELS)
    ds = load_digits_dataset()
    rgb = lambda x: np.repeat(x, 3, axis=-1)  # noqa: E731  (8x8 digits as 3-channel images)
    np.savez(tmp_path / "rgb_digits.npz", x_train=rgb(ds.x_train[:200]), y_train=ds.y_train[:200],
             x_test=rgb(ds.x_test[:64]), y_test=ds.y_test[:64])
    # the issue's own shape: the learning rate as the temperature, the factory's width as the load
    mine = {"temperature": {"axis": "train.lr", "values": [0.05, 0.1], "hotter": "higher"},
            "load": {"axis": "model.kwargs.width", "values": [1, 2]},
            "data": {"name": "digits", "root": "", "crop_padding": 1, "hflip": False},
            "model": {"factory": "my_models.py:small_cnn", "kwargs": {"width": 1}},
            "prune": {"density": 0.2, "layers": ["conv", "linear"], "exclude": ["fc"]},
            "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 2},
            "retrain": {"epochs": 1, "milestones": []},
            "seeds": {"dense": [1], "retrain": [1, 2]}, "landscape": {"points": 3, "cka_samples": 300}}
    # one cell (11.7M parameters a copy: every job writes ~50-150 MB of checkpoints)
    resnet = {"temperature": {"axis": "epochs", "values": [2]}, "load": {"axis": "density", "values": [0.3]},
              "data": {"name": "npz", "root": "rgb_digits.npz", "crop_padding": 0, "hflip": False},
              "model": {"factory": "torchvision.models:resnet18"},
              "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 2, "lr": 0.02},
              "retrain": {"epochs": 1, "milestones": [], "lr": 0.02},
              "seeds": {"dense": [1], "retrain": [1, 2]}, "landscape": {"points": 3, "cka_samples": 64}}
    cfg = write_config(tmp_path, {"default_studies": ["mine", "resnet"], "studies": {"mine": mine, "resnet": resnet},
                                  "engine": ENGINE})
    smk("-d", str(tmp_path), "--configfile", cfg, "--cores", "2")
    dense = tmp_path / "results" / "dense"

    cells, _ = _finished_study(tmp_path, "mine")
    assert len(cells) == 4 and sorted(set(cells.temperature)) == [0.05, 0.1] and sorted(set(cells.load)) == [1, 2]
    runs = sorted(dense.glob("digits_small-cnn_sgd_bs64_e2-*"))  # one dense run per (lr, width)
    assert len(runs) == 4
    densities = sorted((tmp_path / "results" / "cells").glob("digits_*/**/densities.json"))
    assert len(densities) == 4
    for path in densities:
        d = json.loads(path.read_text())
        assert set(d["layers"]) == {"conv1.weight", "conv2.weight"}  # fc excluded, BatchNorm no layer type
        for entry in d["layers"].values():
            assert entry["kept"] == round(d["prune"]["density"] * entry["total"])
    user = _user_class(tmp_path / "my_models.py")
    widths = []
    for run in runs:  # each loads into the user's class at its own width
        state = torch.load(run / "seed1" / "epoch2.pt", weights_only=True)["state_dict"]
        width = state["conv1.weight"].shape[0] // 4  # the test file's conv1 has 4 x width channels
        user.SmallCNN(width, 1, 10).load_state_dict(state)
        widths.append(width)
    assert sorted(widths) == [1, 1, 2, 2]

    cells, _ = _finished_study(tmp_path, "resnet")
    assert len(cells) == 1
    (run,) = dense.glob("npz-rgb-digits-npz_resnet18_sgd_bs64_e2-*")
    import torchvision

    state = torch.load(run / "seed1" / "epoch2.pt", weights_only=True)["state_dict"]
    torchvision.models.resnet18(num_classes=10).load_state_dict(state)

    assert "Nothing to be done" in smk("-n", "-d", str(tmp_path), "--configfile", cfg).stdout
    # editing the file: that model's dense runs and everything after them; the ResNet is untouched
    (tmp_path / "my_models.py").write_text(MY_MODELS + "\n# tuned\n")
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", cfg).stdout)
    # 4 dense runs (2 lr x 2 widths) of one 2-epoch segment each, then one cell each (pruned by
    # rule prune_selected: conv and linear layers are not the default choice of weights)
    assert counts["train_dense"] == 4 and counts["prune_selected"] == 4 and counts["retrain_cell"] == 4
    assert counts["landscape_metrics"] == 4
