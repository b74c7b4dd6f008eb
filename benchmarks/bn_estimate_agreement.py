"""Does a cell's LMC move with a speed setting? BatchNorm statistics, error curves and LMC of
one small cell across engine.eval_batch_size and channels_last, and accurate vs upstream.

Trains 2 copies of a width-0.25 PreResNet-20 (--epochs, 6) on the first 640 images of the
shared CIFAR-10 sample (the digits data when it is missing), then measures the pair with the
whole training set (11 points) under each engine setting, and re-estimates BatchNorm of the
midpoint network θ(0.5) to compare its buffers directly. The reference setting is the first
one (batch 64, contiguous layout).

    python benchmarks/bn_estimate_agreement.py [--states /tmp/bn_states.pt] [--estimates accurate,upstream]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from threeregime.data import DeviceData, from_arrays, load_digits_dataset  # noqa: E402
from threeregime.engine import Engine, build_model, reestimate_bn  # noqa: E402
from threeregime.landscape import interpolate, landscape_metrics  # noqa: E402
from threeregime.models import PreResNet  # noqa: E402
from threeregime.spec.landscape import LandscapeSpec  # noqa: E402
from threeregime.spec.model import ModelSpec  # noqa: E402
from threeregime.spec.train import TrainSpec  # noqa: E402
from threeregime.training import train_copies  # noqa: E402

CIFAR_MINI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                          "cifar10_mini.npz")
SETTINGS = [(64, False), (256, False), (640, False), (64, True), (256, True), (640, True)]


def small_data():
    if os.path.exists(CIFAR_MINI):
        with np.load(CIFAR_MINI) as z:
            return from_arrays(z["x_train"][:640], z["y_train"][:640], z["x_test"][:200], z["y_test"][:200])
    ds = load_digits_dataset()
    return from_arrays(ds.x_train[:640], ds.y_train[:640], ds.x_test[:200], ds.y_test[:200])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", default="", help="cache of the trained copies (written if missing)")
    ap.add_argument("--estimates", default="", help="comma-separated landscape.bn_estimate values (new code)")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = small_data()
    spec = ModelSpec(depth=20, width=0.25, in_channels=ds.image_shape[-1], num_classes=ds.num_classes)
    cpu = torch.device("cpu")
    if args.states and os.path.exists(args.states):
        states = torch.load(args.states)
    else:
        torch.manual_seed(0)
        init = PreResNet(spec).copy_state(0)
        trained, _ = train_copies(spec, [init] * 2, [1, 2], DeviceData(ds, cpu, crop_padding=4, hflip=True),
                                  TrainSpec(epochs=args.epochs, batch_size=64, lr=0.05, milestones=()),
                                  Engine(eval_batch_size=256), log=lambda *a: None)
        states = {s: st for s, st in zip((1, 2), trained)}
        if args.states:
            torch.save(states, args.states)
    data = DeviceData(ds, cpu)
    estimates = [e for e in args.estimates.split(",") if e] or [None]
    mid = interpolate(states[1], states[2], 0.5)
    first_of = {}
    for est in estimates:
        what = LandscapeSpec(points=11, bn_samples=0, error_samples=0, cka_samples=0)
        if est is not None:
            what = dataclasses.replace(what, bn_estimate=est)
        print(f"== bn_estimate {est or '(old code)'}: {what.key}")
        results = []
        for bs, cl in SETTINGS:
            engine = Engine(eval_batch_size=bs, channels_last=cl)
            t0 = time.perf_counter()
            res = landscape_metrics(spec, states, data, engine, what)
            took = time.perf_counter() - t0
            model = build_model(spec, [mid], engine)
            kw = {} if est is None else {"estimate": est}
            reestimate_bn(model, data.x_train, data, engine, **kw)
            bufs = {n: b.double().clone() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))}
            results.append((bs, cl, res["pairs"][0], bufs, took))
        _, _, ref, ref_bufs, _ = results[0]
        first_of[est] = ref, ref_bufs
        for bs, cl, pair, bufs, took in results:
            rel = spread(bufs, ref_bufs)
            curve = np.abs(np.array(pair["train_error_curve"]) - np.array(ref["train_error_curve"])).max()
            print(f"eval batch {bs:4d} channels_last {cl!s:5}: LMC {pair['lmc']:+.6f} (diff {pair['lmc'] - ref['lmc']:+.2e}),"
                  f" max |d err(t)| {curve:.2e}, BN buffers of θ(0.5) {rel}, {took:.1f} s")
        print("error curve (reference):", " ".join(f"{e:.4f}" for e in ref["train_error_curve"]))
    if len(first_of) == 2:
        (pa, ba), (pb, bb) = first_of.values()
        print(f"{' vs '.join(first_of)} (batch 64, contiguous): LMC {pa['lmc']:+.6f} vs {pb['lmc']:+.6f}, "
              f"max |d err(t)| {np.abs(np.array(pa['train_error_curve']) - pb['train_error_curve']).max():.2e}, "
              f"BN buffers of θ(0.5) {spread(bb, ba)}")
    return 0


def spread(bufs: dict, ref: dict) -> str:
    """Largest difference of running means (in units of the reference's standard deviation) and
    relative difference of running variances."""
    means = max(float(((bufs[n] - ref[n]).abs() / ref[n.replace("mean", "var")].sqrt()).max())
                for n in bufs if n.endswith("running_mean"))
    variances = max(float(((bufs[n] - ref[n]).abs() / ref[n]).max()) for n in bufs if n.endswith("running_var"))
    return f"mean {means:.2e} sd, var {variances:.2e} rel"


if __name__ == "__main__":
    sys.exit(main())
