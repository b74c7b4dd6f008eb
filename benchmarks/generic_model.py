"""The generic path (model.factory: threeregime.generic.GenericNetwork, torch.func) against the
built-in fused network, on the same network: PreResNet-20, K = 1 and K = 3 copies, side by side
in one run, in seconds per model-epoch.

    PYTHONPATH=. python benchmarks/generic_model.py [--images 640] [--device cpu] [--repeats 2]

The factory is `benchmarks/generic_model.py:preresnet20`: the built-in PreResNet-20 with one
copy, its [N, 1, classes] output squeezed to [N, classes] (what a factory returns), so both
paths run the same layers, initialised the same way; only how K copies are held and run
differs. Trains one epoch of `--images` CIFAR-10 images (the shared mini set, else random
32x32 images) at batch 64, after one warm-up epoch; the best of `--repeats`. The seconds per
model-epoch are also scaled to CIFAR-10's 50,000 training images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from threeregime.data import DeviceData, from_arrays  # noqa: E402
from threeregime.engine import Engine  # noqa: E402
from threeregime.models import PreResNet  # noqa: E402
from threeregime.spec.model import ModelSpec, factory_source  # noqa: E402
from threeregime.spec.train import TrainSpec  # noqa: E402
from threeregime.training import train_copies  # noqa: E402

MINI = ROOT.parent / "shared" / "data" / "cifar10_mini.npz"


class _OneCopy(nn.Module):
    """A built-in network with one copy, as a plain module: images -> logits [N, classes]."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, 0]


def preresnet20(in_channels=3, num_classes=10):
    """The factory the benchmark trains through the generic path."""
    return _OneCopy(PreResNet(ModelSpec(depth=20, in_channels=in_channels, num_classes=num_classes), 1))


def _data(n: int):
    if MINI.exists():
        with np.load(MINI) as z:
            return from_arrays(z["x_train"][:n], z["y_train"][:n], z["x_test"][:200], z["y_test"][:200])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n + 200, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n + 200)
    return from_arrays(x[:n], y[:n], x[n:], y[n:])


def _epoch_seconds(spec, copies, data, engine, repeats) -> float:
    torch.manual_seed(0)
    from threeregime.models import build_network

    init = build_network(spec, 1).copy_state(0)
    hp = TrainSpec(epochs=1, batch_size=64, lr=0.05, milestones=())
    quiet = dict(log=lambda *a: None)
    train_copies(spec, [init] * copies, list(range(1, copies + 1)), data, hp, engine, **quiet)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        train_copies(spec, [init] * copies, list(range(1, copies + 1)), data, hp, engine, **quiet)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=640)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    ds = _data(a.images)
    engine = Engine.auto(a.device, cuda_graph=False)  # the generic path is never graphed: compare like with like
    data = DeviceData(ds, engine.device, 4, True)
    factory = f"{os.path.relpath(__file__)}:preresnet20"
    specs = {"built-in": ModelSpec(depth=20, in_channels=3, num_classes=10),
             "factory": ModelSpec("factory", 0, 1.0, 3, 10, factory, {}, factory_source(factory))}
    print(f"PreResNet-20, {a.images} images of 32x32, batch 64, {engine.describe()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'K':>2} {'path':>9} {'s/epoch':>9} {'s per model-epoch':>18} {'x 50k images':>13} {'generic/built-in':>17}")
    for k in (1, 3):
        seconds = {name: _epoch_seconds(spec, k, data, engine, a.repeats) for name, spec in specs.items()}
        for name, s in seconds.items():
            per_model = s / k
            ratio = f"{seconds['factory'] / seconds['built-in']:.2f}x" if name == "factory" else ""
            print(f"{k:>2} {name:>9} {s:>9.2f} {per_model:>18.3f} {per_model * 50000 / a.images:>13.1f} {ratio:>17}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
