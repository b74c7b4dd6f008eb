"""Compare a study's adaptive search with its full grid (README "Adaptive search").

Reads the adaptive table (results/studies/<study>/adaptive.parquet) and every cell of the
full grid whose files exist (as results/studies/<study>/cells.parquet would label it), and
prints: cells computed by each, and the fraction of cells the search labels as the full grid
does (over the cells the full grid has computed so far, so it also works while the full grid
is still running). With the whole grid present, it replays the search on the measured regimes
(threeregime.adaptive.search) and checks that it asks for the same cells as the workflow did.

With --repeat-workdir/--repeat-configfile (the same study's full grid computed again with other
retrain seeds), it also prints how often the full grid agrees with its own repeat: the noise
floor of "labelled as the full grid".

    python benchmarks/adaptive_demo_compare.py --workdir results/adaptive_bench \\
        --configfile presets/adaptive_demo.yaml --study demo_adaptive \\
        [--repeat-workdir results/adaptive_repeat \\
         --repeat-configfile presets/adaptive_demo.yaml presets/adaptive_demo_repeat.yaml]
"""

import argparse
import os

import numpy as np
import pandas as pd

from threeregime.adaptive import search, settings_of
from threeregime.plan import load_plan
from threeregime.tables import cell_key, cell_rows, summarize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def full_grid(study, workdir: str) -> pd.DataFrame:
    """The full grid's summary (one row per cell whose files exist), indexed by (temperature, load)."""
    rows = []
    for t, l, c in study.cells():
        land = os.path.join(workdir, c.landscape_path)
        log = os.path.join(workdir, c.retrain_dir, "retrain_log.csv")
        if os.path.exists(land) and os.path.exists(log):
            rows += cell_rows(cell_key(study, t, l, c), log, land)
    return summarize(pd.DataFrame(rows), study.regimes).set_index(["temperature", "load"])


def as_grid(table: pd.DataFrame, temps, loads) -> np.ndarray:
    return np.array([[table.regime.get((t, l), "?") for l in loads] for t in temps], dtype=object)


def near_cells(table: pd.DataFrame, temps, loads, regimes, settings: dict) -> dict:
    """{(row, col): Regimes.near} of a full grid's cells under the search's margins (as the
    workflow's rounds measure them)."""
    return {(i, j): regimes.near(table.regime[(t, l)], table.lmc[(t, l)], table.cka[(t, l)], settings["lmc_margin"],
                                 settings["cka_margin"])
            for i, t in enumerate(temps) for j, l in enumerate(loads) if (t, l) in table.index}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--configfile", required=True, nargs="+")
    ap.add_argument("--study", required=True)
    ap.add_argument("--lmc-margin", type=float, help="replay with this lmc_margin instead of the study's")
    ap.add_argument("--repeat-workdir", help="the same study's full grid computed again (other retrain seeds)")
    ap.add_argument("--repeat-configfile", nargs="+", help="the config files the repeat was computed with")
    args = ap.parse_args()
    plan = load_plan(args.configfile, ROOT)
    study = plan.study(args.study)
    full = full_grid(study, args.workdir)
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
    grid = as_grid(full, temps, loads)
    print("full grid regimes (rows: temperature ascending, columns: load ascending):")
    for t, line in zip(temps, grid):
        print(f"  {t:>6g}  " + " ".join(f"{x:5}" for x in line))
    settings = settings_of(plan.config, args.study)
    if args.lmc_margin is not None:
        settings["lmc_margin"] = args.lmc_margin
    per_round, pin = settings["per_round"], settings["pin"]
    print(f"search settings: {settings}")
    if len(full) == n:
        replay = search(grid, per_round, pin, near=near_cells(full, temps, loads, study.regimes, settings))
        asked = {(temps[i], loads[j]) for i, j in replay.computed}
        print(f"replay on the measured grid: {len(asked)} cells, same cells as the workflow: "
              f"{asked == set(adaptive.index[adaptive.computed])}, labelled as the full grid "
              f"{round(replay.agreement(grid) * n)} of {n} ({100 * replay.agreement(grid):.1f} %)")
    if args.repeat_workdir:
        repeat_study = load_plan(args.repeat_configfile or args.configfile, ROOT).study(args.study)
        repeat_table = full_grid(repeat_study, args.repeat_workdir)
        repeat = as_grid(repeat_table, temps, loads)
        if "?" in repeat or "?" in grid:
            raise SystemExit("both full grids must be complete to compare them")
        eps = study.regimes.lmc_epsilon
        for t, l in [(t, l) for t in temps for l in loads if full.regime[(t, l)] != repeat_table.regime[(t, l)]]:
            print(f"  the grids differ at ({t:g}, {l:g}): {full.regime[(t, l)]} (LMC {full.lmc[(t, l)]:.3f}), "
                  f"repeat {repeat_table.regime[(t, l)]} (LMC {repeat_table.lmc[(t, l)]:.3f}); eps {eps:g}")
        near = (full.lmc - eps).abs() < 0.02
        flipped = full.regime != repeat_table.regime.reindex(full.index)
        print(f"cells with LMC within 0.02 of eps in the full grid: {int(near.sum())}, "
              f"of which {int((near & flipped).sum())} change regime in the repeat")
        diff = (full.lmc - repeat_table.lmc.reindex(full.index)) / np.sqrt(2)
        print("LMC noise per load column (root mean square of the two grids' difference / sqrt 2): "
              + ", ".join(f"{l:g}: {np.sqrt((diff.xs(l, level='load') ** 2).mean()):.3f}" for l in loads))
        searched = np.array([[adaptive.regime[(t, l)] for l in loads] for t in temps], dtype=object)
        print(f"repeat of the full grid (retrain seeds {list(repeat_study.base.retrain.seeds)}): labelled as the full grid: "
              f"{int((repeat == grid).sum())} of {n} ({100 * np.mean(repeat == grid):.1f} %)")
        print(f"adaptive search labelled as the repeat: {int((searched == repeat).sum())} of {n} "
              f"({100 * np.mean(searched == repeat):.1f} %)")
        replay = search(repeat, per_round, pin,
                        near=near_cells(repeat_table, temps, loads, repeat_study.regimes, settings))
        print(f"search replayed on the repeat: {len(replay.computed)} cells, labelled as the repeat "
              f"{round(replay.agreement(repeat) * n)} of {n} ({100 * replay.agreement(repeat):.1f} %), as the first "
              f"full grid {100 * replay.agreement(grid):.1f} %")
        print("repeat regimes:")
        for t, line in zip(temps, repeat):
            print(f"  {t:>6g}  " + " ".join(f"{x:5}" for x in line))


if __name__ == "__main__":
    main()
