import os

import pytest
import torch
import torch.nn.functional as F

from threeregime.data import DeviceData, from_arrays
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.pruning import apply_masks, magnitude_masks
from threeregime.training import train_copies
from threeregime.engine import Engine, to_model_input
from threeregime.spec.train import TrainSpec

from tolerance_log import record, record_close  # largest differences, with THREEREGIME_TOLERANCE_LOG

QUIET = dict(log=lambda *a: None)


def _setup(ds, n, width=0.5):
    small = from_arrays(ds.x_train[:n], ds.y_train[:n], ds.x_test[:64], ds.y_test[:64])
    spec = ModelSpec(depth=8, width=width, in_channels=small.image_shape[-1], num_classes=small.num_classes)
    data = DeviceData(small, torch.device("cpu"), crop_padding=4, hflip=True)
    torch.manual_seed(0)
    return spec, data, PreResNet(spec).copy_state(0)


def test_lr_schedule():
    hp = TrainSpec(lr=0.1, milestones=(80, 120), gamma=0.1, epochs=160)
    assert [hp.lr_at(e) for e in (0, 79, 80, 119, 120, 159)] == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1,
                                                                   0.1 * 0.1 * 0.1, 0.1 * 0.1 * 0.1]


def test_fused_copies_match_separate_runs(cifar_small):
    """Three copies in one grouped network = three separate runs with the same seeds.

    lr 0.01: from a fresh init at lr 0.1, any reordering of float sums (even one model in
    another memory layout) moves weights by >1e-5 within 3 steps, fused or not.
    """
    spec, data, init = _setup(cifar_small, 192)  # 3 SGD steps of 64
    hp = TrainSpec(epochs=1, batch_size=64, lr=0.01, milestones=())
    fused, fh = train_copies(spec, [init] * 3, [1, 2, 3], data, hp, Engine(), **QUIET)
    for k, seed in enumerate((1, 2, 3)):
        (alone,), ah = train_copies(spec, [init], [seed], data, hp, Engine(), **QUIET)
        diff = max((fused[k][n] - alone[n]).abs().max().item() for n, _ in PreResNet(spec).named_parameters())
        record(f"max |fused - alone| seed {seed}", diff, 1e-5)
        # fp32, grouped vs plain convolutions (sums in another order), 3 SGD steps: w rounds once a step (|w| < 2:
        # <= 1.2e-7) plus lr 0.01 x dg; a ReLU within rounding of 0 can flip, changing one of the 64*32*32 terms
        # of a gradient sum (dg <= ~3.4e-5), x 2.7 (momentum 0.9 over 3 steps) x ~3 (its effect on the later
        # gradients; measured) -> ~3e-6 a flip; 1e-5 (x3.5)
        assert diff <= 1e-5, (seed, diff)
        dloss = abs(fh[0].train_loss[k] - ah[0].train_loss[0])
        record(f"|train loss fused - alone| seed {seed}", dloss, 1e-5)
        # loss ~2.3 (ulp 2.4e-7), taken at w before each step where the runs differ by ~1e-7: 1e-5 = 40 ulp
        assert dloss < 1e-5
    # the seeds really differ
    assert (fused[0]["conv1.weight"] - fused[1]["conv1.weight"]).abs().max() > 1e-4


def test_fused_gradients_equal_separate_gradients(cifar_small):
    spec, data, _ = _setup(cifar_small, 64)
    torch.manual_seed(1)
    singles = [PreResNet(spec) for _ in range(3)]
    fused = PreResNet(spec, 3)
    fused.load_copies([m.copy_state(0) for m in singles])
    x = data.normalize(data.x_train[:48].view(3, 16, *data.x_train.shape[1:]))
    y = data.y_train[:48].view(3, 16)
    out = fused(to_model_input(x))
    F.cross_entropy(out.permute(0, 2, 1), y.t(), reduction="none").mean(0).sum().backward()
    for k, m in enumerate(singles):
        o = m(to_model_input(x[k:k + 1]))
        F.cross_entropy(o[:, 0], y[k]).backward()
        for name, p in m.named_parameters():
            g = dict(fused.named_parameters())[name].grad
            gk = g.view(3, -1, *g.shape[1:])[k]
            record_close(f"fused vs single gradient: copy {k} {name}", gk, p.grad, atol=1e-6, rtol=1e-4)
            # one backward pass, grouped vs plain kernels: each element a sum of 16*32*32 = 16,384 terms (fewer
            # deeper in), rounding ~sqrt(L) eps = 1.5e-5 of the terms' size -> rtol 1e-4; atol 1e-6 for elements
            # that cancel to ~1e-2 of |g| <= 0.1
            torch.testing.assert_close(gk, p.grad, atol=1e-6, rtol=1e-4)


def test_masks_hold_exactly_through_retraining(cifar_small):
    spec, data, init = _setup(cifar_small, 256)
    conv = {n: init[n] for n in PreResNet(spec).prunable()}
    masks = magnitude_masks(conv, 0.1, "uniform")
    pruned = apply_masks(init, masks)
    hp = TrainSpec(epochs=2, batch_size=64, weight_decay=5e-4, milestones=())
    states, _ = train_copies(spec, [pruned] * 2, [1, 2], data, hp, Engine(), masks=masks, **QUIET)
    for st in states:
        for name, m in masks.items():
            assert torch.all(st[name][~m] == 0), name
            assert torch.count_nonzero(st[name]) <= int(m.sum())
        assert not torch.equal(st["conv1.weight"], pruned["conv1.weight"])  # it did train


def test_resumed_run_is_bitwise_equal(cifar_small, tmp_path):
    """Bitwise: the uninterrupted and the resumed run take the same steps with the same kernels,
    in this process (same machine, same thread count); the resume file keeps every float's bits."""
    spec, data, init = _setup(cifar_small, 192)
    hp = TrainSpec(epochs=3, batch_size=64, milestones=(2,))
    full, fh = train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), **QUIET)
    path = str(tmp_path / "resume.pt")
    meta = {"job": "x"}

    class Stop(Exception):
        pass

    def stop_after_two(epoch, model, history):
        if epoch == 2:
            raise Stop

    try:
        train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), on_epoch=stop_after_two, resume_path=path,
                     resume_meta=meta, **QUIET)
    except Stop:
        pass
    assert os.path.exists(path)
    resumed, rh = train_copies(spec, [init] * 2, [4, 5], data, hp, Engine(), resume_path=path, resume_meta=meta,
                               **QUIET)
    for a, b in zip(full, resumed):
        for name in a:
            assert torch.equal(a[name], b[name]), name
    assert [h.train_loss for h in fh] == [h.train_loss for h in rh]


def test_resume_state_of_other_hyperparameters_is_ignored_with_a_log_line(cifar_small, tmp_path):
    spec, data, init = _setup(cifar_small, 128)
    hp = TrainSpec(epochs=1, batch_size=64, milestones=())
    path = str(tmp_path / "resume.pt")
    train_copies(spec, [init], [1], data, hp, Engine(), resume_path=path, resume_meta={"lr": 0.1}, **QUIET)
    lines = []
    fresh, _ = train_copies(spec, [init], [1], data, hp, Engine(), resume_path=path, resume_meta={"lr": 0.2},
                            log=lines.append)
    assert any("ignoring resume state" in line and "other hyperparameters" in line for line in lines)
    assert not any("resumed from" in line for line in lines)
    (plain,), _ = train_copies(spec, [init], [1], data, hp, Engine(), **QUIET)
    # trained from the start (bitwise: the same kernels in this process)
    assert all(torch.equal(fresh[0][k], plain[k]) for k in plain)


def test_copies_per_pass_chosen_per_device_and_size():
    cifar, demo = ModelSpec(depth=20), ModelSpec(depth=8, in_channels=1)
    cpu = Engine()
    assert cpu.copies_for(cifar, (32, 32), 3) == 1                      # full width on CPU: sequential
    assert cpu.copies_for(ModelSpec(depth=20, width=0.25), (32, 32), 3) == 3
    assert cpu.copies_for(demo, (8, 8), 3) == 3
    assert Engine(torch.device("cuda")).copies_for(cifar, (32, 32), 3) == 3
    assert Engine(copies_per_pass=2).copies_for(cifar, (32, 32), 3) == 2  # config override


def test_landscape_networks_per_pass_fit_gpu_memory():
    gpu = Engine(torch.device("cuda"), bf16=True, eval_batch_size=2000)
    assert gpu.nets_per_eval_pass(ModelSpec(depth=20), (32, 32), 30) == 30   # a whole cell
    assert gpu.nets_per_eval_pass(ModelSpec(depth=20, width=4), (32, 32), 30) == 8
    assert gpu.nets_per_eval_pass(ModelSpec(depth=20, width=64), (32, 32), 30) == 1
    assert Engine().nets_per_eval_pass(ModelSpec(depth=20), (32, 32), 30) == 1  # CPU, full width
    assert Engine().nets_per_eval_pass(ModelSpec(depth=8, in_channels=1), (8, 8), 30) == 30


@pytest.mark.parametrize("optimizer, rho, tol", [("sgd", 0.0, 1e-4), ("sam", 0.05, 5e-4)])
def test_compiled_training_matches_eager(cifar_small, optimizer, rho, tol):
    """engine.compile: the same training to float tolerance, checkpoints under the same names.
    SAM calls the compiled model twice a step (at w and at w + e); its second pass moves
    float differences further (and BN running variances are large numbers): a looser bound."""
    spec, data, init = _setup(cifar_small, 160)  # 2 full steps and a last batch of 32: two graphs
    hp = TrainSpec(optimizer=optimizer, rho=rho, epochs=1, batch_size=64, lr=0.01, milestones=())
    eager, eh = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(), **QUIET)
    lines = []
    comp, ch = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(compile="default"), log=lines.append)
    assert not [ln for ln in lines if "torch.compile failed" in ln]
    for k in range(2):
        assert comp[k].keys() == eager[k].keys()
        diff = max((comp[k][n] - eager[k][n]).abs().max().item() for n in eager[k])
        record(f"max |compiled - eager| copy {k}", diff, tol)
        # diff includes BN's running_var (<= 3.2), the largest numbers. SGD: weights as in the fused test (<= ~3e-6
        # a ReLU flip); a running_var averages batch variances over 64*8*8 = 4,096 values (last stage) that the
        # generated kernels sum in another order: ~sqrt(L) eps = 8e-6 relative, x 3.2 -> 2.5e-5; tol 1e-4 (x4).
        # SAM: the flips its ascent grows (test_optimizers.FUSED_TOL) move step 3's activations at w by <= ~4e-4
        # (|x| <= 8), so a batch variance by <= 2 |x|rms |dx| ~ 1.4e-3, x momentum 0.1 -> 1.4e-4; tol 5e-4 (x3.5)
        assert diff <= tol, diff
        dloss = abs(ch[0].train_loss[k] - eh[0].train_loss[k])
        record(f"|train loss compiled - eager| copy {k}", dloss, 1e-4)
        # loss ~2.3, at w before each step: activations there differ by <= ~4e-4 (SAM), moving a mean of 160
        # losses by <= ~1e-5 (|dloss/dlogit| <= 1); 1e-4 (x10)
        assert dloss < 1e-4


def test_failed_compile_falls_back_to_eager(cifar_small, monkeypatch):
    import threeregime.training as training

    def broken_compile(model, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return call

    spec, data, init = _setup(cifar_small, 128)
    hp = TrainSpec(epochs=2, batch_size=64, lr=0.01, milestones=())
    eager, _ = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(), **QUIET)
    monkeypatch.setattr(training.torch, "compile", broken_compile)
    lines = []
    fell_back, _ = train_copies(spec, [init] * 2, [1, 2], data, hp, Engine(compile="default"), log=lines.append)
    assert [ln for ln in lines if "torch.compile failed (RuntimeError: no C++ compiler found)" in ln]
    for k in range(2):  # bitwise: the fallback runs the eager kernels in the same order, in this process
        assert all(torch.equal(fell_back[k][n], eager[k][n]) for n in eager[k])


def test_cuda_graphs_are_the_gpu_default_and_off_elsewhere():
    assert Engine.auto("cuda").cuda_graph
    assert not Engine.auto("cuda", cuda_graph=False).cuda_graph    # engine.cuda_graph: false
    assert not Engine.auto("cuda", compile="reduce-overhead").cuda_graph  # compile brings its own
    assert not Engine.auto("cpu").cuda_graph
