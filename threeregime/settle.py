"""More retrain seeds only where they decide: the settle option (`studies.<name>.settle`).

A cell's regime is unsettled when the intervals of its mean LMC and CKA reach another regime
(threeregime.uncertainty). More copies narrow the intervals, but they cost a retraining each,
so they go only to the cells that need them, round by round:

* round 0 reads the study's own cells (its retrain seeds, e.g. 1-3);
* each later round adds one *batch* of copies to every cell still unsettled after the round
  before: as many copies as the study's retrain seeds, with the next unused seeds (4-6, then
  7-9, ...), retrained from the same pruned weights;
* a cell stops when it is settled, when its regime is `missing` (a diverged copy: more seeds
  do not repair it), or when its budget (`max_copies` per dense seed) is spent.

A batch is an ordinary retraining (a `RetrainSpec` with those seeds, keyed by its
hyperparameters like any other, at its own path beside the cell's first copies), so every
existing file is reused, a study with retrain seeds 4-6 shares them, and a rerun with more
rounds computes only the new batches. LMC and CKA are measured within each batch (pairs
4-5, 4-6, 5-6; copies of different batches are not paired): the copies are the independent
units of the interval either way.

The pure part (which cells a round reads, what the next round asks for, why) is here,
torch- and pandas-free at import so the Snakefile can plan with it; `measure` reads the
files as the study's table does.
"""

from __future__ import annotations

import math

from .regimes import MISSING
from .spec.common import ConfigError, fmt

DEFAULT_ROUNDS = 2


def batches(settle: dict, seeds, where: str) -> tuple[tuple[int, ...], ...]:
    """The seed batches the settle option may add to a cell, in round order: one per round, as
    many as the study's retrain seeds, the next unused seeds; as many as `rounds` and the budget
    `max_copies` (default: all rounds) allow."""
    k, top = len(seeds), max(seeds)
    rounds = int(settle.get("rounds", DEFAULT_ROUNDS))
    max_copies = int(settle.get("max_copies", k * (rounds + 1)))
    n = min(rounds, (max_copies - k) // k)
    if n < 1:
        raise ConfigError(f"{where}.settle.max_copies = {max_copies} leaves no room for one round of {k} more "
                          f"copies beyond the {k} retrain seeds: set it to at least {2 * k} (or drop settle)")
    return tuple(tuple(range(top + b * k + 1, top + (b + 1) * k + 1)) for b in range(n))


def _key(t, l) -> str:
    return f"{float(t)!r}|{float(l)!r}"


def extra_batches(state: dict | None) -> dict[str, int]:
    """{cell key: batches of extra copies} the round after `state` reads: those measured so far
    and the one `state` asked for."""
    if state is None:
        return {}
    out = {_key(c["temperature"], c["load"]): int(c["extra"]) for c in state["cells"]}
    for n in state["next"]:
        out[_key(n["temperature"], n["load"])] = int(n["batch"])
    return out


def round_cells(study, state: dict | None) -> list[tuple[float, float, object]]:
    """(temperature, load, CellSpec) of every file set the round after `state` reads: each cell
    of the grid (every dense seed) with its own copies, then each of its extra batches."""
    extra = extra_batches(state)
    out = []
    for t, l, cell in study.cells():
        out.append((t, l, cell))
        for b in range(1, extra.get(_key(t, l), 0) + 1):
            out.append((t, l, study.batch_cell(cell, b)))
    return out


def advance(study, state: dict | None, summary_rows: list[dict]) -> dict:
    """The state after measuring the cells `state` asked for (summary_rows: one per cell, the
    table's summary over every file of the cell so far: n_copies, n_pairs, regime, settled,
    candidates, lmc, lmc_lo, lmc_hi, cka, cka_lo, cka_hi) and the batches the next round adds."""
    batches_all = study.settle_batches
    rnd = 0 if state is None else state["round"] + 1
    extra = extra_batches(state)
    k = len(study.base.retrain.seeds)
    cells, nxt = [], []
    for s in sorted(summary_rows, key=lambda r: (float(r["temperature"]), float(r["load"]))):
        t, l = float(s["temperature"]), float(s["load"])
        done = extra.get(_key(t, l), 0)
        copies = k * (done + 1)  # per dense seed
        row = {"temperature": t, "load": l, "extra": done, "n_copies": int(s["n_copies"]),
               "n_pairs": int(s["n_pairs"]), "regime": str(s["regime"]), "candidates": str(s["candidates"]),
               **{m: _num(s.get(m)) for m in ("lmc", "lmc_lo", "lmc_hi", "cka", "cka_lo", "cka_hi")}}
        if row["regime"] == MISSING:
            row["reason"] = "missing (a diverged or undefined copy): more seeds do not settle it"
        elif str(s.get("settled")) == "True":  # bool, numpy bool; NA / None: not settled
            row["reason"] = f"settled with {copies} copies per dense seed ({row['n_pairs']} pairs)"
        elif done < len(batches_all):
            seeds = batches_all[done]
            row["reason"] = (f"unsettled ({row['candidates']}) with {copies} copies: round {rnd + 1} adds "
                             f"seeds {seeds[0]}-{seeds[-1]}")
            nxt.append({"temperature": t, "load": l, "batch": done + 1, "seeds": list(seeds),
                        "reason": row["reason"]})
        else:
            row["reason"] = (f"unsettled ({row['candidates']}) with {copies} copies: the budget "
                             f"(settle.max_copies, rounds) is spent")
        cells.append(row)
    return {"round": rnd, "batches": [list(b) for b in batches_all], "cells": cells, "next": nxt,
            "done": not nxt}


def _num(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def cost(state: dict, study) -> dict:
    """What settling cost against adding the same seeds to every cell: extra copies retrained
    (per dense seed, summed over cells) and the cells unsettled at the start and the end."""
    k = len(study.base.retrain.seeds)
    extra_copies = sum(int(c["extra"]) for c in state["cells"]) * k * len(study.dense_seeds)
    everywhere = len(state["cells"]) * len(study.settle_batches) * k * len(study.dense_seeds)
    unsettled_now = sum(1 for c in state["cells"] if c["reason"].startswith("unsettled"))
    return {"extra_copies": extra_copies, "extra_copies_everywhere": everywhere, "unsettled": unsettled_now,
            "cells": len(state["cells"])}


def measure(study, files: list[tuple[float, float, object]], logs: list[str], landscapes: list[str]):
    """The study's summary (threeregime.tables.summarize) over every file set of `files`
    (round_cells), each cell's batches together: copies and pairs of all of them."""
    import pandas as pd

    from .tables import cell_key, cell_rows, summarize

    if len(files) != len(logs) or len(files) != len(landscapes):
        raise ValueError(f"{len(files)} file sets, but {len(logs)} logs and {len(landscapes)} landscape files")
    rows = []
    for (t, l, c), log, land in zip(files, logs, landscapes):
        rows += cell_rows(cell_key(study, t, l, c), log, land)
    return summarize(pd.DataFrame(rows), study.regimes)


def settled_table(study, state: dict, summary, path: str):
    """The settled table (results_schema.SETTLED): the summary over every copy, with each
    cell's rounds of extra copies and the reason it stopped, written to `path` (parquet)."""
    from .results_schema import SETTLED, conform
    from .tables import write_parquet

    why = {_key(c["temperature"], c["load"]): c for c in state["cells"]}
    rows = summary.assign(
        settle_rounds=[int(why[_key(t, l)]["extra"]) for t, l in zip(summary.temperature, summary.load)],
        settle_reason=[why[_key(t, l)]["reason"] for t, l in zip(summary.temperature, summary.load)])
    table = conform(rows, SETTLED, path)
    write_parquet(table, path)
    return table


def progress_lines(study, workdir=".") -> list[str]:
    """The settle option's state for `python -m threeregime.progress`: the last round written,
    its cost, and each cell that got extra copies or is still unsettled, with its pairs and why."""
    import json
    from pathlib import Path

    folder = Path(workdir) / study.dir / "settle"
    rounds = sorted(folder.glob("round*.json"), key=lambda p: int(p.stem[len("round"):])) if folder.is_dir() else []
    if not rounds:
        return [f"  settle: no round yet ({len(study.settle_batches)} rounds of "
                f"{len(study.base.retrain.seeds)} more copies at most)"]
    state = json.loads(rounds[-1].read_text())
    c = cost(state, study)
    out = [f"  settle: round {state['round']} of {len(study.settle_batches)}"
           + (" (done)" if state["done"] else f", {len(state['next'])} cells get more copies next")
           + f"; {c['unsettled']} of {c['cells']} cells unsettled; extra copies {c['extra_copies']} "
             f"(every cell: {c['extra_copies_everywhere']})"]
    for cell in state["cells"]:
        if cell["extra"] or not cell["reason"].startswith("settled"):
            out.append(f"    ({fmt(cell['temperature'])}, {fmt(cell['load'])}): {cell['n_pairs']} pairs, "
                       f"{cell['reason']}")
    return out
