"""The results schema: the columns and dtypes of a study's table.parquet and cells.parquet.

This is the one definition of both tables. `tables.build_tables` writes exactly these columns in
this order with these dtypes (`conform`), README.md's "Results schema" section is rendered from
it (`markdown`, checked by tests/test_results_schema.py), and the tests read real outputs back
and compare them with it (`problems`).

Dtypes are pandas dtype names as `str(df[col].dtype)` prints them after `pandas.read_parquet`:
`str` (text), `float64` (NaN where absent), `int64`, and the nullable `Int64` and `boolean`
for columns that only one kind of row (`copy` or `pair`) fills.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    rows: str         # which rows fill it: "all", "copy" or "pair" (table.parquet)
    meaning: str


# The identity of a row: the study's axes and the artifacts it was read from.
_IDENTITY = [
    Column("study", "str", "all", "study name (`studies.<name>` in the config)"),
    Column("temperature_axis", "str", "all", "temperature axis: `epochs`, `batch_size` or `sam_rho`"),
    Column("temperature", "float64", "all", "temperature value (epochs, batch size or ρ)"),
    Column("load_axis", "str", "all", "load axis: `density`, `width` or `depth`"),
    Column("load", "float64", "all", "load value (density as a fraction, width multiplier or depth)"),
]

TABLE: list[Column] = _IDENTITY + [
    Column("dense_seed", "int64", "all", "seed of the dense run"),
    Column("density", "float64", "all", "density the cell was pruned to (fraction of convolution weights kept)"),
    Column("run", "str", "all", "dense run key (`results/dense/<run>`)"),
    Column("ckpt", "str", "all", "dense checkpoint: `epoch<e>` or `final`"),
    Column("prune", "str", "all", "pruning key, e.g. `uniform_d0.05`"),
    Column("retrain", "str", "all", "retraining key (`.../<prune>/<retrain>/`)"),
    Column("achieved_density", "float64", "all", "fraction of convolution weights the mask actually keeps"),
    Column("kind", "str", "all", "`copy` (one retrained copy) or `pair` (two copies of one cell)"),
    Column("retrain_seed", "Int64", "copy", "seed of the retrained copy"),
    Column("diverged", "boolean", "copy", "retraining diverged (`on_divergence: record`); metrics are NaN"),
    Column("test_error", "float64", "copy", "test error, mean of the last 5 epochs (fraction; translation: the "
           "validation token error, teacher-forced)"),
    Column("final_test_error", "float64", "copy", "test error after the last epoch (fraction)"),
    Column("final_train_error", "float64", "copy", "training error of the last epoch (fraction)"),
    Column("final_train_loss", "float64", "copy", "training loss of the last epoch"),
    Column("epochs", "Int64", "copy", "retraining epochs run"),
    Column("bleu", "float64", "copy", "translation: BLEU of the copy on the validation set after its last epoch "
           "(sacrebleu, the study's `retrain.decode`); NaN for image studies"),
    Column("pair", "str", "pair", "the pair's retrain seeds, e.g. `1-2`"),
    Column("lmc", "float64", "pair", "linear mode connectivity (train error, translation: token error; < ε is a "
           "barrier)"),
    Column("cka", "float64", "pair", "linear CKA of the two copies' softmax outputs"),
    Column("cka_logit", "float64", "pair", "linear CKA of their logits"),
]

CELLS: list[Column] = _IDENTITY + [
    Column("test_error", "float64", "all", "mean test error over dense seeds and retrained copies (fraction)"),
    Column("n_copies", "int64", "all", "retrained copies averaged"),
    Column("bleu", "float64", "all", "translation: mean BLEU over dense seeds and retrained copies; NaN for image "
           "studies"),
    Column("lmc", "float64", "all", "mean LMC over dense seeds and pairs"),
    Column("cka", "float64", "all", "mean softmax CKA over dense seeds and pairs"),
    Column("cka_logit", "float64", "all", "mean logit CKA over dense seeds and pairs"),
    Column("n_pairs", "int64", "all", "pairs averaged"),
    Column("n_dense_seeds", "int64", "all", "dense seeds averaged"),
    Column("regime", "str", "all", "`I`, `II-A`, `II-B`, or `missing` (a diverged or undefined cell)"),
    Column("lmc_sd", "float64", "all", "spread (SD) of single pairs' LMC around their dense seed's mean, pooled; "
           "NaN with one pair"),
    Column("lmc_sd_dense", "float64", "all", "SD of the dense seeds' mean LMC; NaN with one dense seed"),
    Column("lmc_lo", "float64", "all", "lower end of the interval for the mean LMC (`regimes.confidence`, "
           "default 90 %: README, how sure a regime is); NaN: unknown (one pair)"),
    Column("lmc_hi", "float64", "all", "upper end of that interval"),
    Column("cka_sd", "float64", "all", "spread (SD) of single pairs' CKA, as `lmc_sd`"),
    Column("cka_sd_dense", "float64", "all", "SD of the dense seeds' mean CKA, as `lmc_sd_dense`"),
    Column("cka_lo", "float64", "all", "lower end of the interval for the mean CKA"),
    Column("cka_hi", "float64", "all", "upper end of that interval"),
    Column("settled", "boolean", "all", "the intervals lie on one side of ε (and, where connected, of the CKA "
           "threshold): `regime` is the only candidate; `<NA>` for a missing cell"),
    Column("candidates", "str", "all", "the regimes the intervals reach: the regime itself when settled, "
           "e.g. `I/II-A` when not"),
]

# The settle option's table (threeregime/settle.py): the cells with every extra copy, and why.
SETTLED: list[Column] = CELLS + [
    Column("settle_rounds", "int64", "all", "rounds of extra copies the cell got (settle option)"),
    Column("settle_reason", "str", "all", "why it stopped: settled with how many copies, missing, or unsettled "
           "with its budget spent"),
]

TABLES = {"table.parquet": TABLE, "cells.parquet": CELLS, "settled.parquet": SETTLED}

# pandas 3's text dtype: missing values stay missing (NaN) rather than becoming the text "nan".
_TEXT = pd.StringDtype(na_value=np.nan)


def _dtype(name: str):
    return _TEXT if name == "str" else name


def conform(df: pd.DataFrame, columns: list[Column], what: str) -> pd.DataFrame:
    """`df` with exactly `columns`, in order and of their dtypes; absent optional columns (a
    table of only one kind of row) are added empty. A column the schema does not name is an
    error: add it to the schema (and README) first."""
    extra = [c for c in df.columns if c not in {col.name for col in columns}]
    if extra:
        raise ValueError(f"{what}: columns {extra} are not in threeregime/results_schema.py; add them there "
                         f"(README's results schema is generated from it)")
    out = {}
    for col in columns:
        missing = np.nan if col.dtype == "float64" else pd.NA  # e.g. bleu of an image study's table
        values = df[col.name] if col.name in df else pd.Series([missing] * len(df), index=df.index, dtype=object)
        if col.dtype == "boolean":
            values = values.astype(object).where(values.notna(), None)
        try:
            out[col.name] = values.astype(_dtype(col.dtype))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what}: column {col.name!r} cannot be {col.dtype}: {e}") from None
    return pd.DataFrame(out, index=df.index)


def problems(df: pd.DataFrame, columns: list[Column]) -> list[str]:
    """How a table read back differs from the schema (names, order, dtypes); [] if it matches."""
    out = []
    want, got = [c.name for c in columns], list(df.columns)
    if want != got:
        out.append(f"columns {got} != schema {want}")
    for col in columns:
        if col.name in df and str(df[col.name].dtype) != col.dtype:
            out.append(f"column {col.name!r} is {df[col.name].dtype}, schema says {col.dtype}")
    return out


def markdown() -> str:
    """README's results schema tables (between the `results-schema` markers)."""
    lines = []
    for file, columns in TABLES.items():
        by_kind = any(c.rows != "all" for c in columns)  # a `rows` column only where rows differ
        lines += [f"`{file}`:", "", "| column | dtype |" + (" rows |" if by_kind else "") + " meaning |",
                  "|---|---|" + ("---|" if by_kind else "") + "---|"]
        lines += [f"| `{c.name}` | `{c.dtype}` |" + (f" {c.rows} |" if by_kind else "") + f" {c.meaning} |"
                  for c in columns]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


START, END = "<!-- results-schema:start", "<!-- results-schema:end -->"


def readme_with_schema(text: str) -> str:
    """README text with the section between the markers replaced by `markdown()`."""
    if START not in text or END not in text:
        raise ValueError(f"README has no {START} ... {END} markers")
    head = text.index("\n", text.index(START)) + 1
    return text[:head] + "\n" + markdown() + "\n" + text[text.index(END):]


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"]:  # python -m threeregime.results_schema --write README.md
        path = sys.argv[2]
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(readme_with_schema(text))
    else:
        print(markdown(), end="")
