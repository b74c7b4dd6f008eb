"""Compare a study's adaptive search with its full grid (README "Adaptive search").

Reads the adaptive table (results/studies/<study>/adaptive.parquet) and every cell of the
full grid whose files exist (as results/studies/<study>/cells.parquet would label it), and
prints: cells computed by each, and the fraction of cells the search labels as the full grid
does (over the cells the full grid has computed so far, so it also works while the full grid
is still running). With the whole grid present, it replays the search on the measured regimes
(threeregime.adaptive.search) and checks that it asks for the same cells as the workflow did.

    python benchmarks/adaptive_demo_compare.py --workdir results/adaptive_bench \\
        --configfile presets/adaptive_demo.yaml --study demo_adaptive
"""

import argparse
import os

import numpy as np
import pandas as pd
import yaml

from threeregime.adaptive import search
from threeregime.study import deep_merge, resolve_study
from threeregime.tables import cell_rows, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--configfile", required=True)
    ap.add_argument("--study", required=True)
    args = ap.parse_args()
    with open(os.path.join(ROOT, "config.yaml")) as f:
        config = yaml.safe_load(f)
    with open(args.configfile) as f:
        config = deep_merge(config, yaml.safe_load(f))
    study = resolve_study(config, args.study)
    rows = []
    for t, l, c in study.cells():
        land = os.path.join(args.workdir, c.landscape_path)
        log = os.path.join(args.workdir, c.retrain_dir, "retrain_log.csv")
        if os.path.exists(land) and os.path.exists(log):
            key = {"study": study.name, "temperature_axis": study.temperature.name, "temperature": float(t),
                   "load_axis": study.load.name, "load": float(l), "dense_seed": c.seed,
                   "density": c.prune.density, "run": c.run.key, "ckpt": c.ckpt, "prune": c.prune.key,
                   "retrain": c.retrain.key}
            rows += cell_rows(key, log, land)
    r = study.regimes
    full = summarize(pd.DataFrame(rows), r["lmc_epsilon"], r["cka_threshold"]).set_index(["temperature", "load"])
    adaptive = pd.read_parquet(os.path.join(args.workdir, study.dir, "adaptive.parquet")).set_index(
        ["temperature", "load"])
    n = len(study.temperatures) * len(study.loads)
    both = adaptive.join(full[["regime"]].rename(columns={"regime": "full"}), how="inner")
    same = (both.regime == both.full)
    print(f"grid: {len(study.temperatures)} x {len(study.loads)} = {n} cells")
    print(f"full grid: {len(full)} of {n} cells computed so far")
    print(f"adaptive search: {int(adaptive.computed.sum())} cells computed ({n / adaptive.computed.sum():.2f}x fewer), "
          f"{int(adaptive['round'].max()) + 1} rounds of computing")
    print(f"labelled as the full grid: {int(same.sum())} of {len(both)} cells ({100 * same.mean():.1f} %)"
          f"; skipped cells: {int(same[~both.computed].sum())} of {int((~both.computed).sum())}")
    for (t, l), row in both[~same].iterrows():
        print(f"  differs at ({t:g}, {l:g}): search {row.regime} ({row.reason}), full grid {row.full}")
    temps, loads = sorted(map(float, study.temperatures)), sorted(map(float, study.loads))
    grid = np.array([[full.regime.get((t, l), "?") for l in loads] for t in temps], dtype=object)
    print("full grid regimes (rows: temperature ascending, columns: load ascending):")
    for t, line in zip(temps, grid):
        print(f"  {t:>6g}  " + " ".join(f"{x:5}" for x in line))
    if len(full) == n:
        replay = search(grid, int(config["studies"][args.study].get("adaptive", {}).get("per_round", 2)))
        asked = {(temps[i], loads[j]) for i, j in replay.computed}
        print(f"replay on the measured grid: {len(asked)} cells, same cells as the workflow: "
              f"{asked == set(adaptive.index[adaptive.computed])}, agreement {100 * replay.agreement(grid):.1f} %")


if __name__ == "__main__":
    main()
