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
