#!/usr/bin/env python
"""Retraining throughput: the upstream recipe vs threeregime's fused copies (issue 3).

Runs, one after the other in one process on the same machine:

  upstream    one model at a time, torchvision DataLoader over a dataset-like object with PIL
              transforms (RandomCrop(32, 4), RandomHorizontalFlip, ToTensor, Normalize),
              shuffle=True, batch 64, SGD(0.1, 0.9, 1e-4), masks through
              torch.nn.utils.prune.custom_from_mask on every conv, loss.item() / accuracy
              .item() every step, plain nn.Conv2d PreResNet-20 written below.
  fused       threeregime.training.train_copies with K retrain seeds in one grouped network.
  sequential  the same, K calls with one seed each.
  lmc         threeregime.landscape.landscape_metrics on the K copies (K*(K-1)/2 pairs).

Optional variants (--extra), and the runs above (--skip leaves them out): one function each,
listed in VARIANTS in the order they run, each with a line of what it measures (also at the
end of --help).

Every training variant starts from the same PreResNet state pruned to --density with
uniform magnitude pruning. Each run's first epoch is warm-up (cudnn autotune, compilation,
allocator growth) and is reported separately; the rates are from the following epochs.
Every epoch includes one evaluation pass over the test set, as both recipes do.

  python benchmarks/retrain_benchmark.py                    # CPU: ../shared/data/cifar10_mini.npz
  python benchmarks/retrain_benchmark.py --synthetic-cifar --workers 8 --extra ceilings,eager,compile,scan
  python benchmarks/retrain_benchmark.py --arch vgg --synthetic-cifar --steps 3 --skip lmc --clock cpu --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from threeregime import landscape, training  # noqa: E402
from threeregime.data import (CIFAR_MEAN, CIFAR_STD, ArrayDataset, DeviceData, from_arrays,  # noqa: E402
                              load_digits_dataset, load_npz)
from threeregime.spec.landscape import LandscapeSpec  # noqa: E402
from threeregime.models import build_network  # noqa: E402
from threeregime.spec.model import ARCHITECTURES, ModelSpec  # noqa: E402
from threeregime.pruning import magnitude_masks  # noqa: E402
from threeregime.engine import Engine, build_model, evaluate, reestimate_bn  # noqa: E402
from threeregime.spec.train import TrainSpec  # noqa: E402

# The reference grid (config.yaml): 16 temperatures x 9 densities x 3 dense seeds.
GRID_CELLS, GRID_COPIES, GRID_EPOCHS, GRID_DENSE = 432, 3, 160, 3


def log(*a):
    print(*a, flush=True)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# --------------------------------------------------------------------------------------------
# (a) the upstream recipe
# --------------------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    """Pre-activation basic block, as in the reference preresnet.py (plain layers)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PlainPreResNet(nn.Module):
    """Ordinary PreResNet (16/32/64, depth 6n+2); state-dict keys equal threeregime's K=1 ones."""

    def __init__(self, depth=20, in_channels=3, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.bn = nn.BatchNorm2d(64)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.avgpool(F.relu(self.bn(x)))
        return self.fc(x.flatten(1))


class CIFARLike(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC -> PIL image -> transform."""

    def __init__(self, x, y, transform):
        self.data, self.targets, self.transform = x, [int(v) for v in y], transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def run_upstream(ds: ArrayDataset, state: dict, masks: dict, hp: TrainSpec, dev, epochs: int, workers: int,
                 test_batch: int = 256) -> list[float]:
    """Epoch times (train + test pass) of the upstream recipe, one model."""
    import torchvision.transforms as T
    from torch.nn.utils import prune

    mean, std = (CIFAR_MEAN, CIFAR_STD) if ds.image_shape[-1] == 3 else (ds.mean, ds.std)
    size = ds.image_shape[0]
    train_tf = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Normalize(mean, std)])
    test_tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    kw = dict(num_workers=workers, pin_memory=dev.type == "cuda")
    train_loader = torch.utils.data.DataLoader(CIFARLike(ds.x_train, ds.y_train, train_tf), batch_size=hp.batch_size,
                                               shuffle=True, **kw)
    test_loader = torch.utils.data.DataLoader(CIFARLike(ds.x_test, ds.y_test, test_tf), batch_size=test_batch,
                                              shuffle=False, **kw)
    model = PlainPreResNet(20, ds.image_shape[-1], ds.num_classes)
    model.load_state_dict(state)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            prune.custom_from_mask(m, "weight", masks[f"{name}.weight"].float())
    model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        avg_loss, train_acc = 0.0, 0
        for data, target in train_loader:
            data, target = data.to(dev), target.to(dev)
            opt.zero_grad()
            output = model(data)
            loss = F.cross_entropy(output, target)
            avg_loss += loss.item()
            pred = output.data.max(1, keepdim=True)[1]
            train_acc += pred.eq(target.data.view_as(pred)).cpu().sum().item()
            loss.backward()
            opt.step()
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(dev), target.to(dev)
                output = model(data)
                test_loss += F.cross_entropy(output, target, reduction="sum").item()
                pred = output.data.max(1, keepdim=True)[1]
                correct += pred.eq(target.data.view_as(pred)).cpu().sum().item()
        sync(dev)
        times.append(time.perf_counter() - t0)
        log(f"  upstream epoch {epoch + 1}: {times[-1]:.2f} s (train loss {avg_loss / len(train_loader):.3f}, "
            f"test acc {correct / len(ds.y_test):.3f})")
    return times


# --------------------------------------------------------------------------------------------
# (b) ours
# --------------------------------------------------------------------------------------------

def run_ours(spec, state, masks, seeds, data, hp, engine, label, trainer=None,
             quiet=True) -> tuple[list[float], list[dict]]:
    """Epoch times of one train_copies call (each time = train + test pass of all its copies)."""
    trainer = trainer or training.train_copies
    times, last = [], [None]

    def on_epoch(epoch, model, history):
        sync(engine.device)
        now = CLOCK()
        times.append(now - last[0])
        log(f"  {label} epoch {epoch}: {times[-1]:.2f} s (train loss "
            + " ".join(f"{v:.3f}" for v in history[-1].train_loss) + ")")
        last[0] = CLOCK()

    last[0] = CLOCK()
    states, _ = trainer(spec, [state] * len(seeds), seeds, data, hp, engine, masks=masks, on_epoch=on_epoch,
                        log=(lambda *a: None) if quiet else log)
    return times, states


def profile_fused(spec, state, masks, seeds, data_full: ArrayDataset, hp, engine, steps: int, out_dir: str | None):
    """torch.profiler over `steps` fused training steps (after a warm-up epoch of the same size)."""
    from torch.profiler import ProfilerActivity, profile

    sub = subset(data_full, steps * hp.batch_size, 1000)
    data = DeviceData(sub, engine.device, 4, True)
    hp1 = TrainSpec(**{**hp.as_dict(), "epochs": 1})
    run_ours(spec, state, masks, seeds, data, hp1, engine, "profile warm-up")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.device.type == "cuda" else [])
    sync(engine.device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        run_ours(spec, state, masks, seeds, data, hp1, engine, "profiled")
        sync(engine.device)
    wall = time.perf_counter() - t0
    sort = "cuda_time_total" if engine.device.type == "cuda" else "cpu_time_total"
    log(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=60))
    if engine.device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.time_range.elapsed_us() for e in kernels) / 1e6
        log(f"profile: {steps} steps + 1 eval pass in {wall:.2f} s wall (profiler on); "
            f"GPU kernels busy {busy:.2f} s = {100 * busy / wall:.0f}% of wall; "
            f"{len(kernels) / steps:.0f} kernels per step, mean kernel {1e6 * busy / max(len(kernels), 1):.1f} us")
        if busy < 0.5 * wall:
            log("profile: GPU idle most of the time -> the step loop is CPU/launch bound")
        if out_dir:
            prof.export_chrome_trace(os.path.join(out_dir, "trace.json.gz"))


# --------------------------------------------------------------------------------------------
# data and helpers
# --------------------------------------------------------------------------------------------

def subset(ds: ArrayDataset, n_train: int, n_test: int) -> ArrayDataset:
    return ArrayDataset(ds.x_train[:n_train], ds.y_train[:n_train], ds.x_test[:n_test], ds.y_test[:n_test],
                        ds.mean, ds.std, ds.num_classes)


def synthetic_cifar() -> ArrayDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60000, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 60000)
    return from_arrays(x[:50000], y[:50000], x[50000:], y[50000:], where="synthetic", mean=CIFAR_MEAN,
                       std=CIFAR_STD)


def pruned_start(spec: ModelSpec, density: float, seed: int = 0):
    torch.manual_seed(seed)
    state = build_network(spec, 1).copy_state(0)
    conv = {name: state[name] for name in build_network(spec, 1).prunable()}
    masks = magnitude_masks(conv, density, "uniform")
    for name, m in masks.items():
        state[name] = state[name] * m
    return state, masks


STAT = "min"
# Epoch clock: wall time (time.perf_counter), or this process's CPU time (time.process_time,
# --clock cpu), which other processes on a shared machine barely disturb (with --threads 1
# it is the seconds one core spends).
CLOCK = time.perf_counter


def steady(times: list[float]) -> float:
    """Epoch time without the first (warm-up) epoch: the minimum (default; robust to other
    processes on a shared machine) or the mean of the following epochs (--stat mean)."""
    t = times[1:] or times
    return min(t) if STAT == "min" else sum(t) / len(t)


def rate_line(name, model_epochs_per_s, warm, note=""):
    log(f"RESULT {name:<28s} {model_epochs_per_s:8.3f} model-epochs/s   warm-up epoch {warm:7.2f} s  {note}")


def fused_vs_sequential(spec, state, masks, seeds, data, hp, engine, label):
    tf, _ = run_ours(spec, state, masks, seeds, data, hp, engine, f"{label} fused K={len(seeds)}")
    ts = []
    for s in seeds:
        t, _ = run_ours(spec, state, masks, [s], data, hp, engine, f"{label} sequential seed {s}")
        ts.append(t)
    fused = len(seeds) / steady(tf)
    seq = len(seeds) / sum(steady(t) for t in ts)
    return fused, seq, tf[0], sum(t[0] for t in ts)


def machine_name(dev) -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    s = f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    if dev.type == "cuda":
        s += f"; GPU {torch.cuda.get_device_name(dev)}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return s + f"; torch {torch.__version__}; load average {load:.1f}"


def hardware_ceilings(dev) -> dict:
    """Measured ceilings of this device: a large bf16 (GPU) / fp32 (CPU) matrix product's
    FLOP/s and a large device-to-device copy's bytes/s (bytes read + bytes written),
    each the median of timed repeats after warm-up, on random data (zeros run faster)."""
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    n = 8192 if dev.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    src = torch.randn(1 << (28 if dev.type == "cuda" else 24), device=dev)  # 1 GiB / 64 MiB
    dst = torch.empty_like(src)

    def median_time(fn, reps):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(reps):
            sync(dev)
            t0 = time.perf_counter()
            fn()
            sync(dev)
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    mm = median_time(lambda: a @ b, 10)
    cp = median_time(lambda: dst.copy_(src), 10)
    return {"matmul_flops": 2 * n ** 3 / mm, "copy_bytes": 2 * src.numel() * src.element_size() / cp,
            "dtype": str(dtype).replace("torch.", "")}


def flops_per_model_epoch(spec: ModelSpec, ds: ArrayDataset, batch: int, dev) -> tuple[float, float]:
    """(training FLOPs, test FLOPs) of one model over one epoch: forward + backward of every
    training image and forward of every test image, counted by torch's FlopCounterMode on
    the dense network (magnitude-pruned weights are zeros in dense kernels: the GPU does the
    same work at any density). Convolutions and the linear layer only; BN, ReLU, the loss and
    the optimizer step are memory traffic, not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_network(spec, 1).to(dev)  # the benchmarked architecture, not always PreResNet
    x = torch.randn(batch, spec.in_channels, *ds.image_shape[:2], device=dev)
    y = torch.randint(0, spec.num_classes, (batch,), device=dev)
    with FlopCounterMode(display=False) as fwd_bwd:
        F.cross_entropy(model(x)[:, 0], y).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as fwd:
        model.eval()(x)
    per_img_train, per_img_test = fwd_bwd.get_total_flops() / batch, fwd.get_total_flops() / batch
    return per_img_train * len(ds.y_train), per_img_test * len(ds.y_test)


# --------------------------------------------------------------------------------------------
# the variants: one function each, run in the order of VARIANTS
# --------------------------------------------------------------------------------------------

@dataclass
class Bench:
    """One benchmark run: the setup every variant shares, and what the variants measured."""

    a: argparse.Namespace
    engine: Engine
    full: ArrayDataset            # the whole data set
    ds: ArrayDataset              # what a timed epoch uses (--steps truncates it)
    data: DeviceData              # ds on the device
    hp: TrainSpec
    scale: float                  # run epoch -> full epoch
    spec: ModelSpec
    state: dict                   # the pruned start every training variant retrains
    masks: dict
    seeds: list
    R: dict = field(default_factory=dict)  # name -> model-epochs/s on the full epoch
    ceil: dict | None = None               # ceilings: hardware_ceilings(dev)
    flops: tuple | None = None             # ceilings: (training, test) FLOPs per model-epoch
    fused_states: list | None = None       # fused: the retrained copies (lmc measures them)
    lmc: dict | None = None                # lmc: its inputs and timings, for lmcvar and the summary

    @property
    def dev(self):
        return self.engine.device


def variant_ceilings(b: Bench):
    b.ceil = ceil = hardware_ceilings(b.dev)
    b.flops = flops_per_model_epoch(b.spec, b.full, b.hp.batch_size, b.dev)
    train_f, test_f = b.flops
    log(f"RESULT ceilings: {ceil['dtype']} matrix product {ceil['matmul_flops'] / 1e12:.1f} TFLOP/s, "
        f"device copy {ceil['copy_bytes'] / 1e12:.2f} TB/s (read + write)")
    log(f"RESULT FLOPs per model-epoch: {train_f / 1e12:.2f} TFLOP training (fwd+bwd of {len(b.full.y_train)} "
        f"images) + {test_f / 1e12:.3f} TFLOP test pass = {(train_f + test_f) / 1e12:.2f} TFLOP; floor at the "
        f"measured matrix rate {(train_f + test_f) / ceil['matmul_flops']:.3f} s per model-epoch")


def variant_upstream(b: Bench):
    a = b.a
    log(f"\n== (a) upstream recipe: DataLoader(num_workers={a.workers}), PIL transforms, custom_from_mask")
    t = run_upstream(b.ds, b.state, b.masks, b.hp, b.dev, a.epochs, a.workers)
    b.R["upstream"] = 1 / (steady(t) * b.scale)
    rate_line("upstream (1 model)", b.R["upstream"], t[0])


def variant_fused(b: Bench):
    k = b.a.copies
    log(f"\n== (b) ours, {k} copies fused")
    t, b.fused_states = run_ours(b.spec, b.state, b.masks, b.seeds, b.data, b.hp, b.engine, f"fused K={k}")
    b.R["fused"] = k / (steady(t) * b.scale)
    rate_line(f"ours fused (K={k})", b.R["fused"], t[0])


def variant_sequential(b: Bench):
    k = b.a.copies
    log(f"\n== (b') ours, {k} copies one at a time")
    ts = []
    for s in b.seeds:
        t, _ = run_ours(b.spec, b.state, b.masks, [s], b.data, b.hp, b.engine, f"sequential seed {s}")
        ts.append(t)
    b.R["sequential"] = k / (sum(steady(t) for t in ts) * b.scale)
    rate_line("ours sequential (K=1 x3)", b.R["sequential"], sum(t[0] for t in ts))


def variant_eager(b: Bench):
    if not b.engine.cuda_graph:  # nothing to turn off (CPU, or a compiled engine)
        return
    k = b.a.copies
    log(f"\n== ours without CUDA graphs (engine.cuda_graph: false): {k} copies fused, then one")
    eng = replace(b.engine, cuda_graph=False)
    t, _ = run_ours(b.spec, b.state, b.masks, b.seeds, b.data, b.hp, eng, f"eager K={k}")
    b.R["eager"] = k / (steady(t) * b.scale)
    rate_line("ours fused, eager", b.R["eager"], t[0])
    t1, _ = run_ours(b.spec, b.state, b.masks, [1], b.data, b.hp, eng, "eager K=1")
    b.R["eager1"] = 1 / (steady(t1) * b.scale)
    rate_line("ours K=1, eager", b.R["eager1"], t1[0])


def variant_nchw(b: Bench):
    log("\n== ours in the contiguous (NCHW) layout (Engine.auto uses channels_last)")
    eng = replace(b.engine, channels_last=False)
    f, q, fw, qw = fused_vs_sequential(b.spec, b.state, b.masks, b.seeds, b.data, b.hp, eng, "nchw")
    b.R["nchw_fused"], b.R["nchw_seq"] = f / b.scale, q / b.scale
    rate_line("ours fused NCHW", b.R["nchw_fused"], fw)
    rate_line("ours sequential NCHW", b.R["nchw_seq"], qw)


def variant_evalbatch(b: Bench):
    dev = b.dev
    log("\n== forward-only throughput (images/s) by eval batch: BN re-estimation / evaluation")
    edata = DeviceData(b.full, dev)  # the whole set: --steps truncates `data`
    x, y = edata.x_train[:2000], edata.y_train[:2000]
    for bs in (100, 250, 500, 1000, 2000):
        eng = replace(b.engine, eval_batch_size=bs)
        m = build_model(b.spec, [b.state], eng)
        evaluate(m, x[:bs], y[:bs], edata, eng)  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        reestimate_bn(m, x, edata, eng)
        sync(dev)
        t1 = time.perf_counter()
        evaluate(m, x, y, edata, eng)
        sync(dev)
        t2 = time.perf_counter()
        log(f"RESULT eval batch {bs:5d}: BN re-estimation {len(y) / (t1 - t0):7.0f} img/s, "
            f"evaluation {len(y) / (t2 - t1):7.0f} img/s")


def variant_compile(b: Bench):
    a, R = b.a, b.R
    log(f"\n== ours fused + torch.compile(mode={a.compile_mode!r})")
    try:
        t, _ = run_ours(b.spec, b.state, b.masks, b.seeds, b.data, b.hp, replace(b.engine, compile=a.compile_mode),
                        "compiled", quiet=False)
        R["compile"] = a.copies / (steady(t) * b.scale)
        compile_s = t[0] - steady(t)
        rate_line("ours fused+compile", R["compile"], t[0], f"(compile ~ {compile_s:.1f} s)")
        if "fused" in R:
            saving = a.copies / R["fused"] - a.copies / R["compile"]  # s per full fused epoch
            log(f"compile: {compile_s:.1f} s once (per process) vs {saving:+.2f} s saved per fused epoch "
                f"-> over 160 epochs net {160 * saving - compile_s:+.1f} s per cell "
                f"({100 * (160 * saving - compile_s) / (160 * a.copies / R['fused']):+.1f}% of the cell's time)")
    except Exception as e:  # noqa: BLE001
        log(f"compile variant failed: {type(e).__name__}: {str(e)[:400]}")


def variant_scan(b: Bench):
    for K in [int(k) for k in b.a.scan_copies.split(",") if k]:
        log(f"\n== ours, {K} copies fused (several cells per pass)")
        hp2 = TrainSpec(epochs=2, milestones=())
        t, _ = run_ours(b.spec, b.state, b.masks, list(range(1, K + 1)), b.data, hp2, b.engine, f"fused K={K}")
        b.R[f"fused{K}"] = K / (steady(t) * b.scale)
        rate_line(f"ours fused (K={K})", b.R[f"fused{K}"], t[0])


def timed_lmc(spec, states, ldata, eng, what):
    """Seconds for one cell's landscape metrics, and the images they used."""
    sync(eng.device)
    t0 = time.perf_counter()
    res = landscape.landscape_metrics(spec, states, ldata, eng, what)
    sync(eng.device)
    return time.perf_counter() - t0, res["samples"]


def variant_lmc(b: Bench):
    a, R = b.a, b.R
    fused_states = b.fused_states if b.fused_states is not None else [b.state] * a.copies
    ldata = DeviceData(b.full, b.dev)
    states = {s: {k: v.cpu() for k, v in st.items()} for s, st in zip(b.seeds, fused_states)}
    npairs = a.copies * (a.copies - 1) // 2
    bn, err = (int(v) for v in a.lmc_samples.split(":"))
    what = LandscapeSpec(points=a.lmc_points, bn_samples=bn, error_samples=err)
    log(f"\n== LMC + CKA of {a.copies} copies ({npairs} pairs, {a.lmc_points} points), {what}")
    for rep in range(2 if b.dev.type == "cuda" else 1):
        lt, used = timed_lmc(b.spec, states, ldata, b.engine, what)
        log(f"  landscape_metrics run {rep + 1}: {lt:.2f} s per cell, images used {used}")
    b.lmc = {"states": states, "ldata": ldata, "what": what, "npairs": npairs, "cell_s": lt, "pair_s": lt / npairs}
    lmc_pair = b.lmc["pair_s"]
    R["lmc_cell"] = lt
    one_epoch = 1 / R["sequential"] if "sequential" in R else (a.copies / R["fused"] if "fused" in R else None)
    log(f"RESULT LMC per pair {lmc_pair:.2f} s"
        + (f" = {lmc_pair / one_epoch:.2f}x one training epoch of one model (ours, K=1: {one_epoch:.2f} s)"
           if one_epoch else ""))


def variant_lmcvar(b: Bench):
    if b.lmc is None:  # lmc skipped: no default to compare with
        return
    L = b.lmc
    variants = [("whole training set (the paper's code)", b.engine,
                 replace(L["what"], bn_samples=0, error_samples=0)),
                ("eval batch 4000", replace(b.engine, eval_batch_size=4000), L["what"])]
    for name, eng, w in variants:
        try:
            vt, used = timed_lmc(b.spec, L["states"], L["ldata"], eng, w)
            log(f"RESULT LMC variant {name}: {vt / L['npairs']:.2f} s per pair ({L['cell_s'] / vt:.2f}x the default), "
                f"images used {used}")
        except Exception as e:  # noqa: BLE001
            log(f"LMC variant {name} failed: {type(e).__name__}: {str(e)[:300]}")


def variant_digits(b: Bench):
    a, engine = b.a, b.engine
    log("\n== digits demo scale: PreResNet-8, 8x8x1, crop_padding=1, no flip, fused vs sequential")
    dspec = ModelSpec(depth=8, width=1, in_channels=1)
    dstate, dmasks = pruned_start(dspec, a.density)
    dds = load_digits_dataset()
    ddata = DeviceData(dds, b.dev, 1, False)
    dhp = TrainSpec(epochs=max(a.epochs, 4), milestones=())
    deng = Engine(engine.device, engine.bf16, engine.channels_last, 1500, 0)
    f, s, fw, sw = fused_vs_sequential(dspec, dstate, dmasks, b.seeds, ddata, dhp, deng, "digits")
    b.R["digits_fused"], b.R["digits_seq"] = f, s
    rate_line(f"digits fused (K={a.copies})", f, fw)
    rate_line("digits sequential (K=1 x3)", s, sw)


def variant_profile(b: Bench):
    a = b.a
    log(f"\n== torch.profiler: ours fused K={a.copies}, {a.profile_steps} steps")
    profile_fused(b.spec, b.state, b.masks, b.seeds, b.full, b.hp, b.engine, a.profile_steps, a.out)


@dataclass(frozen=True)
class Variant:
    run: object        # function(Bench): runs the variant, logs its lines, records its rates in Bench.R
    help: str          # one line for --help
    extra: bool        # off unless named in --extra; otherwise on unless named in --skip


# Every variant, in the order they run (the summary reads what the earlier ones measured).
VARIANTS = {
    "ceilings": Variant(variant_ceilings, "measured matrix-product and copy rates, FLOPs per model-epoch "
                        "(summary: each variant's share of the matrix rate)", True),
    "upstream": Variant(variant_upstream, "the upstream recipe, one model (PreResNet-20 only)", False),
    "fused": Variant(variant_fused, "ours, the --copies retrain seeds fused in one grouped network", False),
    "sequential": Variant(variant_sequential, "ours, the --copies seeds one at a time", False),
    "eager": Variant(variant_eager, "CUDA: fused and K=1 without the CUDA graph that Engine.auto uses on GPUs",
                     True),
    "nchw": Variant(variant_nchw, "fused vs sequential in the contiguous layout instead of channels_last", True),
    "evalbatch": Variant(variant_evalbatch, "forward-only throughput (BN re-estimation, evaluation) by eval "
                         "batch size", True),
    "compile": Variant(variant_compile, "fused with torch.compile of the grouped model (--compile-mode)", True),
    "scan": Variant(variant_scan, "fused with more copies per pass (--scan-copies)", True),
    "lmc": Variant(variant_lmc, "LMC + CKA of the copies, all pairs (landscape_metrics)", False),
    "lmcvar": Variant(variant_lmcvar, "after lmc: LMC on the whole training set (the paper's code), "
                      "and eval batch 4000", True),
    "digits": Variant(variant_digits, "fused vs sequential at the digits demo scale", True),
    "profile": Variant(variant_profile, "torch.profiler of the fused loop (--profile-steps; trace to --out)", True),
}


def variant_names(extra: bool):
    """argparse type of --skip (extra=False) / --extra (True): a comma list of those variants' names."""
    allowed = [n for n, v in VARIANTS.items() if v.extra == extra]

    def parse(text: str) -> set:
        names = set(filter(None, text.split(",")))
        unknown = sorted(names - set(allowed))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {','.join(allowed)}")
        return names
    return parse


# --------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    epilog = "variants, in the order they run (--skip: on by default; --extra: off by default):\n" + "\n".join(
        f"  {name:<11s} {'--extra' if v.extra else '--skip '}  {v.help}" for name, v in VARIANTS.items())
    p = argparse.ArgumentParser(description=__doc__, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10_mini.npz", help=".npz data set (path from the repo root)")
    p.add_argument("--synthetic-cifar", action="store_true", help="random uint8 data of CIFAR-10's shapes (50k/10k)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, the first one is warm-up")
    p.add_argument("--steps", type=int, default=0,
                   help="truncate each epoch to this many steps (and the test set in proportion); "
                        "rates are extrapolated to the full epoch")
    p.add_argument("--workers", type=int, default=2, help="upstream DataLoader num_workers")
    p.add_argument("--copies", type=int, default=3, help="retrain seeds per cell")
    p.add_argument("--density", type=float, default=0.05)
    p.add_argument("--skip", default="", type=variant_names(False),
                   help="comma list of " + ", ".join(n for n, v in VARIANTS.items() if not v.extra) + " to skip")
    p.add_argument("--extra", default="", type=variant_names(True),
                   help="comma list of " + ", ".join(n for n, v in VARIANTS.items() if v.extra) + " to run too")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode for --extra compile")
    p.add_argument("--scan-copies", default="9,27", help="copies fused per pass for --extra scan")
    p.add_argument("--lmc-samples", default=f"{LandscapeSpec.bn_samples}:{LandscapeSpec.error_samples}",
                   help="bn_samples:error_samples of the LMC (training images; 0 = all), as in config.yaml")
    p.add_argument("--lmc-points", type=int, default=11)
    p.add_argument("--profile-steps", type=int, default=100)
    p.add_argument("--stat", choices=("min", "mean"), default="min", help="epoch time over the timed epochs")
    p.add_argument("--cudnn-benchmark", action="store_true")
    p.add_argument("--out", default=os.environ.get("OUT"), help="folder for the profiler trace")
    p.add_argument("--arch", default="preresnet", choices=list(ARCHITECTURES),
                   help="network retrained by ours (the upstream recipe is PreResNet-20 only)")
    p.add_argument("--depth", type=int, default=0, help="its depth (0: preresnet 20, vgg 19, densenet 40)")
    p.add_argument("--width", type=float, default=1.0, help="its width multiplier")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="epoch times in wall seconds, or this process's CPU seconds (robust on a shared machine)")
    return p.parse_args(argv)


def prepare(a: argparse.Namespace) -> Bench:
    """Set the clock and torch up, load the data, prune the start state; log the setup."""
    global STAT, CLOCK
    STAT = a.stat
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    depth = a.depth or {"preresnet": 20, "vgg": 19, "densenet": 40}.get(a.arch, 20)
    if a.arch != "preresnet" or depth != 20 or a.width != 1:
        a.skip.add("upstream")  # its plain network is PreResNet-20
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    engine = Engine.auto(a.device)
    dev = engine.device
    log(f"machine: {machine_name(dev)}")
    log(f"engine: {engine.describe()}, cudnn.benchmark={a.cudnn_benchmark}")

    full = synthetic_cifar() if a.synthetic_cifar else load_npz(a.data)
    n_full, nt_full = len(full.y_train), len(full.y_test)
    hp = TrainSpec(epochs=a.epochs, milestones=())
    if a.steps:
        n_run = min(n_full, a.steps * hp.batch_size)
        ds = subset(full, n_run, max(1, round(nt_full * n_run / n_full)))
    else:
        ds = full
    scale = n_full / len(ds.y_train)  # run epoch -> full epoch
    log(f"data: {'synthetic CIFAR-10 shapes' if a.synthetic_cifar else a.data}: {n_full} train / {nt_full} test "
        f"images {full.image_shape}; timed epochs use {len(ds.y_train)} / {len(ds.y_test)} "
        f"(x{scale:.2f} extrapolation); batch {hp.batch_size}, {a.epochs} epochs per run (first = warm-up)")

    spec = ModelSpec(a.arch, depth, a.width, in_channels=full.image_shape[-1], num_classes=full.num_classes)
    log(f"network: {spec.key}; clock: {a.clock}")
    state, masks = pruned_start(spec, a.density)
    seeds = list(range(1, a.copies + 1))
    return Bench(a, engine, full, ds, DeviceData(ds, dev, 4, True), hp, scale, spec, state, masks, seeds)


def summary(b: Bench):
    """The rates of every variant that ran, against upstream and (ceilings) the matrix rate."""
    a, R, full = b.a, b.R, b.full
    log("\n== summary (model-epochs/s: one model trained over the full training set once, incl. its test pass)")
    log(f"machine: {machine_name(b.dev)}")
    log(f"data: {len(full.y_train)} train images {full.image_shape}, batch {b.hp.batch_size}, {b.spec.key} at "
        f"density {a.density}; {a.clock} clock")
    rows = [("upstream (DataLoader, 1 model)", "upstream"), (f"ours fused K={a.copies}", "fused"),
            (f"ours sequential K=1 x{a.copies}", "sequential"),
            (f"ours fused K={a.copies}, NCHW", "nchw_fused"), ("ours sequential, NCHW", "nchw_seq"),
            (f"ours fused K={a.copies}, eager (no CUDA graph)", "eager"),
            ("ours K=1, eager (no CUDA graph)", "eager1"), ("ours fused + compile", "compile")]
    rows += [(f"ours fused K={k}", f"fused{k}") for k in a.scan_copies.split(",") if k]
    rows += [(f"digits fused K={a.copies}", "digits_fused"), ("digits sequential", "digits_seq")]
    base = R.get("upstream")
    log(f"{'variant':<34s} {'model-ep/s':>10s} {'s/model-ep':>10s} {'vs upstream':>11s}")
    for name, key in rows:
        if key in R:
            v = R[key]
            vs = f"{v / base:10.2f}x" if base and not key.startswith("digits") else f"{'':>11s}"
            log(f"{name:<34s} {v:10.3f} {1 / v:10.2f} {vs}")
    if "fused" in R and "sequential" in R:
        log(f"fused / sequential: {R['fused'] / R['sequential']:.2f}x")
    if b.ceil is not None:
        train_f, test_f = b.flops
        floor = (train_f + test_f) / b.ceil["matmul_flops"]
        for name, key in rows:
            if key in R and not key.startswith("digits"):
                log(f"  {name:<32s} {100 * floor * R[key]:6.2f}% of the {b.ceil['dtype']} matrix-product rate "
                    f"({(train_f + test_f) * R[key] / 1e12:.1f} TFLOP/s achieved)")
    if "nchw_fused" in R:
        log(f"NCHW fused / sequential: {R['nchw_fused'] / R['nchw_seq']:.2f}x; channels_last / NCHW: "
            f"{R.get('fused', float('nan')) / R['nchw_fused']:.2f}x fused, "
            f"{R.get('sequential', float('nan')) / R['nchw_seq']:.2f}x sequential")
    if "digits_fused" in R:
        log(f"digits fused / sequential: {R['digits_fused'] / R['digits_seq']:.2f}x")
    if b.lmc is not None:
        lmc_pair = b.lmc["pair_s"]
        one = 1 / R["sequential"] if "sequential" in R else None
        log(f"LMC+CKA per pair: {lmc_pair:.2f} s" + (f" = {lmc_pair / one:.2f}x one epoch of one model" if one else ""))


def projection(b: Bench):
    """The reference grid's hours at the measured rates."""
    a, R = b.a, b.R
    retrain_me = GRID_CELLS * GRID_COPIES * GRID_EPOCHS
    dense_me = GRID_DENSE * GRID_EPOCHS
    unit = "GPU-hours" if b.dev.type == "cuda" else "CPU-hours (this machine)"
    lmc_h = GRID_CELLS * R["lmc_cell"] / 3600 if "lmc_cell" in R else 0.0
    log(f"\nreference grid: {GRID_CELLS} cells x {GRID_COPIES} copies x {GRID_EPOCHS} epochs = {retrain_me} "
        f"model-epochs of retraining, + {dense_me} dense, + {GRID_CELLS} cells of LMC/CKA "
        f"({lmc_h:.1f} h at the measured rate)")
    dense_rate = R.get("sequential", R.get("fused"))
    # The workflow fuses copies only where Engine.copies_for says so (all on a GPU, small
    # models on a CPU): project with the variant it would run.
    ours = "fused" if b.engine.copies_for(b.spec, tuple(b.full.image_shape[:2]), a.copies) > 1 else "sequential"
    for name, key in (("upstream", "upstream"), (f"ours ({ours}, as the workflow runs)", ours),
                      ("ours eager (no CUDA graph)", "eager"), ("ours fused+compile", "compile")):
        if key in R and dense_rate:
            d_rate = R["eager1"] if key == "eager" and "eager1" in R else (
                R[key] if key == "upstream" else dense_rate)
            h = (retrain_me / R[key] + dense_me / d_rate) / 3600 + lmc_h
            log(f"  {name:<24s} {h:8.1f} {unit}")


def main(argv=None):
    a = parse_args(argv)
    b = prepare(a)
    for name, v in VARIANTS.items():
        if (name in a.extra) if v.extra else (name not in a.skip):
            v.run(b)
    summary(b)
    projection(b)


if __name__ == "__main__":
    main()
