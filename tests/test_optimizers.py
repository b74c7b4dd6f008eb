"""Optimizers (SGD, Adam, SAM), the fixed-iteration schedule and segmented runs of train_copies."""

import math

import pytest
import torch
import torch.nn.functional as F

import threeregime.training as training
from threeregime.checkpoints import load_torch, save_torch
from threeregime.data import DeviceData, from_arrays
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.pruning import apply_masks, magnitude_masks
from threeregime.training import train_copies
from threeregime.engine import Engine
from threeregime.steps import sam_step
from threeregime.spec.common import resolve
from threeregime.spec.train import OPTIMIZERS, OptimizerEntry, TrainSpec

from tolerance_log import record, record_close  # largest differences, with THREEREGIME_TOLERANCE_LOG

QUIET = dict(log=lambda *a: None)
PAPER = dict(iterations=62400, milestones=(31200, 46800), lr=0.1, gamma=0.1)


def _setup(ds, n, augment=True):
    small = from_arrays(ds.x_train[:n], ds.y_train[:n], ds.x_test[:64], ds.y_test[:64])
    spec = ModelSpec(depth=8, width=0.5, in_channels=small.image_shape[-1], num_classes=small.num_classes)
    data = DeviceData(small, torch.device("cpu"), crop_padding=4 if augment else 0, hflip=augment)
    torch.manual_seed(0)
    return spec, data, PreResNet(spec).copy_state(0)


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _assert_bitwise(a: list[dict], b: list[dict]) -> None:
    """Bitwise equal. Claimed only for two runs in one process, on one machine, with the same
    thread count and the same kernels (the same model layout and batch shapes): then every
    float op is repeated in the same order. Not across CPUs, thread counts or kernels."""
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


# --- schedule arithmetic ------------------------------------------------------------------------

@pytest.mark.parametrize("batch, per_epoch, epochs, last", [
    (16, 3125, 20, 3025),   # 3125 * 20 = 62,500 > 62,400: the 20th epoch is cut to 3,025 steps
    (21, 2380, 27, 520),    # 50,000 = 2380 * 21 + 20: 20 images dropped per epoch
    (128, 390, 160, 390),   # exactly 160 epochs
    (512, 97, 644, 29),     # 97 * 643 = 62,371
])
def test_iteration_schedule_arithmetic(batch, per_epoch, epochs, last):
    hp = TrainSpec(batch_size=batch, **PAPER)
    n = 50000
    assert hp.steps_per_epoch(n) == per_epoch
    assert hp.total_epochs(n) == epochs
    assert hp.steps_in_epoch(epochs - 1, n) == last
    assert all(hp.steps_in_epoch(e, n) == per_epoch for e in range(epochs - 1))
    assert sum(hp.steps_in_epoch(e, n) for e in range(epochs)) == 62400
    lrs = [hp.lr_at_step(s, n) for s in (0, 31199, 31200, 46799, 46800, 62399)]
    assert lrs == [0.1, 0.1, 0.1 * 0.1 ** 1, 0.1 * 0.1 ** 1, 0.1 * 0.1 ** 2, 0.1 * 0.1 ** 2]
    with pytest.raises(ValueError, match="outside"):
        hp.steps_in_epoch(epochs, n)


def test_small_schedules_and_epoch_schedule_helpers():
    it = TrainSpec(batch_size=32, iterations=10, milestones=(7,))
    assert (it.steps_per_epoch(100), it.total_epochs(100)) == (3, 4)          # 4 images dropped per epoch
    assert [it.steps_in_epoch(e, 100) for e in range(4)] == [3, 3, 3, 1]
    assert [it.lr_at_step(s, 100) for s in (6, 7)] == [0.1, 0.1 * 0.1]
    assert TrainSpec(batch_size=100, iterations=3, milestones=()).total_epochs(100) == 3
    with pytest.raises(ValueError, match="larger than the training set"):
        TrainSpec(batch_size=101, iterations=3, milestones=()).steps_per_epoch(100)
    with pytest.raises(ValueError, match="lr_at_step"):
        it.lr_at(0)
    # epoch schedule: every batch, the last partial one included; lr per epoch
    ep = TrainSpec(batch_size=32, epochs=6, milestones=(2, 4))
    assert (ep.steps_per_epoch(100), ep.total_epochs(100), ep.steps_in_epoch(5, 100)) == (4, 6, 4)
    assert [ep.lr_at_step(s, 100) for s in (0, 7, 8, 15, 16)] == [ep.lr_at(e) for e in (0, 1, 2, 3, 4)]


@pytest.mark.parametrize("kw, match", [
    (dict(optimizer="rmsprop"), r"optimizer.*'rmsprop'.*'sgd', 'adam', 'sam'"),
    (dict(optimizer="sam", rho=-0.1), "rho must be >= 0"),
    (dict(epochs=10, milestones=(5, 5)), "increasing"),
    (dict(epochs=10, milestones=(6, 3)), "increasing"),
    (dict(epochs=10, milestones=(10,)), r"epochs here and must lie in 1\.\.9"),
    (dict(iterations=100, milestones=(100,)), r"iterations here and must lie in 1\.\.99"),
    (dict(iterations=-1), "iterations must be >= 0"),
])
def test_train_spec_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainSpec(**kw)


def test_iteration_run_takes_exactly_its_steps_on_full_batches(cifar_small, monkeypatch):
    """200 images at batch 64: 3 steps an epoch (8 images dropped); 7 iterations = 3 + 3 + 1;
    the lr drops at step 4, inside the second epoch, and the log shows each epoch's first lr."""
    spec, data, init = _setup(cifar_small, 200)
    calls = []
    adam = OPTIMIZERS["adam"]
    adam_step = resolve(adam.step)

    def counting_step(model, opt, mask_pairs, data, plan, start, stop, engine, sums, autocast=None, hp=None):
        calls.append((start, stop, opt.param_groups[0]["lr"]))
        adam_step(model, opt, mask_pairs, data, plan, start, stop, engine, sums, autocast=autocast, hp=hp)

    monkeypatch.setitem(OPTIMIZERS, "adam", OptimizerEntry(adam.build, counting_step))
    hp = TrainSpec(optimizer="adam", lr=1e-3, batch_size=64, iterations=7, milestones=(4,))
    state = {}
    _, history = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(), state_out=state, **QUIET)
    assert [(a, b) for a, b, _ in calls] == [(0, 64), (64, 128), (128, 192)] * 2 + [(0, 64)]
    assert [lr for *_, lr in calls] == [1e-3] * 4 + [1e-3 * 0.1] * 3
    assert [h.epoch for h in history] == [1, 2, 3] and [h.lr for h in history] == [1e-3, 1e-3, 1e-3 * 0.1]
    assert all(s["step"].item() == 7 for s in state["optimizer"]["state"].values())  # Adam's own count
    assert state["epoch"] == 3


# --- SAM --------------------------------------------------------------------------------------

def test_sam_step_matches_hand_computation(cifar_small):
    """One SAM step against plain autograd on an ordinary network: ascent of size rho along
    the normalised gradient, gradient at w + e applied from w by SGD (momentum and weight
    decay), BatchNorm statistics moved once, by the pass at w."""
    spec, data, init = _setup(cifar_small, 16, augment=False)
    hp = TrainSpec(optimizer="sam", rho=0.05, lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=16, epochs=1,
                   milestones=())
    model = PreResNet(spec)
    model.load_copies([init])
    opt = resolve(OPTIMIZERS["sam"].build)(model.parameters(), hp)
    seen = []  # the parameters each forward pass sees
    model.register_forward_pre_hook(lambda m, a: seen.append({n: p.detach().clone() for n, p in m.named_parameters()}))
    sums = torch.zeros(1, 2, dtype=torch.float64)
    model.train()
    sam_step(model, opt, [], data, {"order": torch.arange(16)[None]}, 0, 16, Engine(), sums, hp=hp)

    # by hand, on an ordinary network
    ref = PreResNet(spec)
    ref.load_state_dict(init)
    ref.train()
    names = [n for n, _ in ref.named_parameters()]
    w = [p.detach().clone() for p in ref.parameters()]
    x, y = data.normalize(data.x_train[:16]), data.y_train[:16]
    loss = F.cross_entropy(ref(x)[:, 0], y)
    g = torch.autograd.grad(loss, list(ref.parameters()))
    norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    e = [hp.rho * t / norm for t in g]
    e_norm = torch.sqrt(sum((t ** 2).sum() for t in e)).item()
    record_close("|e by hand| vs rho", e_norm, hp.rho, rtol=3e-6)
    # fp32: |e|^2 and |g|^2 are each a cascade sum (<= 9,216 values: ~14 levels) then 26 more additions, all of
    # positive terms (<= eps/2 relative each), and e_i rounds twice: <= (2 * 40 / 2 + 2) eps = 42 eps = 5e-6 on
    # |e|^2, half of it on |e| -> 2.5e-6; rel_tol 3e-6
    assert math.isclose(e_norm, hp.rho, rel_tol=3e-6)
    perturbed = PreResNet(spec)
    perturbed.load_state_dict(init)
    perturbed.train()
    with torch.no_grad():
        for p, wi, ei in zip(perturbed.parameters(), w, e):
            p.copy_(wi + ei)
    g2 = torch.autograd.grad(F.cross_entropy(perturbed(x)[:, 0], y), list(perturbed.parameters()))
    expected = [wi - hp.lr * (gi + hp.weight_decay * wi) for wi, gi in zip(w, g2)]  # SGD's first step

    assert len(seen) == 2
    e_sam = {n: seen[1][n] - seen[0][n] for n in names}
    e_sam_norm = torch.sqrt(sum((t ** 2).sum() for t in e_sam.values())).item()
    record_close("|e_sam| vs rho", e_sam_norm, hp.rho, rtol=1e-5)
    # e_sam = fl(w + e) - w (the subtraction is exact): each element off by r_i <= ulp(|w| < 2)/2 = 6e-8,
    # uncorrelated with e: |r| <= sqrt(19,858) * 6e-8 = 8.5e-6, moving |e| = 0.05 by ~|r|/sqrt(N)/|e| = 1.2e-6,
    # plus the norms' sums as above (<= 2.5e-6) -> ~4e-6; rel_tol 1e-5
    assert math.isclose(e_sam_norm, hp.rho, rel_tol=1e-5)
    for n, ei in zip(names, e):
        record_close(f"e_sam vs e by hand: {n}", e_sam[n], ei, atol=1e-7, rtol=1e-4)
        # atol: the rounding of w + e, <= ulp(|w| < 2)/2 = 6e-8; rtol: the two ascent norms (summed in other
        # orders, <= 2.5e-6 each) and e's own roundings; 1e-4 leaves x20 (a wrong norm is off by O(1))
        torch.testing.assert_close(e_sam[n], ei, atol=1e-7, rtol=1e-4)
    after = dict(model.named_parameters())
    for n, ex in zip(names, expected):
        record_close(f"w after SAM step vs by hand: {n}", after[n].detach(), ex, atol=1e-6, rtol=1e-5)
        # w - lr (g(w + e) + wd w): rounds at ulp(|w| < 2)/2 = 6e-8; the two w + e differ by <= 6e-8 (above),
        # moving g(w + e) by curvature x 6e-8 (<= 6e-6 even at 100) -> x lr 0.1 <= 6e-7; atol 1e-6, rtol 1e-5
        torch.testing.assert_close(after[n].detach(), ex, atol=1e-6, rtol=1e-5)
    # BatchNorm: one update, from the pass at w (ref ran exactly that pass); recorded loss is the first pass's
    for n, b in model.named_buffers():
        if n.endswith("num_batches_tracked"):
            assert b.item() == 1, n
        else:
            record_close(f"BN buffer vs by hand: {n}", b, dict(ref.named_buffers())[n], atol=1e-6, rtol=1e-5)
            # the same pass on the same input; batch statistics over 16*32*32 = 16,384 values per channel in
            # fp32 (cascade sums: <= ~15 eps = 1.8e-6 relative, in whatever order), x momentum 0.1 -> 1e-5
            torch.testing.assert_close(b, dict(ref.named_buffers())[n], atol=1e-6, rtol=1e-5)
    record_close("recorded loss vs by hand", sums[0, 0].item() / 16, loss.item(), rtol=1e-5)
    # 16 fp32 per-image losses summed in float64 vs fp32 cross_entropy's mean: <= 16 eps = 1.9e-6 -> 1e-5
    assert math.isclose(sums[0, 0].item() / 16, loss.item(), rel_tol=1e-5)


# max |fused - alone| over the weights after 3 steps of 64 (fp32; grouped and plain convolutions sum in
# another order). Plain rounding is ~1e-7: w rounds once a step (|w| < 2: ulp/2 <= 1.2e-7) plus lr * dg. But a
# ReLU whose input lies within rounding of 0 (~1 per run of ~3e6 pre-activations) flips, changing one of the
# 64*32*32 terms of a weight's gradient sum: dg <= ~3.4e-5 (measured; |g| <= 0.1). Its effect on w differs:
FUSED_TOL = {
    # SAM: the ascent rho/|g| ~ 0.13 (vs lr 0.01) and the curvature at w + e carry a dg of step 1 into the
    # final weights with gain ~1.8 (a 1e-5 change of step 1's gradient gave 1.8e-5) -> one flip <= 6e-5; 1e-4.
    # (Measured <= 2.9e-5 over 20 seeds; a joint, not per-copy, ascent norm gives 1.5e-4 and 2.4e-4 here.)
    "sam": 1e-4,
    # Adam: lr * m/sqrt(v) is scale-free in g, so an element's relative error dg/g reaches w unscaled: <= lr * 3
    # steps * dg/g; ~150 of the 19,858 gradient elements are < 1e-5, where dg/g reaches ~1e-2 -> 3e-5;
    # bound lr/10 = 1e-4 (a copy reading another copy's moments would be off by ~lr).
    "adam": 1e-4,
}


@pytest.mark.parametrize("optimizer, lr, rho", [("sam", 0.01, 0.05), ("adam", 1e-3, 0.0)])
def test_fused_copies_match_separate_runs(cifar_small, optimizer, lr, rho):
    """Two copies in one grouped network = two separate runs (SAM: each copy's own ascent norm),
    to the float tolerance of FUSED_TOL (not bitwise: the kernels differ)."""
    spec, data, init = _setup(cifar_small, 192)  # 3 steps of 64
    hp = TrainSpec(optimizer=optimizer, rho=rho, epochs=1, batch_size=64, lr=lr, milestones=())
    fused, fh = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(), **QUIET)
    for k, seed in enumerate((1, 2)):
        (alone,), ah = train_copies(spec, [init], [seed], data, hp, Engine(), **QUIET)
        diff = max((fused[k][n] - alone[n]).abs().max().item() for n, _ in PreResNet(spec).named_parameters())
        record(f"max |fused - alone| seed {seed}", diff, FUSED_TOL[optimizer])
        assert diff <= FUSED_TOL[optimizer], (seed, diff)
        dloss = abs(fh[0].train_loss[k] - ah[0].train_loss[0])
        record(f"|train loss fused - alone| seed {seed}", dloss, 1e-5)
        # loss ~2.3 (ulp 2.4e-7; 192 fp32 losses summed in float64): taken at w before each step, where the runs
        # differ by <= ~1e-6 (the last step's difference is not in it), |g| 0.4 -> ~1e-6; 1e-5 = 40 ulp
        assert dloss < 1e-5
    assert _max_diff(fused[0], init) > 1e-4 and _max_diff(fused[0], fused[1]) > 1e-4


@pytest.mark.parametrize("optimizer, lr, rho", [("adam", 1e-3, 0.0), ("sam", 0.1, 0.1)])
def test_masked_weights_stay_exactly_zero(cifar_small, optimizer, lr, rho):
    spec, data, init = _setup(cifar_small, 128)
    masks = magnitude_masks({n: init[n] for n in PreResNet(spec).prunable()}, 0.1, "uniform")
    pruned = apply_masks(init, masks)
    hp = TrainSpec(optimizer=optimizer, lr=lr, rho=rho, epochs=2, batch_size=64, weight_decay=5e-4, milestones=())
    states, _ = train_copies(spec, [pruned] * 2, [1, 2], data, hp, Engine(), masks=masks, **QUIET)
    for st in states:
        for name, m in masks.items():
            assert torch.all(st[name][~m] == 0), name
        assert not torch.equal(st["conv1.weight"], pruned["conv1.weight"])  # it did train


def test_sam_with_rho_zero_is_sgd(cifar_small):
    """Bitwise: with rho 0 sam_step runs exactly train_step's ops (same process and kernels)."""
    spec, data, init = _setup(cifar_small, 128)
    common = dict(epochs=1, batch_size=64, milestones=())
    sgd, sh = train_copies(spec, [init] * 2, [1, 2], data, TrainSpec(**common), Engine(), **QUIET)
    sam, ah = train_copies(spec, [init] * 2, [1, 2], data, TrainSpec(optimizer="sam", rho=0.0, **common), Engine(),
                           **QUIET)
    _assert_bitwise(sgd, sam)
    assert sh == ah


def test_failed_compile_falls_back_to_eager_mid_sam_step(cifar_small, monkeypatch):
    """The compiler fails in SAM's second pass (weights at w + e, BN stats moved): the fallback
    restores the model and redoes the step eagerly, bitwise as an eager run (in this process:
    the same eager kernels in the same order)."""
    class HalfBroken(torch.nn.Module):  # as torch.compile's wrapper: the model is a submodule
        def __init__(self, model):
            super().__init__()
            self._orig_mod, self.calls = model, 0

        def forward(self, *a, **k):
            self.calls += 1
            if self.calls > 1:
                raise RuntimeError("no C++ compiler found")
            return self._orig_mod(*a, **k)

    def half_broken_compile(model, **kw):
        return HalfBroken(model)

    spec, data, init = _setup(cifar_small, 128)
    hp = TrainSpec(optimizer="sam", rho=0.05, epochs=1, batch_size=64, lr=0.01, milestones=())
    eager, eh = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(), **QUIET)
    monkeypatch.setattr(training.torch, "compile", half_broken_compile)
    lines = []
    fell_back, fh = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(compile="default"), log=lines.append)
    assert [ln for ln in lines if "torch.compile failed (RuntimeError: no C++ compiler found)" in ln]
    _assert_bitwise(eager, fell_back)
    assert eh == fh


# --- segmented runs ---------------------------------------------------------------------------

SEGMENTED = {
    "sgd": dict(epochs=4, milestones=(3,)),
    "adam": dict(optimizer="adam", lr=1e-3, epochs=4, milestones=(3,)),
    "sam": dict(optimizer="sam", rho=0.05, epochs=4, milestones=(3,)),
    # 160 images at batch 64: 2 steps an epoch (32 dropped), 7 steps = 2 + 2 + 2 + 1, lr drops mid-epoch 3
    "iterations": dict(iterations=7, milestones=(5,)),
}


@pytest.mark.parametrize("kind", list(SEGMENTED))
def test_segmented_run_is_bitwise_equal_to_one_run(cifar_small, tmp_path, kind):
    """Bitwise: both runs take the same steps with the same kernels in this process, and the
    checkpoint stores every float exactly (torch.save keeps the bits)."""
    spec, data, init = _setup(cifar_small, 160 if kind == "iterations" else 128)
    hp = TrainSpec(batch_size=64, **SEGMENTED[kind])
    assert hp.total_epochs(data.n_train) == 4
    full_state = {}
    full, fh = train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), state_out=full_state, **QUIET)

    first = {}
    _, h1 = train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), stop_epoch=2, state_out=first, **QUIET)
    assert len(h1) == 2 and first["epoch"] == 2
    path = str(tmp_path / "segment.pt")  # as the pipeline does: through a checkpoint file
    save_torch({"train_state": first}, path)
    start = load_torch(path)["train_state"]
    lines, last = [], {}
    # init_states are ignored when continuing: pass something else to prove it
    seg, sh = train_copies(spec, [PreResNet(spec).copy_state(0)] * 2, [4, 5], data, hp, Engine(),
                           start_state=start, stop_epoch=4, state_out=last, log=lines.append)
    assert any("continuing from a training state at epoch 2" in ln for ln in lines)
    _assert_bitwise(full, seg)
    assert fh == sh and [h.epoch for h in sh] == [1, 2, 3, 4]
    assert last["epoch"] == 4
    _assert_bitwise([full_state["model"]], [last["model"]])
    opt_a, opt_b = full_state["optimizer"]["state"], last["optimizer"]["state"]
    for i in opt_a:
        _assert_bitwise([opt_a[i]], [opt_b[i]])

    if kind == "sgd":
        # a resume file written inside the second segment takes priority over start_state
        class Stop(Exception):
            pass

        def stop_in_four(epoch, model, history):  # the resume file of epoch 3 is written, not 4's
            if epoch == 4:
                raise Stop

        resume = str(tmp_path / "resume.pt")
        with pytest.raises(Stop):
            train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), start_state=start, resume_path=resume,
                         resume_meta={"segment": 2}, on_epoch=stop_in_four, **QUIET)
        lines = []
        resumed, rh = train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), start_state=start, stop_epoch=4,
                                   resume_path=resume, resume_meta={"segment": 2}, log=lines.append)
        assert any("resumed from" in ln and "at epoch 3" in ln for ln in lines)
        _assert_bitwise(full, resumed)
        assert rh == fh
