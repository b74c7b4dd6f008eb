"""How far LMC measured on training-image subsets is from LMC on the whole training set.

Reads the retrained copies of every finished cell of a study (the workflow's own outputs),
measures each cell's landscape metrics with the whole training set (bn_samples =
error_samples = 0, the paper's code; taken from the cell's landscape.json when the workflow
measured it that way) and with each subset setting, and prints, per setting:
the largest and mean |ΔLMC| over pairs, the number of cells whose mean LMC falls on the other
side of lmc_epsilon, and the time per cell. Per-pair values go to --csv.

    python benchmarks/lmc_subset_agreement.py --configfile my_study.yaml --study NAME --workdir . \
        --settings 1000:1000,2000:2000,0:2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from threeregime.checkpoints import load_torch  # noqa: E402
from threeregime.landscape import landscape_metrics  # noqa: E402
from threeregime.spec.landscape import LandscapeSpec  # noqa: E402
from threeregime.spec.model import ModelSpec  # noqa: E402
from threeregime.pipeline import device_data  # noqa: E402
from threeregime.plan import load_plan  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from threeregime.engine import Engine  # noqa: E402


def parse_settings(text: str) -> list[tuple[int, int]]:
    """'1000:2000,0:5000' -> [(bn_samples, error_samples), ...]."""
    return [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item]


def _copies(cell) -> tuple[ModelSpec, dict]:
    ck = load_torch(os.path.join(cell["dir"], "retrained.pt"))
    return ModelSpec(**ck["spec"]), {s: c["state_dict"] for s, c in ck["copies"].items()}


def cross_pairs(cells, settings, data, engine, land) -> None:
    """LMC of copies from different temperatures: different dense starts, so a barrier."""
    by_load = {}
    for cell in cells:
        by_load.setdefault((cell["load"], cell["seed"]), []).append((cell["temperature"], cell))
    for (load, _), found in sorted(by_load.items()):
        (lo, a), (hi, b) = min(found, key=lambda x: x[0]), max(found, key=lambda x: x[0])
        if lo == hi:
            continue
        (spec, sa), (_, sb) = _copies(a), _copies(b)
        states = {1: sa[min(sa)], 2: sb[min(sb)]}
        out = []
        for bn, err in settings:
            what = LandscapeSpec(points=land.points, bn_samples=bn, error_samples=err, cka_samples=land.cka_samples)
            res = landscape_metrics(spec, states, data, engine, what)
            out.append(f"{bn or 'all'}:{err or 'all'} {res['pairs'][0]['lmc']:+.4f}")
        print(f"load {load:g}: temperature {lo:g} x {hi:g} copies, LMC " + ", ".join(out), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", required=True, help="a config file merged over config.yaml")
    ap.add_argument("--study", required=True, help="the study whose finished cells are compared")
    ap.add_argument("--workdir", default=".", help="the folder holding results/")
    ap.add_argument("--settings", default="1000:1000,2000:2000", help="bn_samples:error_samples,...")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--csv", default="", help="write per-pair values here")
    ap.add_argument("--cross", action="store_true",
                    help="instead: pairs with real barriers, retrain copy 1 of the lowest- and the "
                         "highest-temperature cell at each density (same dense seed)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    study = load_plan([a.configfile], ROOT).study(a.study)
    land, eps = study.base.landscape, study.regimes.lmc_epsilon
    engine = Engine.auto(a.device)
    _, data = device_data(study.data, engine, augment=False)
    cells = [{"dir": os.path.join(a.workdir, c.retrain_dir), "landscape": os.path.join(a.workdir, c.landscape_path),
              "temperature": t, "load": l, "seed": c.seed} for t, l, c in study.cells()]
    cells = [c for c in cells if os.path.exists(c["landscape"])]
    if not cells:
        sys.exit(f"no finished cells of study {a.study} under {a.workdir}/results/cells")
    print(f"{len(cells)} cells, {data.n_train} training images, {engine.describe()}")
    settings = [(0, 0)] + parse_settings(a.settings)
    if a.cross:
        return cross_pairs(cells, settings, data, engine, land)
    rows, seconds = [], {s: [] for s in settings}
    for cell in cells:
        spec, states = _copies(cell)
        with open(cell["landscape"]) as f:
            stored = json.load(f)
        for bn, err in settings:
            if (bn, err) == (0, 0) and stored.get("samples", {}).get("bn") == stored.get("samples", {}).get(
                    "error") == data.n_train:
                # the workflow already measured this cell on the whole set: use its values
                for pr in stored["pairs"]:
                    rows.append({"cell": f"T{cell['temperature']:g} L{cell['load']:g} s{cell['seed']}", "bn": data.n_train,
                                 "error": data.n_train, "setting": "0:0",
                                 "pair": f"{pr['seed_a']}-{pr['seed_b']}", "lmc": pr["lmc"]})
                continue
            what = LandscapeSpec(points=land.points, bn_samples=bn, error_samples=err, cka_samples=land.cka_samples)
            t0 = time.perf_counter()
            res = landscape_metrics(spec, states, data, engine, what)
            seconds[(bn, err)].append(time.perf_counter() - t0)
            for pr in res["pairs"]:
                rows.append({"cell": f"T{cell['temperature']:g} L{cell['load']:g} s{cell['seed']}", "bn": res["samples"]["bn"],
                             "error": res["samples"]["error"], "setting": f"{bn}:{err}",
                             "pair": f"{pr['seed_a']}-{pr['seed_b']}", "lmc": pr["lmc"]})
        name = f"T{cell['temperature']:g} L{cell['load']:g} s{cell['seed']}"
        mine = pd.DataFrame([r for r in rows if r["cell"] == name]).groupby("setting", sort=False).lmc.mean()
        print(f"{name}: mean LMC " + ", ".join(f"{k} {v:+.4f}" for k, v in mine.items()))
    df = pd.DataFrame(rows)
    ref = df[df.setting == "0:0"].set_index(["cell", "pair"]).lmc
    print(f"\nwhole set: {data.n_train} images; lmc_epsilon {eps}; {len(ref)} pairs in {len(cells)} cells")
    print(f"{'bn:error':>12} {'max|dLMC|':>10} {'mean|dLMC|':>11} {'cells flipped':>14} {'s/cell':>8}")
    for bn, err in settings:
        cur = df[df.setting == f"{bn}:{err}"].set_index(["cell", "pair"]).lmc
        d = (cur - ref).abs()
        cell_ref, cell_cur = ref.groupby("cell").mean(), cur.groupby("cell").mean()
        flipped = int(((cell_ref < eps) != (cell_cur < eps)).sum())
        print(f"{bn or 'all'!s:>5}:{err or 'all'!s:<6} {d.max():10.4f} {d.mean():11.4f} "
              f"{flipped:>8} of {len(cell_ref):<3} {np.mean(seconds[(bn, err)] or [np.nan]):8.1f}")
    if a.csv:
        df.to_csv(a.csv, index=False)


if __name__ == "__main__":
    main()
