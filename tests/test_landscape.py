import numpy as np
import pytest
import torch

from threeregime.data import DeviceData
from threeregime.landscape import interpolate, landscape_metrics, linear_cka, lmc_barrier, training_subset
from threeregime.spec.landscape import LandscapeSpec
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.engine import Engine, reestimate_bn
from tolerance_log import record_close  # largest differences, with THREEREGIME_TOLERANCE_LOG


def test_lmc_hand_made_curves():
    # float64 sums of 2-3 decimal numbers: off by ~1e-16 from the decimal answer; pytest.approx's rel 1e-6
    assert lmc_barrier([0.1] * 11) == 0.0
    # a barrier of 0.3 above the endpoints' mean in the middle
    assert lmc_barrier([0.1, 0.2, 0.4, 0.2, 0.1]) == pytest.approx(-0.3)
    # asymmetric endpoints: mean 0.2, worst point 0.5 -> -0.3
    assert lmc_barrier([0.1, 0.5, 0.3]) == pytest.approx(-0.3)
    # a path better than its ends is positive
    assert lmc_barrier([0.3, 0.1, 0.3]) == pytest.approx(0.2)
    # largest |gap| wins even when it is at an endpoint (t* over all points)
    assert lmc_barrier([0.0, 0.05, 0.4]) == pytest.approx(0.2)


def _x(n=200, p=12, seed=0):
    return torch.randn(n, p, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cka_identity_invariances_and_direct_formula():
    # float64 throughout (eps 2.2e-16): Gram entries are sums of n = 200 products, the norms sums of p^2 <= 144
    # of them: <= (200 + 144) eps ~ 8e-14 relative on each of the three norms -> abs 1e-12 on a ratio <= 1.
    # With q from a QR (orthogonal to ~12 * 12 eps = 3e-14, entering squared and times p): abs 1e-10.
    x, y = _x(), _x(p=7, seed=1)
    record_close("cka(x, x) vs 1", linear_cka(x, x), 1.0, atol=1e-12)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(_x(12, 12, seed=2))
    record_close("cka(x, xq) vs 1", linear_cka(x, x @ q), 1.0, atol=1e-10)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    record_close("cka(x, 7.5y) vs cka(x, y)", linear_cka(x, 7.5 * y), linear_cka(x, y), atol=1e-12)
    assert linear_cka(x, 7.5 * y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    record_close("cka(0.1xq, y) vs cka(x, y)", linear_cka(x @ q * 0.1, y), linear_cka(x, y), atol=1e-10)
    assert linear_cka(x @ q * 0.1, y) == pytest.approx(linear_cka(x, y), abs=1e-10)
    # direct formula with centred Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    direct = (k * l).sum() / torch.sqrt((k * k).sum() * (l * l).sum())
    record_close("cka vs direct formula", linear_cka(x, y), float(direct), atol=1e-12)
    # float64: the direct formula adds two 200 x 200 matrix products and sums of n^2 = 40,000 terms
    # (pairwise: ~16 levels): ~ (200 + 16) eps ~ 5e-14 relative -> abs 1e-12
    assert linear_cka(x, y) == pytest.approx(float(direct), abs=1e-12)
    assert 0.0 < linear_cka(x, y) < 0.5


def _digits_data():
    from threeregime.data import from_arrays, load_digits_dataset

    ds = load_digits_dataset()
    return from_arrays(ds.x_train[:300], ds.y_train[:300], ds.x_test[:50], ds.y_test[:50])


def test_bn_reestimation_equals_training_set_statistics():
    ds = _digits_data()
    data = DeviceData(ds, torch.device("cpu"))
    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    torch.manual_seed(0)
    model = PreResNet(spec, 2)
    engine = Engine(eval_batch_size=128)  # 300 = 128 + 128 + 44: unequal batches
    reestimate_bn(model, data.x_train, data, engine)
    # The first BatchNorm sees conv1's output; compute its statistics over the whole set directly.
    with torch.no_grad():
        x = data.normalize(data.x_train).repeat(1, 2, 1, 1)
        feats = model.conv1(x).double()
        mean = feats.mean(dim=(0, 2, 3))
        var = feats.var(dim=(0, 2, 3), unbiased=True)
    bn = model.layer1[0].bn1
    record_close("first BN: running_mean vs float64 mean", bn.running_mean.double(), mean, atol=1e-5, rtol=1e-5)
    record_close("first BN: running_var vs float64 var", bn.running_var.double(), var, atol=1e-5, rtol=1e-5)
    # BN's batch mean/var in fp32 over <= 128*8*8 = 8,192 values a channel (cascade sums, <= ~13 roundings:
    # 1.6e-6 of sum|x|/n, |x| ~ 1), merged in float64 and stored in fp32 (6e-8); 1e-5: x5
    torch.testing.assert_close(bn.running_mean.double(), mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var.double(), var, atol=1e-5, rtol=1e-5)
    # a deeper layer: its input in a train-mode pass over the whole set at once (full-batch
    # statistics differ from per-batch ones, so compare with the same batching via hooks)
    seen = []
    h = model.layer2[0].bn1.register_forward_pre_hook(lambda m, i: seen.append(i[0].detach().double()))
    model.train()
    with torch.no_grad():
        for s in range(0, 300, 128):
            model.layer2[0].bn1.momentum = 0.0
            model(data.normalize(data.x_train[s:s + 128]).repeat(1, 2, 1, 1))
    h.remove()
    allf = torch.cat(seen)
    deep = model.layer2[0].bn1
    record_close("layer2 BN: running_mean vs float64 mean", deep.running_mean.double(), allf.mean(dim=(0, 2, 3)),
                 atol=1e-5, rtol=1e-5)
    record_close("layer2 BN: running_var vs float64 var", deep.running_var.double(), allf.var(dim=(0, 2, 3)),
                 atol=1e-4, rtol=1e-4)
    # as above, and the reference's inputs come from other passes than reestimate_bn's (momentum 0 here):
    # the same fp32 ops on the same batches, so the mean keeps 1e-5; the variance (|x| up to ~10, var
    # ~1-10, its sums of squares ~ 100 x larger than var x n) keeps 1e-4
    torch.testing.assert_close(deep.running_mean.double(), allf.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(deep.running_var.double(), allf.var(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)


def test_lmc_of_a_model_with_itself_is_zero():
    ds = _digits_data()
    data = DeviceData(ds, torch.device("cpu"))
    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    torch.manual_seed(0)
    state = PreResNet(spec, 1).copy_state(0)
    res = landscape_metrics(spec, {1: state, 2: state}, data, Engine(eval_batch_size=100),
                            LandscapeSpec(points=5, cka_samples=200))
    (pair,) = res["pairs"]
    # Exact: t*w + (1 - t)*w is w to 1 ulp, which moves no prediction of these 300 images (an image would need
    # its top two logits within ~1e-6 of each other): every point counts the same errors, on any CPU
    assert pair["lmc"] == 0.0
    assert len(set(pair["train_error_curve"])) == 1
    record_close("cka of a model with itself vs 1", pair["cka"], 1.0, atol=1e-9)
    # the two copies' probabilities agree to fp32 rounding d ~ 1e-7 relative (equal when the grouped kernel
    # treats both groups alike); CKA is 1 - O(d^2) ~ 1e-14, float64 sums add ~1e-13 -> abs 1e-9
    assert pair["cka"] == pytest.approx(1.0, abs=1e-9)


def test_interpolation_is_linear_and_resets_bn():
    spec = ModelSpec(depth=8, width=0.5)
    torch.manual_seed(0)
    a, b = PreResNet(spec).copy_state(0), PreResNet(spec).copy_state(0)
    mid = interpolate(a, b, 0.25)
    # the same two fp32 products and one sum: equal to rounding (assert_close's fp32 defaults, rtol 1.3e-6)
    torch.testing.assert_close(mid["conv1.weight"], 0.25 * a["conv1.weight"] + 0.75 * b["conv1.weight"])
    assert np.all(mid["bn.running_mean"].numpy() == 0) and np.all(mid["bn.running_var"].numpy() == 1)


def test_cka_of_a_collapsed_representation_is_undefined():
    x = _x()
    const = torch.full((200, 10), 0.1, dtype=torch.float64) + 1e-17 * _x(200, 10, seed=3)
    assert np.isnan(linear_cka(x, const)) and np.isnan(linear_cka(const, const))
    from threeregime.regimes import Regimes

    assert Regimes(-0.05, 0.9).classify(0.0, float("nan")) == "missing"
    assert Regimes(-0.05, 0.9).classify(-0.2, float("nan")) == "I"
    assert Regimes(-0.05, 0.9).classify(0.0, 0.95) == "II-B" and Regimes(-0.05, 0.9).classify(0.0, 0.5) == "II-A"


def test_training_subsets_are_fixed_sorted_and_nested():
    small, large = training_subset(1000, 100), training_subset(1000, 400)
    assert len(small) == 100 and len(large) == 400 and len(set(large.tolist())) == 400
    assert torch.equal(small, small.sort().values) and torch.equal(small, training_subset(1000, 100))
    assert set(small.tolist()) <= set(large.tolist())
    assert torch.equal(training_subset(1000, 0), torch.arange(1000))
    assert torch.equal(training_subset(1000, 5000), torch.arange(1000))
    with pytest.raises(ValueError, match="bn_samples"):
        LandscapeSpec(bn_samples=-1)


def _two_copies(spec):
    states = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        states[seed] = PreResNet(spec, 1).copy_state(0)
    return states


def test_subset_metrics_equal_whole_set_metrics_of_the_subset():
    """BatchNorm re-estimation, the error curve and CKA all use the configured subset: the
    result equals the whole-set result on a data set holding only those images."""
    from threeregime.data import from_arrays

    ds = _digits_data()
    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    states = _two_copies(spec)
    engine = Engine(eval_batch_size=64)
    idx = training_subset(len(ds.y_train), 120).numpy()
    sub = from_arrays(ds.x_train[idx], ds.y_train[idx], ds.x_test, ds.y_test, mean=ds.mean, std=ds.std)
    on_subset = landscape_metrics(spec, states, DeviceData(ds, torch.device("cpu")), engine,
                                  LandscapeSpec(points=5, bn_samples=120, error_samples=120, cka_samples=120))
    whole = landscape_metrics(spec, states, DeviceData(sub, torch.device("cpu")), engine,
                              LandscapeSpec(points=5, bn_samples=0, error_samples=0, cka_samples=0))
    assert on_subset["samples"] == whole["samples"] == {"bn": 120, "error": 120, "cka": 120}
    (a,), (b,) = on_subset["pairs"], whole["pairs"]
    assert a == b
    # and the subset changes the answer: the same networks measured on all 300 images
    full = landscape_metrics(spec, states, DeviceData(ds, torch.device("cpu")), engine,
                             LandscapeSpec(points=5, bn_samples=0, error_samples=0, cka_samples=0))
    assert full["pairs"][0]["train_loss_curve"] != a["train_loss_curve"]


def test_grouped_and_one_at_a_time_evaluation_agree():
    ds = _digits_data()
    data = DeviceData(ds, torch.device("cpu"))
    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    states = _two_copies(spec)
    what = LandscapeSpec(points=5, bn_samples=200, error_samples=0, cka_samples=0)
    grouped = landscape_metrics(spec, states, data, Engine(eval_batch_size=100), what, chunk=5)
    single = landscape_metrics(spec, states, data, Engine(eval_batch_size=100), what, chunk=1)
    (g,), (s,) = grouped["pairs"], single["pairs"]
    record_close("train loss curve grouped vs single", g["train_loss_curve"], s["train_loss_curve"],
                 atol=1e-6, rtol=1e-5)
    record_close("train error curve grouped vs single", g["train_error_curve"], s["train_error_curve"],
                 atol=1 / 300 + 1e-9)
    record_close("cka grouped vs single", g["cka"], s["cka"], atol=1e-6)
    # fp32 forward passes, grouped vs plain kernels: each logit off by ~sqrt(L) eps ~ 1e-6 relative (L <= 32*9
    # terms a layer, 7 layers, BN re-estimated from sums of <= 100*8*8 values), so the mean loss of 300 images
    # (~2.3) by ~1e-6 relative: rtol 1e-5
    np.testing.assert_allclose(g["train_loss_curve"], s["train_loss_curve"], rtol=1e-5, atol=1e-6)
    # an image on a decision boundary may flip under rounding: allow one image in 300
    np.testing.assert_allclose(g["train_error_curve"], s["train_error_curve"], atol=1 / 300 + 1e-9)
    # CKA: both runs build the same 2-copy network for it (chunk only groups the LMC networks): equal up to
    # float64 sums (~1e-13); abs 1e-6 would still pass an fp32-level (1e-7 relative) difference in the logits
    assert g["cka"] == pytest.approx(s["cka"], abs=1e-6)
