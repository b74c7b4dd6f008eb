from pathlib import Path

import pytest
import torch

from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.pruning import density_of, magnitude_masks


def _conv(spec=ModelSpec(depth=20)):
    torch.manual_seed(0)
    return {k: v.detach() for k, v in PreResNet(spec).prunable().items()}


def test_uniform_keeps_round_d_n_in_every_layer():
    weights = _conv()
    for d in (0.05, 0.06, 0.07, 0.08, 0.1, 0.14, 0.2, 0.4, 0.8):
        masks = magnitude_masks(weights, d, "uniform")
        for name, w in weights.items():
            assert int(masks[name].sum()) == round(d * w.numel()), (name, d)
            kept = w.abs()[masks[name]]
            dropped = w.abs()[~masks[name]]
            if len(kept) and len(dropped):
                assert kept.min() >= dropped.max()


def test_global_one_threshold_exact_total():
    weights = _conv()
    total = sum(w.numel() for w in weights.values())
    for d in (0.05, 0.2, 0.8):
        masks = magnitude_masks(weights, d, "global")
        assert sum(int(m.sum()) for m in masks.values()) == round(d * total)
        kept = torch.cat([w.abs()[masks[n]] for n, w in weights.items()])
        dropped = torch.cat([w.abs()[~masks[n]] for n, w in weights.items()])
        assert kept.min() >= dropped.max()
        # two integers divided in float64 both ways: the same correctly rounded quotient (1e-12 is only a guard)
        assert abs(density_of(masks) - round(d * total) / total) < 1e-12
    # global differs from uniform: layers keep different fractions
    fr = [m.float().mean().item() for m in magnitude_masks(weights, 0.1, "global").values()]
    assert max(fr) - min(fr) > 0.05


def test_ties_broken_by_index_deterministically():
    w = {"a": torch.ones(10)}
    m = magnitude_masks(w, 0.3, "uniform")["a"]
    assert m.tolist() == [True] * 3 + [False] * 7
    w = {"a": torch.tensor([1.0, -2.0, 2.0, 1.0, -1.0])}
    assert magnitude_masks(w, 0.6, "uniform")["a"].tolist() == [True, True, True, False, False]


def test_classifier_is_not_prunable():
    names = PreResNet(ModelSpec(depth=20)).prunable()
    assert "fc.weight" not in names and "conv1.weight" in names
    assert len(names) == 19 + 2  # 19 3x3 convs + 2 shortcut 1x1 convs in PreResNet-20


def test_preresnet20_has_the_papers_size():
    from threeregime.models import count_parameters

    assert count_parameters(ModelSpec(depth=20)) == 272_282  # "0.27M parameters"
    assert count_parameters(ModelSpec(depth=20, width=2)) > 3 * 272_282


def _preresnet_count(depth: int, width: float, classes: int = 10) -> int:
    """Parameters by hand (the counting rule: every trainable tensor; BatchNorm's running
    statistics are buffers, not parameters): a 3x3 stem conv, three stages of n = (depth-2)/6
    pre-activation blocks (BN, 3x3 conv, BN, 3x3 conv; a 1x1 shortcut conv where the shape
    changes), a final BN and a linear classifier with bias; convolutions have no bias."""
    n = (depth - 2) // 6
    c = [max(1, round(k * width)) for k in (16, 32, 64)]
    total, cin = 3 * c[0] * 9, c[0]
    for cout in c:
        for i in range(n):
            total += 2 * cin + cin * cout * 9 + 2 * cout + cout * cout * 9
            if cin != cout:
                total += cin * cout
            cin = cout
    return total + 2 * c[2] + c[2] * classes + classes


@pytest.mark.parametrize("depth, width, count", [
    (20, 0.5, 68_690), (20, 1, 272_282), (20, 2, 1_084_202), (20, 4, 4_326_986), (20, 6, 9_728_362),
    (20, 8, 17_288_330), (32, 1, 466_714), (44, 1, 661_146), (56, 1, 855_578), (80, 1, 1_244_442),
    (152, 1, 2_411_034),
])
def test_width_and_depth_variants_parameter_counts(depth, width, count):
    """The width and depth load axes' models, pinned (PreResNet-20 at width 1: 272,282)."""
    from threeregime.models import count_parameters

    assert _preresnet_count(depth, width) == count
    assert count_parameters(ModelSpec(depth=depth, width=width)) == count


# --- which weights: prune.layers / prune.exclude ---------------------------------------------------

def test_layer_types_and_exclude_globs_choose_the_weights():
    net = PreResNet(ModelSpec(depth=20))
    default = net.prunable()
    assert net.prunable(("conv", "linear"), ("fc",)).keys() == default.keys()
    assert list(net.prunable(("linear",))) == ["fc.weight"]
    no_stage3 = net.prunable(("conv",), ("layer3.*",))
    assert len(no_stage3) == 21 - 7  # layer3: 3 blocks x 2 convs + its 1x1 shortcut
    assert not any(n.startswith("layer3.") for n in no_stage3)
    # the globs match module names, not weight names, and whole names only
    assert len(net.prunable(("conv",), ("layer3",))) == 21
    assert len(net.prunable(("conv",), ("*.shortcut",))) == 19


def test_torchvision_network_chosen_by_type_and_name():
    from threeregime.generic import build_module

    tv = build_module(ModelSpec("factory", 0, 1.0, 3, 10, "torchvision.models:resnet18", {}, "v"))
    from threeregime.models import FusedNetwork

    chosen = FusedNetwork.prunable(tv, ("conv", "linear"), ("fc", "layer4.*"))
    assert "conv1.weight" in chosen and "layer3.1.conv2.weight" in chosen and "layer3.0.downsample.0.weight" in chosen
    assert "fc.weight" not in chosen and not any(n.startswith("layer4.") for n in chosen)
    assert len(chosen) == 1 + 3 * 2 * 2 + 2  # stem; layers 1-3: 2 blocks x 2 convs; downsample of layers 2, 3


def test_prune_key_unchanged_by_default_and_names_a_selection():
    from threeregime.spec.common import ConfigError
    from threeregime.spec.prune import KEY_PATTERN, PruneSpec, parse_prune_key
    import re

    assert PruneSpec("uniform", 0.05).key == "uniform_d0.05"
    assert PruneSpec("global", 0.1, ("conv",), ()).key == "global_d0.1"
    sel = PruneSpec("uniform", 0.05, ("conv", "linear"), ("fc",))
    assert re.fullmatch(r"uniform_d0\.05_s[0-9a-f]{8}", sel.key)
    assert sel.key != PruneSpec("uniform", 0.05, ("conv", "linear")).key
    assert PruneSpec("uniform", 0.05, ("linear", "conv"), ("fc",)).key == sel.key  # type order is no difference
    for key in ("uniform_d0.05", sel.key):
        assert re.fullmatch(KEY_PATTERN, key)
    assert PruneSpec.from_dict(sel.as_dict()) == sel
    assert parse_prune_key("uniform_d0.05") == PruneSpec()
    with pytest.raises(ConfigError, match=r"prune.layers: \['attention'\] must be a non-empty list"):
        PruneSpec("uniform", 0.05, ("attention",))


def _dense_checkpoint(tmp_path, spec):
    from dataclasses import asdict

    from threeregime.checkpoints import save_torch
    from threeregime.models import build_network

    torch.manual_seed(0)
    path = str(tmp_path / "dense.pt")
    save_torch({"meta": {"kind": "dense"}, "spec": asdict(spec), "state_dict": build_network(spec, 1).copy_state(0)},
               path)
    return path


def test_per_layer_densities_written_beside_the_pruned_file(tmp_path):
    import json

    from threeregime.checkpoints import load_torch
    from threeregime.pipeline import prune_checkpoint

    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    dense = _dense_checkpoint(tmp_path, spec)
    out = tmp_path / "cell" / "pruned.pt"
    achieved = prune_checkpoint(dense, str(out), 0.25, "uniform", {"kind": "dense"}, {"kind": "pruned"},
                                log=lambda *a: None, layers=("conv", "linear"), exclude=("conv1",))
    written = json.loads((tmp_path / "cell" / "densities.json").read_text())
    layers = written["layers"]
    assert "conv1.weight" not in layers and "fc.weight" in layers
    # fc: 10 x 32 weights, uniform keeps round(0.25 * 320) = 80
    assert layers["fc.weight"] == {"kept": 80, "total": 320, "density": 0.25}
    for name, entry in layers.items():
        assert entry["kept"] == round(0.25 * entry["total"]), name
    assert written["achieved_density"] == achieved == sum(e["kept"] for e in layers.values()) / sum(
        e["total"] for e in layers.values())
    assert written["prune"] == {"method": "uniform", "density": 0.25, "layers": ["conv", "linear"],
                                "exclude": ["conv1"]}
    pruned = load_torch(str(out))
    assert set(pruned["mask"]) == set(layers) and pruned["layer_densities"] == layers
    assert torch.count_nonzero(pruned["state_dict"]["fc.weight"]) == 80


def test_masks_export_loads_with_torch_prune_into_the_users_class(tmp_path):
    """python -m threeregime.masks export: custom_from_mask + load_state_dict into the user's
    own class gives the pruned network, and its pruned weights stay zero when trained."""
    import subprocess
    import sys
    import textwrap

    import torch.nn.utils.prune as torch_prune

    from threeregime.checkpoints import load_torch
    from threeregime.pipeline import prune_checkpoint
    from threeregime.spec.model import factory_source

    (tmp_path / "nets.py").write_text(textwrap.dedent('''
        import torch.nn as nn

        class Tiny(nn.Module):
            def __init__(self, num_classes=10):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
                self.fc = nn.Linear(4, num_classes)

            def forward(self, x):
                return self.fc(self.features(x).mean(dim=(2, 3)))

        def tiny(num_classes=10):
            return Tiny(num_classes)
    '''))
    factory = f"{tmp_path / 'nets.py'}:tiny"
    spec = ModelSpec("factory", 0, 1.0, 1, 10, factory, {}, factory_source(factory))
    dense = _dense_checkpoint(tmp_path, spec)
    pruned_path = str(tmp_path / "pruned.pt")
    prune_checkpoint(dense, pruned_path, 0.5, "global", {"kind": "dense"}, {"kind": "pruned"},
                     log=lambda *a: None, layers=("conv", "linear"))
    out = tmp_path / "masks.pt"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "threeregime.masks", "export", pruned_path, str(out)], cwd=root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "masks of 2 modules" in done.stdout
    exported = torch.load(out, weights_only=True)
    assert set(exported["masks"]) == {"features.0", "fc"}

    sys.path.insert(0, str(tmp_path))
    try:
        import nets
    finally:
        sys.path.remove(str(tmp_path))
    net = nets.Tiny()
    for name, mask in exported["masks"].items():
        torch_prune.custom_from_mask(net.get_submodule(name), "weight", mask)
    net.load_state_dict(exported["state_dict"])
    pruned = load_torch(pruned_path)
    plain = nets.Tiny()
    plain.load_state_dict(pruned["state_dict"])
    x = torch.randn(3, 1, 6, 6)
    net.eval(), plain.eval()
    assert torch.equal(net(x), plain(x))
    assert torch.equal(net.fc.weight_mask.bool(), pruned["mask"]["fc.weight"])
    # prune's pre-hook holds the pruned weights at zero through an update of weight_orig
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    net(x).sum().backward()
    opt.step()
    assert torch.all(net.fc.weight[~pruned["mask"]["fc.weight"]] == 0)
    # a retrained file needs --seed; a file without masks is refused
    bad = subprocess.run([sys.executable, "-m", "threeregime.masks", "export", dense, str(out)], cwd=root,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "has no pruning mask" in bad.stderr
