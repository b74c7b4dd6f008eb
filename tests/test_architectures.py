"""The architectures of ARCHITECTURES: parameter counts, what pruning acts on, and K fused
copies computing exactly what K separate networks compute."""

import pytest
import torch
import yaml

from conftest import ROOT
from threeregime.data import DeviceData, from_arrays
from threeregime.models import build_network, cat_copies, count_parameters
from threeregime.spec.model import ARCHITECTURES, ModelSpec
from threeregime.pruning import apply_masks, magnitude_masks
from threeregime.training import train_copies
from threeregime.engine import Engine
from threeregime.spec.train import TrainSpec

from tolerance_log import record  # largest differences, with THREEREGIME_TOLERANCE_LOG

QUIET = dict(log=lambda *a: None)


# Counting rule: trainable parameters of one copy (conv weights and biases, BatchNorm's weight
# and bias, the linear layer's weight and bias); BatchNorm's running statistics are buffers and
# not counted. 3-channel 32x32 input, 10 classes unless stated.
@pytest.mark.parametrize("arch, depth, classes, count", [
    ("preresnet", 20, 10, 272_282),
    ("preresnet", 20, 100, 278_132),   # Figure 10: CIFAR-100 changes only the classifier
    ("vgg", 19, 10, 20_040_522),       # "about 20.0M": 20,018,880 conv weights + 5,504 conv biases
                                       # + 11,008 BN + 5,130 linear
    ("vgg", 16, 10, 14_728_266),
    ("vgg", 11, 10, 9_231_114),
    ("densenet", 40, 10, 1_059_298),   # "about 1.0M"
    ("densenet", 100, 10, 7_083_538),
])
def test_parameter_counts(arch, depth, classes, count):
    assert count_parameters(ModelSpec(arch, depth, num_classes=classes)) == count


@pytest.mark.parametrize("arch, depth, convs", [("vgg", 19, 16), ("densenet", 40, 39), ("preresnet", 20, 21)])
def test_pruning_acts_on_every_conv_and_not_the_classifier(arch, depth, convs):
    net = build_network(ModelSpec(arch, depth), 1)
    prunable = net.prunable()
    assert len(prunable) == convs  # DenseNet-40: first conv + 36 dense layers + 2 transitions
    assert all(p.dim() == 4 for p in prunable.values()) and not any(n.startswith("fc") for n in prunable)
    conv_weights = sum(p.numel() for p in prunable.values())
    if arch == "vgg":
        assert conv_weights == 20_018_880


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cat_copies_keeps_each_copys_channels_together(layout):
    a = torch.arange(6 * 6).view(1, 6, 3, 2).float().contiguous(memory_format=layout)  # K=2 copies of 3 ch.
    b = 100 + torch.arange(4 * 6).view(1, 4, 3, 2).float().contiguous(memory_format=layout)  # K=2 of 2
    out = cat_copies(a, b, 2)
    assert out.shape == (1, 10, 3, 2) and out.is_contiguous(memory_format=layout)
    for k in range(2):
        assert torch.equal(out[:, 5 * k:5 * k + 3], a[:, 3 * k:3 * k + 3])
        assert torch.equal(out[:, 5 * k + 3:5 * k + 5], b[:, 2 * k:2 * k + 2])


def _setup(ds, arch, depth, width):
    small = from_arrays(ds.x_train[:128], ds.y_train[:128], ds.x_test[:64], ds.y_test[:64])
    spec = ModelSpec(arch, depth, width, in_channels=small.image_shape[-1], num_classes=small.num_classes)
    data = DeviceData(small, torch.device("cpu"), crop_padding=4, hflip=True)
    torch.manual_seed(0)
    return spec, data, build_network(spec).copy_state(0)


@pytest.mark.parametrize("arch, depth, width", [("vgg", 11, 0.125), ("densenet", 10, 0.5)])
def test_fused_copies_match_separate_runs(cifar_small, arch, depth, width):
    """Three pruned copies in one grouped network = three separate runs (2 SGD steps each),
    in channels_last as the workflow runs on CPUs and GPUs (Engine.auto)."""
    spec, data, init = _setup(cifar_small, arch, depth, width)
    masks = magnitude_masks({n: init[n] for n in build_network(spec).prunable()}, 0.3, "uniform")
    init = apply_masks(init, masks)
    hp = TrainSpec(epochs=1, batch_size=64, lr=0.01, milestones=())
    engine = Engine(channels_last=True)
    fused, fh = train_copies(spec, [init] * 3, [1, 2, 3], data, hp, engine, masks=masks, **QUIET)
    names = [n for n, _ in build_network(spec).named_parameters()]
    for k, seed in enumerate((1, 2, 3)):
        (alone,), ah = train_copies(spec, [init], [seed], data, hp, engine, masks=masks, **QUIET)
        diff = max((fused[k][n] - alone[n]).abs().max().item() for n in names)
        record(f"max |fused - alone| seed {seed}", diff, 1e-5)
        # fp32, grouped vs plain convolutions (sums in another order), 2 SGD steps: w rounds once a step (|w| < 2:
        # <= 1.2e-7) plus lr 0.01 x dg; a ReLU within rounding of 0 can flip, changing one term of a 64*32*32-term
        # gradient sum (dg <= ~3.4e-5), x 1.9 (momentum over 2 steps) x ~3 (later gradients) -> ~2e-6; 1e-5 (x5)
        assert diff <= 1e-5, (seed, diff)
        dloss = abs(fh[0].train_loss[k] - ah[0].train_loss[0])
        record(f"|train loss fused - alone| seed {seed}", dloss, 1e-5)
        # loss ~2.3 (ulp 2.4e-7), taken at w before each step where the runs differ by ~1e-7: 1e-5 = 40 ulp
        assert dloss < 1e-5
        for n, m in masks.items():  # pruned weights stay exactly zero
            assert torch.all(fused[k][n][~m] == 0)
    first = names[0]
    assert (fused[0][first] - fused[1][first]).abs().max() > 1e-4  # the seeds really differ


def test_depths_and_architectures_are_checked():
    with pytest.raises(ValueError, match="model.depth of vgg must be one of 11, 13, 16, 19"):
        ModelSpec("vgg", 20)
    with pytest.raises(ValueError, match=r"model.depth of densenet must be 3n\+4"):
        ModelSpec("densenet", 41)
    with pytest.raises(ValueError, match="unknown architecture 'resnext'; allowed: 'preresnet', 'vgg', 'densenet', 'transformer'"):
        ModelSpec("resnext", 20)


def test_registry_names_match_the_config_schema(repo_root):
    schema = yaml.safe_load((repo_root / "schemas" / "config.schema.yaml").read_text())
    assert schema["$defs"]["model"]["properties"]["arch"]["enum"] == list(ARCHITECTURES)


def test_cpu_fuses_only_small_first_activations():
    """On a CPU, VGG-19 and DenseNet-40 at full width train one copy at a time (fusing them
    was slower, benchmarks/README.md); their narrow test versions on 8x8 digits fuse."""
    cpu = Engine()
    assert cpu.copies_for(ModelSpec("vgg", 19), (32, 32), 3) == 1
    assert cpu.copies_for(ModelSpec("densenet", 40), (32, 32), 3) == 1
    assert cpu.copies_for(ModelSpec("vgg", 11, 0.125, in_channels=1), (8, 8), 3) == 3
    assert cpu.copies_for(ModelSpec("densenet", 10, 0.5, in_channels=1), (8, 8), 3) == 3


def test_depth_axis_takes_each_architectures_depths():
    from threeregime.spec.common import ConfigError
    from threeregime.study import resolve_study

    def study(arch, depths):  # the base depth must exist too (the axis replaces it per cell)
        return {"defaults": {"model": {"arch": arch, "depth": depths[0]}, "seeds": {"dense": [1], "retrain": [1, 2]}},
                "studies": {"s": {"temperature": {"axis": "epochs", "values": [160]},
                                  "load": {"axis": "depth", "values": depths}}}}

    base = yaml.safe_load(open(ROOT / "config.yaml").read())
    from threeregime.spec.common import deep_merge

    s = resolve_study(deep_merge(base, study("vgg", [11, 19])), "s")
    assert [c.run.model.depth for _, _, c in s.cells()] == [11, 19]
    s = resolve_study(deep_merge(base, study("densenet", [40, 100])), "s")
    assert [c.run.key.split("_")[1] for _, _, c in s.cells()] == ["densenet40w1", "densenet100w1"]
    with pytest.raises(ConfigError, match="studies.s.depth: model.depth of vgg must be one of 11, 13, 16, 19"):
        resolve_study(deep_merge(base, study("vgg", [11, 20])), "s")
