import torch

from threeregime.models import ModelSpec, PreResNet
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
