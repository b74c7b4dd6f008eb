"""Is a cell bitwise reproducible across torch thread counts? (issue 25, README "What is reproducible")

One cell of the method on the digits (a PreResNet-8 at width 0.5 from seed 0, pruned to density
0.1, 3 copies retrained for 3 epochs, LMC and CKA of the 3 pairs) with 1 torch thread, 2
threads, and 1 thread again, in one process; prints each run's pair metrics and test errors
and their largest differences from the first run.

    python benchmarks/thread_reproducibility.py
"""
import time

import numpy as np
import torch

from threeregime.advise import advise
from threeregime.data import load_digits_dataset
from threeregime.engine import Engine
from threeregime.models import PreResNet
from threeregime.spec.data import DataSpec
from threeregime.spec.landscape import LandscapeSpec
from threeregime.spec.model import ModelSpec
from threeregime.spec.train import TrainSpec


def main() -> None:
    ds = load_digits_dataset()
    spec = ModelSpec("preresnet", 8, 0.5, ds.image_shape[-1], ds.num_classes)
    torch.manual_seed(0)
    state = PreResNet(spec, 1).copy_state(0)
    runs = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        t0 = time.time()
        r = advise(state, spec, DataSpec("digits", "", False, 1, False), 0.1,
                   TrainSpec(lr=0.1, batch_size=64, epochs=3, milestones=(2,)), [1, 2, 3], Engine.auto("cpu"),
                   LandscapeSpec(points=5, bn_samples=500, error_samples=500, cka_samples=500), log=lambda *a: None)
        run = {m: np.array([p[m] for p in r["pairs"]]) for m in ("lmc", "cka")}
        run["test_error"] = np.array(r["test_error"])
        runs.append(run)
        print(f"{threads} thread(s), {time.time() - t0:.1f} s: " + "; ".join(f"{k} {np.round(v, 4).tolist()}"
                                                                     for k, v in run.items()))
    for name, run in (("2 threads", runs[1]), ("1 thread again", runs[2])):
        same = all(np.array_equal(run[k], runs[0][k]) for k in run)
        print(f"{name} vs 1 thread: bitwise equal {same}; largest difference "
              + ", ".join(f"{k} {np.abs(run[k] - runs[0][k]).max():.4f}" for k in run))


if __name__ == "__main__":
    main()
