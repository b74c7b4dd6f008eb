"""The adaptive search (threeregime.adaptive) on synthetic phase diagrams of the reference
grid's size (16 temperatures x 9 loads by default): cells computed, rounds, and the fraction
of cells labelled as the full grid labels them.

Diagrams: two monotone staircases as in the paper (Regime I cold and sparse, II-A hot and
sparse, II-B dense) with random slopes and offsets; the same with noise (each cell flipped to
another regime with probability p, so the full grid itself is not monotone); one regime only;
and a single Regime-I boundary.

    python benchmarks/adaptive_search.py --rows 16 --cols 9 --trials 50

With --values: diagrams from LMC and CKA fields instead (planar fields in the units of the demo's
measurements, ε = -0.05, threshold 0.97, Gaussian noise of standard deviation 0.005, 0.01, 0.02 on
LMC and 0.003 on CKA), searched with lmc_margin 0 and with the default, so that near cells
(threeregime.adaptive.near_regimes) come from the noisy values as in the workflow.
"""

import argparse
import time

import numpy as np

from threeregime.adaptive import DEFAULT_LMC_MARGIN, DEFAULT_PER_ROUND, search
from threeregime.regimes import Regimes

REGIMES = ("I", "II-A", "II-B")


def staircases(rng, rows, cols, cka=True):
    t = np.linspace(0, 1, rows)[:, None]
    d = np.linspace(0, 1, cols)[None, :]
    a, b = rng.uniform(0.5, 2.0, 2)
    lmc = -(a * t - b * d - rng.uniform(-0.2, 0.8))
    k = t * rng.uniform(0.5, 1.5) + d * rng.uniform(0.5, 2.0)
    thr = rng.uniform(0.4, 1.4) if cka else -1.0
    return np.where(lmc < 0, "I", np.where(k >= thr, "II-B", "II-A")).astype(object)


def noisy(rng, g, p):
    g = g.copy()
    for cell in zip(*np.nonzero(rng.random(g.shape) < p)):
        g[cell] = rng.choice([r for r in REGIMES if r != g[cell]])
    return g


def fields(rng, rows, cols, sigma, eps=-0.05, thr=0.97):
    """Noisy LMC and CKA fields: LMC falls with temperature and rises with load across ε, CKA
    rises with both across the threshold."""
    t = np.linspace(0, 1, rows)[:, None]
    d = np.linspace(0, 1, cols)[None, :]
    a, b, off = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2), rng.uniform(-0.05, 0.05)
    lmc = eps - a * t + b * d + off + sigma * rng.standard_normal((rows, cols))
    cka = (thr + rng.uniform(0.02, 0.06) * d + rng.uniform(0, 0.03) * t - rng.uniform(0.01, 0.05)
           + 0.003 * rng.standard_normal((rows, cols)))
    return lmc, cka


def main_values(args):
    eps, thr = -0.05, 0.97
    n = args.rows * args.cols
    print(f"{args.rows} x {args.cols} = {n} cells, per_round {args.per_round}, pin {args.pin}, "
          f"{args.trials} diagrams each\n")
    print("| LMC noise (sd) | lmc_margin | cells computed (mean, max) | fewer than the grid | "
          "labelled as the full grid (mean, min) | diagrams >= 95 % |")
    print("|---|---|---|---|---|---|")
    for sigma in (0.005, 0.01, 0.02):
        rng = np.random.default_rng(args.seed)
        diagrams = [fields(rng, args.rows, args.cols, sigma) for _ in range(args.trials)]
        for margin in (0.0, DEFAULT_LMC_MARGIN):
            counts, agree = [], []
            for lmc, cka in diagrams:
                cells = list(np.ndindex(lmc.shape))
                truth = np.empty(lmc.shape, dtype=object)
                for c in cells:
                    truth[c] = Regimes(eps, thr).classify(lmc[c], cka[c])
                near = {c: Regimes(eps, thr).near(truth[c], lmc[c], cka[c], margin, 0.0) for c in cells}
                run = search(truth, args.per_round, args.pin, near=near)
                counts.append(len(run.computed))
                agree.append(run.agreement(truth))
            counts, agree = np.array(counts), np.array(agree)
            print(f"| {sigma} | {margin} | {counts.mean():.1f}, {counts.max()} | {n / counts.mean():.1f}x | "
                  f"{100 * agree.mean():.1f} %, {100 * agree.min():.1f} % | {100 * np.mean(agree >= 0.95):.0f} % |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--cols", type=int, default=9)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--per-round", type=int, default=DEFAULT_PER_ROUND)
    ap.add_argument("--pin", default="column")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--values", action="store_true", help="diagrams from noisy LMC and CKA fields (near cells)")
    args = ap.parse_args()
    if args.values:
        return main_values(args)
    rng = np.random.default_rng(args.seed)
    n = args.rows * args.cols
    kinds = {
        "two staircases": lambda: staircases(rng, args.rows, args.cols),
        "two staircases, 2 % noise": lambda: noisy(rng, staircases(rng, args.rows, args.cols), 0.02),
        "two staircases, 5 % noise": lambda: noisy(rng, staircases(rng, args.rows, args.cols), 0.05),
        "one Regime-I boundary": lambda: staircases(rng, args.rows, args.cols, cka=False),
        "one regime": lambda: np.full((args.rows, args.cols), REGIMES[rng.integers(3)], dtype=object),
    }
    print(f"{args.rows} x {args.cols} = {n} cells, per_round {args.per_round}, pin {args.pin}, "
          f"{args.trials} diagrams each\n")
    print("| diagrams | cells computed (mean, max) | fewer than the grid | rounds (mean) | "
          "labelled as the full grid (mean, min) | diagrams >= 95 % |")
    print("|---|---|---|---|---|---|")
    for name, make in kinds.items():
        counts, rounds, agree = [], [], []
        t0 = time.time()
        for _ in range(args.trials):
            g = make()
            run = search(g, args.per_round, args.pin)
            counts.append(len(run.computed))
            rounds.append(run.rounds)
            agree.append(run.agreement(g))
        counts, agree = np.array(counts), np.array(agree)
        print(f"| {name} | {counts.mean():.1f}, {counts.max()} | {n / counts.mean():.1f}x | {np.mean(rounds):.1f} | "
              f"{100 * agree.mean():.1f} %, {100 * agree.min():.1f} % | {100 * np.mean(agree >= 0.95):.0f} % |"
              f"  <!-- {time.time() - t0:.1f} s -->")


if __name__ == "__main__":
    main()
