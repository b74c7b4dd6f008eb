"""Checks that only a CUDA GPU can run (marker `gpu`; skipped where CUDA is absent, as in CI).

Run on a GPU machine with `python -m pytest -m gpu -s tests/test_gpu.py`; `-s` prints the
measured differences, which benchmarks/README.md quotes.

Tolerances: fused and separate runs use different cuDNN kernels (one grouped convolution
against K plain ones), so their float sums differ in order. In fp32 (TF32 off) that moves
weights by rounding only (≤ 1e-5 after three steps at lr 0.01, the CPU test's bound). In
bf16 every activation is rounded to 8 bits of mantissa, so the same reordering changes
values at the 1e-2 relative level; the bound is on the update (w_after - w_init) relative to
its own size, which is what training decides.
"""

import pytest
import torch

from threeregime.data import DeviceData, from_arrays
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec
from threeregime.training import train_copies
from threeregime.engine import Engine
from threeregime.spec.train import TrainSpec

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

QUIET = dict(log=lambda *a: None)


def _setup(ds, n, depth=8, width=0.5):
    small = from_arrays(ds.x_train[:n], ds.y_train[:n], ds.x_test[:64], ds.y_test[:64])
    spec = ModelSpec(depth=depth, width=width, in_channels=small.image_shape[-1], num_classes=small.num_classes)
    data = DeviceData(small, torch.device("cuda"), crop_padding=4, hflip=True)
    torch.manual_seed(0)
    return spec, data, PreResNet(spec).copy_state(0)


@pytest.fixture
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _update_gap(fused: dict, alone: dict, init: dict) -> tuple[float, float]:
    """(max |fused - alone|, ‖fused - alone‖ / ‖alone - init‖) over the float parameters."""
    names = [n for n, v in alone.items() if v.is_floating_point() and not n.endswith("num_batches_tracked")
             and "running" not in n]
    diff = max((fused[n].float() - alone[n].float()).abs().max().item() for n in names)
    num = sum(((fused[n].float() - alone[n].float()) ** 2).sum().item() for n in names) ** 0.5
    den = sum(((alone[n].float() - init[n].float().to(alone[n].device)) ** 2).sum().item() for n in names) ** 0.5
    return diff, num / den


# fp32 (TF32 off), 3 SGD steps at lr 0.01: as tests/test_training.py's CPU bound, w rounds once a step (<= 1.2e-7)
# and a ReLU within rounding of 0 may flip (one term of a gradient sum, dg <= ~3.4e-5, x lr x 2.7 momentum x ~3)
# -> ~3e-6 a flip: 1e-5. bf16 (8-bit mantissa, eps 3.9e-3): a reordered fp32 accumulation may round an activation
# to the neighbouring bf16 value, 3.9e-3 relative; through ~7 layers forward and back the gradient, hence the
# update, moves by ~7 x 3.9e-3 = 2.7e-2 of itself: 5e-2 on |fused - alone| / |alone - init|.
@pytest.mark.parametrize("bf16, channels_last, bound", [(False, False, 1e-5), (False, True, 1e-5),
                                                         (True, True, 5e-2)])
def test_fused_copies_match_separate_runs_on_cuda(cifar_small, no_tf32, bf16, channels_last, bound):
    spec, data, init = _setup(cifar_small, 192)  # 3 steps of 64
    hp = TrainSpec(epochs=1, batch_size=64, lr=0.01, milestones=())
    engine = Engine(torch.device("cuda"), bf16=bf16, channels_last=channels_last, eval_batch_size=2000)
    fused, _ = train_copies(spec, [init] * 3, [1, 2, 3], data, hp, engine, **QUIET)
    for k, seed in enumerate((1, 2, 3)):
        (alone,), _ = train_copies(spec, [init], [seed], data, hp, engine, **QUIET)
        absdiff, rel = _update_gap(fused[k], alone, init)
        print(f"bf16={bf16} channels_last={channels_last} seed {seed}: max |fused - alone| {absdiff:.2e}, "
              f"relative to the update {rel:.2e}")
        assert (absdiff if not bf16 else rel) <= bound, (seed, absdiff, rel)


def test_select_device_uses_the_real_gpu_and_names_it():
    """On a one-GPU machine a job uses the GPU as is, and its log line names the card."""
    from threeregime.devices import count_gpus, select_device

    assert count_gpus() >= 1
    lines = []
    assert select_device(lines.append, environ={}) == "cuda"
    print(lines)
    assert any(torch.cuda.get_device_name(0) in ln for ln in lines), lines


def test_landscape_metrics_bf16_agree_with_fp32(cifar_small):
    """LMC and CKA measured in bf16 (the CUDA default) agree with fp32 on the same networks."""
    from threeregime.landscape import landscape_metrics
    from threeregime.spec.landscape import LandscapeSpec

    spec, data, init = _setup(cifar_small, 640)
    hp = TrainSpec(epochs=2, batch_size=64, lr=0.05, milestones=())
    states, _ = train_copies(spec, [init] * 3, [1, 2, 3], data, hp, Engine(torch.device("cuda"), eval_batch_size=2000),
                             **QUIET)
    states = {s: {n: v.cpu() for n, v in st.items()} for s, st in zip((1, 2, 3), states)}
    what = LandscapeSpec(points=5, bn_samples=0, error_samples=0)
    r16 = landscape_metrics(spec, states, data, Engine(torch.device("cuda"), bf16=True, channels_last=True,
                                                       eval_batch_size=2000), what)
    r32 = landscape_metrics(spec, states, data, Engine(torch.device("cuda"), eval_batch_size=2000), what)
    for p16, p32 in zip(r16["pairs"], r32["pairs"]):
        print(f"pair {p16['seed_a']}-{p16['seed_b']}: LMC bf16 {p16['lmc']:.4f} fp32 {p32['lmc']:.4f}; "
              f"CKA bf16 {p16['cka']:.4f} fp32 {p32['cka']:.4f}")
        # bf16 moves each logit by ~1e-2 relative: an error fraction changes by the images whose top-two margin
        # is within that (a few of 640: 0.02 = 13 images); CKA, a smooth function of the probabilities, by O(1e-2)
        assert abs(p16["lmc"] - p32["lmc"]) <= 0.02   # train-error fractions: a few images of 640
        assert abs(p16["cka"] - p32["cka"]) <= 0.02


def _max_diff(a: list[dict], b: list[dict]) -> float:
    return max((x[n].float() - y[n].float()).abs().max().item() for x, y in zip(a, b) for n in x)


@pytest.mark.parametrize("optimizer, iterations, bf16", [
    ("sgd", 0, False), ("sgd", 0, True), ("sam", 0, True), ("sgd", 14, True), ("adam", 0, True)])
def test_cuda_graph_training_equals_eager(cifar_small, no_tf32, optimizer, iterations, bf16):
    """engine.cuda_graph (the GPU default) trains what the eager loop trains.

    200 images at batch 64: three full steps (replayed from the graph after the warm-up steps)
    and a last batch of 8 (eager) per epoch; a milestone after epoch 2 (a recapture at the new
    learning rate); with iterations=14 a fixed-step schedule whose milestone falls inside an
    epoch. Adam is not graphable and must run eagerly, the same either way. TF32 off: with
    it, fp32 convolutions under capture and eagerly may pick different TF32 algorithms, and
    their 10-bit-mantissa rounding grows to 1e-2 in the weights over 16 steps (measured).
    """
    spec, data, init = _setup(cifar_small, 200)
    hp = TrainSpec(epochs=4, batch_size=64, lr=0.02, milestones=(2,), optimizer=optimizer,
                   rho=0.05 if optimizer == "sam" else 0.0, iterations=iterations)
    if iterations:
        hp = TrainSpec(batch_size=64, lr=0.02, milestones=(7,), iterations=iterations, epochs=1)
    runs = {}
    for graph in (False, True):
        engine = Engine(torch.device("cuda"), bf16=bf16, channels_last=True, eval_batch_size=2000, cuda_graph=graph)
        runs[graph] = train_copies(spec, [init] * 3, [1, 2, 3], data, hp, engine, **QUIET)
    diff = _max_diff(runs[True][0], runs[False][0])
    print(f"{optimizer} iterations={iterations} bf16={bf16}: max |graph - eager| {diff:.3e}; train loss "
          f"{runs[True][1][-1].train_loss} vs {runs[False][1][-1].train_loss}")
    # Not a rounding bound: the replay runs the captured kernels of the eager step in the same order, so the
    # arithmetic is the same; 1e-6 (~10 ulp of |w| < 1) admits only last-bit differences. A different kernel
    # would show >= 1e-3 in bf16 (eps 3.9e-3) or ~1e-6..1e-5 in fp32 over these 16 steps.
    assert diff <= 1e-6
    losses = [[v for h in runs[g][1] for v in h.train_loss] for g in (True, False)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)


def test_cuda_graph_segmented_run_equals_one_run(cifar_small):
    """A dense run in two segments (two jobs, two captures) equals one run, with graphs on."""
    spec, data, init = _setup(cifar_small, 200)
    hp = TrainSpec(epochs=4, batch_size=64, lr=0.02, milestones=(2,))
    engine = Engine(torch.device("cuda"), bf16=True, channels_last=True, eval_batch_size=2000, cuda_graph=True)
    whole, _ = train_copies(spec, [init], [1], data, hp, engine, **QUIET)
    state = {}
    train_copies(spec, [init], [1], data, hp, engine, stop_epoch=2, state_out=state, **QUIET)
    parts, _ = train_copies(spec, [init], [1], data, hp, engine, start_state=state, **QUIET)
    diff = _max_diff(whole, parts)
    print(f"segmented vs one run with CUDA graphs: max diff {diff:.3e}")
    # as above: the same kernels in the same order (a fresh capture per segment), so last bits only
    assert diff <= 1e-6
