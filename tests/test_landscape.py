import numpy as np
import pytest
import torch

from threeregime.data import DeviceData
from threeregime.landscape import interpolate, landscape_metrics, linear_cka, lmc_barrier, training_subset
from threeregime.spec.landscape import LandscapeSpec
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.engine import Engine, build_model, reestimate_bn
from tolerance_log import record_close  # largest differences, with THREEREGIME_TOLERANCE_LOG


def test_lmc_hand_made_curves():
    # error counts out of n: exact integers, one division at the end
    assert lmc_barrier(np.array([10] * 11), 100) == 0.0
    # a barrier of 0.3 above the endpoints' mean in the middle
    assert lmc_barrier(np.array([10, 20, 40, 20, 10]), 100) == pytest.approx(-0.3, abs=1e-15)
    # asymmetric endpoints: mean 0.2, worst point 0.5 -> -0.3
    assert lmc_barrier(np.array([10, 50, 30]), 100) == pytest.approx(-0.3, abs=1e-15)
    # a path better than its ends is positive
    assert lmc_barrier(np.array([30, 10, 30]), 100) == pytest.approx(0.2, abs=1e-15)
    with pytest.raises(TypeError, match="integer error counts"):
        lmc_barrier(np.array([0.1, 0.2, 0.1]), 100)


def test_lmc_ties_go_to_the_first_point():
    # A bump and a dip of equal size (2 images each side of the ends' mean of 10): the first in t order wins.
    assert lmc_barrier(np.array([10, 12, 10, 8, 10]), 100) == -0.02
    assert lmc_barrier(np.array([10, 8, 10, 12, 10]), 100) == 0.02
    # The ends always tie (gaps ±(err(1) - err(0))/2): t = 0 wins when nothing inside is larger.
    assert lmc_barrier(np.array([10, 11, 12, 14]), 100) == 0.02
    assert lmc_barrier(np.array([14, 12, 11, 10]), 100) == -0.02
    # n = 1,438 (the demo's error set): as float32 fractions of n, the dip's gap comes out 3e-8 smaller than the
    # bump's (0.00347704 against 0.00347707), so the float code this replaced reported the bump (-5/1438)
    wrong = np.array([504, 499, 504, 509, 504])
    fractions = (wrong / 1438).astype(np.float32).astype(np.float64)
    gaps = np.abs(0.5 * (fractions[0] + fractions[-1]) - fractions)
    assert gaps[3] > gaps[1]
    assert lmc_barrier(wrong, 1438) == 5 / 1438
    assert lmc_barrier(wrong[::-1].copy(), 1438) == -5 / 1438


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


class _OneBN(torch.nn.Module):
    """The least a model needs for reestimate_bn: `copies` and a forward pass on [B, K*C, H, W]."""

    def __init__(self, channels=3):
        super().__init__()
        self.copies = 1
        self.bn = torch.nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.bn(x)


def _toy_data(n=130):
    from threeregime.data import from_arrays

    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    x[64:128] //= 2  # the second batch of 64 darker: the batch means differ, so the estimates do
    y = rng.integers(0, 10, n)
    return DeviceData(from_arrays(x, y, x[:10], y[:10]), torch.device("cpu"))


def test_bn_estimates_of_one_layer_by_hand():
    """130 images, batches of 64, 64 and 2, whatever the engine's batch: the accurate estimate is
    the set's mean and unbiased variance; upstream averages the batches' means and unbiased
    variances weighted by their image counts (the paper code's momentum b / (seen + b))."""
    data = _toy_data()
    x = data.normalize(data.x_train).double().numpy()             # [130, 3, 4, 4], what the BatchNorm sees
    per_channel = x.transpose(1, 0, 2, 3).reshape(3, 130, 16)
    whole = per_channel.reshape(3, -1)
    batches = [per_channel[:, lo:hi].reshape(3, -1) for lo, hi in ((0, 64), (64, 128), (128, 130))]
    weights = np.array([64, 64, 2]) / 130
    expected = {"accurate": (whole.mean(1), whole.var(1, ddof=1)),
                "upstream": (sum(w * b.mean(1) for w, b in zip(weights, batches)),
                             sum(w * b.var(1, ddof=1) for w, b in zip(weights, batches)))}
    for estimate, (mean, var) in expected.items():
        for batch in (100, 1000):   # forward passes of 64 and of 960 images
            model = _OneBN()
            assert reestimate_bn(model, data.x_train, data, Engine(eval_batch_size=batch), estimate) == 1
            # float64 sums of <= 2,080 values of size ~1, stored in float32: float32's rounding (6e-8 relative)
            np.testing.assert_allclose(model.bn.running_mean.double().numpy(), mean, rtol=2e-7, atol=1e-8)
            np.testing.assert_allclose(model.bn.running_var.double().numpy(), var, rtol=2e-7)
            assert int(model.bn.num_batches_tracked) == 0 and not model.training
    # the between-batch spread of the means is in the accurate variance only
    assert np.all(expected["accurate"][1] > expected["upstream"][1] + 0.05)
    with pytest.raises(ValueError, match="bn_estimate must be one of accurate, upstream"):
        reestimate_bn(_OneBN(), data.x_train, data, Engine(), "running")


def _float64_reference(model, x, data, estimate):
    """The train-mode pass in batches of 64 on a float64 copy, with torch's own BatchNorm: for
    upstream the paper code's procedure (reset, momentum b / (seen + b), read the buffers), for
    accurate the whole-set mean and unbiased variance of each BatchNorm's recorded inputs."""
    import copy

    ref = copy.deepcopy(model).double().train()
    bns = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    inputs = {m: [] for m in bns}
    hooks = [m.register_forward_pre_hook(lambda m, i: inputs[m].append(i[0].detach())) for m in bns]
    for m in bns:
        m.reset_running_stats()
    seen = 0
    with torch.no_grad():
        for s in range(0, x.shape[0], 64):
            xb = data.normalize(x[s:s + 64]).double().repeat(1, model.copies, 1, 1)
            for m in bns:
                m.momentum = xb.shape[0] / (seen + xb.shape[0])
            ref(xb)
            seen += xb.shape[0]
    for h in hooks:
        h.remove()
    if estimate == "upstream":
        return [(m.running_mean, m.running_var) for m in bns]
    return [(torch.cat(inputs[m]).mean((0, 2, 3)), torch.cat(inputs[m]).var((0, 2, 3))) for m in bns]


@pytest.mark.parametrize("estimate", ["accurate", "upstream"])
def test_bn_reestimation_equals_a_float64_pass_in_batches_of_64(estimate):
    ds = _digits_data()
    data = DeviceData(ds, torch.device("cpu"))
    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    torch.manual_seed(0)
    model = PreResNet(spec, 2)
    x = data.x_train[:250]   # batches of 64, 64, 64, 58
    expected = _float64_reference(model, x, data, estimate)
    assert reestimate_bn(model, x, data, Engine(eval_batch_size=128), estimate) == len(expected) == 7
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for i, (bn, (mean, var)) in enumerate(zip(bns, expected)):
        scale = var.sqrt()
        record_close(f"{estimate} BN {i}: running_mean vs float64", (bn.running_mean.double() - mean) / scale,
                     torch.zeros_like(mean), atol=1e-5)
        record_close(f"{estimate} BN {i}: running_var vs float64", bn.running_var.double() / var,
                     torch.ones_like(var), atol=1e-5)
        # the model runs in float32: each layer's input is off by float32 rounding of its convolution's
        # sums (~1e-7 relative, growing ~sqrt(depth)); the statistics by as much relative to the spread
        # (means in units of the standard deviation): 1e-5 is a 10x margin over the largest seen (~1e-6)
        torch.testing.assert_close((bn.running_mean.double() - mean) / scale, torch.zeros_like(mean),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(bn.running_var.double() / var, torch.ones_like(var), atol=1e-5, rtol=0)


def test_lmc_and_bn_statistics_do_not_move_with_eval_batch_or_layout(cifar_small):
    """The same cell under eval batch sizes 64, 256 and the whole set, channels_last on and off:
    error curves and LMC equal, BatchNorm statistics equal to float rounding (<= 1e-6)."""
    data = DeviceData(cifar_small, torch.device("cpu"))
    spec = ModelSpec(depth=8, width=0.25, in_channels=cifar_small.image_shape[-1])
    states = _two_copies(spec)
    what = LandscapeSpec(points=5, bn_samples=0, error_samples=0, cka_samples=200)
    mid = interpolate(states[1], states[2], 0.5)
    runs = []
    for batch in (64, 256, data.n_train):
        for channels_last in (False, True):
            engine = Engine(eval_batch_size=batch, channels_last=channels_last)
            (pair,) = landscape_metrics(spec, states, data, engine, what)["pairs"]
            model = build_model(spec, [mid], engine)
            reestimate_bn(model, data.x_train, data, engine)
            runs.append((pair, {n: b.double().clone() for n, b in model.named_buffers() if "running" in n}))
    (ref, ref_bn), rest = runs[0], runs[1:]
    for pair, bn in rest:
        # an image changes class only if its top two logits lie within float rounding (~1e-6 relative) of each
        # other: none of these 640 x 5 do, so the curves count the same images
        assert pair["train_error_curve"] == ref["train_error_curve"] and pair["lmc"] == ref["lmc"]
        record_close("loss curve across eval batch / layout", pair["train_loss_curve"], ref["train_loss_curve"],
                     rtol=1e-6)
        np.testing.assert_allclose(pair["train_loss_curve"], ref["train_loss_curve"], rtol=1e-6)
        for name, value in bn.items():
            if name.endswith("running_var"):
                record_close(f"{name} across eval batch / layout", value / ref_bn[name], torch.ones_like(value),
                             atol=1e-6)
                torch.testing.assert_close(value / ref_bn[name], torch.ones_like(value), atol=1e-6, rtol=0)
            else:  # a mean in units of its standard deviation
                sd = ref_bn[name.replace("running_mean", "running_var")].sqrt()
                record_close(f"{name} across eval batch / layout", (value - ref_bn[name]) / sd,
                             torch.zeros_like(value), atol=1e-6)
                torch.testing.assert_close((value - ref_bn[name]) / sd, torch.zeros_like(value), atol=1e-6, rtol=0)


def test_reestimate_bn_takes_any_batchnorm_and_skips_a_model_without():
    data = _toy_data()

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.copies = 1
            self.sync = torch.nn.SyncBatchNorm(3)      # on one process: a plain BatchNorm
            self.bn3d = torch.nn.BatchNorm3d(3)
            self.bn1d = torch.nn.BatchNorm1d(48)
            self.frozen = torch.nn.BatchNorm1d(48, track_running_stats=False)  # no statistics to estimate
            self.unused = torch.nn.BatchNorm2d(3)

        def forward(self, x):
            x = self.bn3d(self.sync(x).unsqueeze(2))
            return self.frozen(self.bn1d(x.flatten(1)))

    model = Mixed()
    assert reestimate_bn(model, data.x_train, data, Engine(eval_batch_size=100)) == 3
    x = data.normalize(data.x_train).double()
    # the first layer sees the data; the next sees it normalized by batches of 64 (64, 64, 2)
    torch.testing.assert_close(model.sync.running_mean.double(), x.mean((0, 2, 3)), atol=1e-7, rtol=0)
    torch.testing.assert_close(model.sync.running_var.double(), x.var((0, 2, 3)), atol=0, rtol=2e-7)
    normed = torch.cat([torch.nn.functional.batch_norm(x[lo:lo + 64], None, None, training=True, eps=1e-5)
                        for lo in range(0, 130, 64)])
    torch.testing.assert_close(model.bn3d.running_var.double(), normed.var((0, 2, 3)), atol=0, rtol=2e-7)
    # bn3d (weight 1, bias 0) normalizes its batches of 64 again before bn1d sees them, flattened
    flat = torch.cat([torch.nn.functional.batch_norm(normed[lo:lo + 64], None, None, training=True, eps=1e-5)
                      for lo in range(0, 130, 64)]).flatten(1)
    torch.testing.assert_close(model.bn1d.running_var.double(), flat.var(0), atol=0, rtol=2e-6)
    assert model.unused.running_var.eq(1).all() and model.frozen.running_var is None

    class NoBatchNorm(torch.nn.Module):
        copies = 1

        def forward(self, x):
            raise AssertionError("no BatchNorm: nothing to run")

    assert reestimate_bn(NoBatchNorm(), data.x_train, data, Engine()) == 0


def test_landscape_without_batchnorm_says_so(monkeypatch):
    import threeregime.landscape as landscape

    def without_bn(spec, states, engine):
        model = build_model(spec, states, engine)
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(parent, name, torch.nn.Identity())
        return model

    ds = _digits_data()
    spec = ModelSpec(depth=8, width=0.5, in_channels=1)
    what = LandscapeSpec(points=3, bn_samples=100, error_samples=100, cka_samples=100)
    data = DeviceData(ds, torch.device("cpu"))
    with_bn = landscape_metrics(spec, _two_copies(spec), data, Engine(eval_batch_size=100), what)
    assert (with_bn["bn_estimate"], with_bn["bn_layers"]) == ("accurate", 7)
    monkeypatch.setattr(landscape, "build_model", without_bn)
    res = landscape_metrics(spec, _two_copies(spec), data, Engine(eval_batch_size=100), what)
    assert (res["bn_estimate"], res["bn_layers"]) == ("none", 0)
    assert len(res["pairs"][0]["train_error_curve"]) == 3


def test_bn_estimate_is_in_the_key_only_when_not_the_default(repo_root):
    import re
    import yaml

    from threeregime.spec.landscape import BN_ESTIMATES

    assert LandscapeSpec().key == "p11_bn10000_err10000_cka6400"
    upstream = LandscapeSpec(bn_samples=0, error_samples=0, bn_estimate="upstream")
    assert upstream.key == "p11_bn0_err0_cka6400_bnupstream"
    assert upstream.as_dict()["bn_estimate"] == "upstream" and LandscapeSpec(**upstream.as_dict()) == upstream
    with pytest.raises(ValueError, match=r"landscape.bn_estimate must be one of accurate, upstream \(got 'exact'\)"):
        LandscapeSpec(bn_estimate="exact")
    schema = yaml.safe_load((repo_root / "schemas" / "config.schema.yaml").read_text())
    assert schema["$defs"]["landscape"]["properties"]["bn_estimate"]["enum"] == list(BN_ESTIMATES)
    # the Snakefile's wildcard for landscape keys takes both
    pattern = re.search(r'land=r"([^"]+)"', (repo_root / "rules" / "common.smk").read_text()).group(1)
    assert re.fullmatch(pattern, LandscapeSpec().key) and re.fullmatch(pattern, upstream.key)


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
