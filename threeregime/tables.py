"""Collect a study's per-copy and per-pair metrics into tables and label each cell's regime."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from .atomic import save_bytes
from .regimes import Regimes
from .results_schema import CELLS, TABLE, conform
from .uncertainty import cell_intervals

# A row's identity: the study's axes and values, and the artifacts it was read from.
CELL_KEYS = ["study", "temperature_axis", "temperature", "load_axis", "load", "dense_seed", "density", "run", "ckpt",
             "prune", "retrain"]
GRID_KEYS = ["study", "temperature_axis", "temperature", "load_axis", "load"]
LAST_EPOCHS = 5  # a copy's test error: the mean over its last 5 epochs


def cell_key(study, temperature: float, load: float, cell) -> dict:
    """The identifying columns (CELL_KEYS) of one cell of a study: its axis values and the keys of
    the artifacts that made it (cell: the study's CellSpec)."""
    return {"study": study.name, "temperature_axis": study.temperature.name, "temperature": float(temperature),
            "load_axis": study.load.name, "load": float(load), "dense_seed": cell.seed,
            "density": cell.prune.density, "run": cell.run.key, "ckpt": cell.ckpt, "prune": cell.prune.key,
            "retrain": cell.retrain.key}


def cell_rows(cell: dict, log_csv: str, landscape_json: str) -> list[dict]:
    """Rows of one cell: one per retrained copy, one per pair."""
    with open(landscape_json) as f:
        land = json.load(f)
    base = {k: cell[k] for k in CELL_KEYS} | {"achieved_density": land.get("achieved_density", np.nan)}
    logs = pd.read_csv(log_csv)
    rows = []
    for seed, h in logs.groupby("retrain_seed"):
        h = h.sort_values("epoch")
        last = h.iloc[-1]
        diverged = bool(land.get("diverged"))
        # translation logs carry BLEU (NaN but at the job's last epoch: decoding is costly)
        scored = h["bleu"].dropna() if "bleu" in h else h.iloc[:0]
        bleu = np.nan if diverged or scored.empty else float(scored.iloc[-1])
        rows.append({**base, "kind": "copy", "retrain_seed": int(seed), "diverged": diverged,
                     "test_error": np.nan if diverged else float(h["test_error"].tail(LAST_EPOCHS).mean()),
                     "final_test_error": float(last["test_error"]), "final_train_error": float(last["train_error"]),
                     "final_train_loss": float(last["train_loss"]), "epochs": int(last["epoch"]), "bleu": bleu})
    for p in land["pairs"]:
        rows.append({**base, "kind": "pair", "pair": f"{p['seed_a']}-{p['seed_b']}", "lmc": p["lmc"],
                     "cka": p["cka"], "cka_logit": p["cka_logit"]})
    return rows


def summarize(table: pd.DataFrame, regimes: Regimes) -> pd.DataFrame:
    """One row per (temperature, load): means over dense seeds, retrain seeds and pairs, its regime,
    and how sure that regime is (threeregime.uncertainty: spreads, intervals, settled, candidates)."""
    keys = GRID_KEYS
    if "bleu" not in table:  # rows read by an older cell_rows, or built by hand: no BLEU
        table = table.assign(bleu=np.nan)
    # skipna=False: a diverged copy makes its cell missing rather than silently better
    copies = table[table.kind == "copy"].groupby(keys).agg(
        test_error=("test_error", lambda s: s.mean(skipna=False)), n_copies=("test_error", "size"),
        bleu=("bleu", lambda s: s.mean(skipna=False)))
    nanmean = lambda s: s.mean(skipna=False)  # noqa: E731
    pairs = table[table.kind == "pair"].groupby(keys).agg(
        lmc=("lmc", nanmean), cka=("cka", nanmean), cka_logit=("cka_logit", nanmean), n_pairs=("lmc", "size"),
        n_dense_seeds=("dense_seed", "nunique"))
    out = copies.join(pairs, how="outer").reset_index()
    out["regime"] = [regimes.classify(l, c) for l, c in zip(out.lmc, out.cka)]
    sure = cell_intervals(table[table.kind == "pair"], keys, regimes)
    return out.merge(sure, on=keys, how="left")


def write_parquet(df: pd.DataFrame, path: str) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    save_bytes(buf.getvalue(), path)


def build_tables(cells: list[dict], table_path: str, summary_path: str,
                 regimes: Regimes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """cells: dicts with CELL_KEYS plus 'log' and 'landscape' file paths."""
    rows = [r for c in cells for r in cell_rows(c, c["log"], c["landscape"])]
    table = pd.DataFrame(rows)
    summary = summarize(table, regimes)
    # The results schema (README) holds by construction: these columns, in this order and of these dtypes.
    table = conform(table, TABLE, table_path)
    summary = conform(summary, CELLS, summary_path)
    write_parquet(table, table_path)
    write_parquet(summary, summary_path)
    return table, summary


def write_csv(df: pd.DataFrame, path: str) -> None:
    """A table as CSV (the same columns; missing values empty), e.g. for a spreadsheet."""
    save_bytes(df.to_csv(index=False).encode(), path)


def write_html(summary: pd.DataFrame, path: str, title: str) -> None:
    """The per-cell summary as a small HTML page (the Snakemake report shows it inline)."""
    show = summary.drop(columns=[c for c in ("study", "temperature_axis", "load_axis") if c in summary])
    body = show.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
            "th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd} th{background:#f4f4f4}"
            f"</style></head><body><h3>{title}</h3>{body}</body></html>")
    save_bytes(page.encode(), path)
