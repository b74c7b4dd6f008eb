"""The results schema (threeregime/results_schema.py): README's section is generated from it, the
workflow's real tables match it, and the CSV exports hold the same values."""

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from threeregime import results_schema as rs


def test_readme_section_is_the_schema():
    text = (ROOT / "README.md").read_text()
    assert rs.readme_with_schema(text) == text, (
        "README's results schema differs from threeregime/results_schema.py: run "
        "`python -m threeregime.results_schema --write README.md`")


def test_conform_orders_and_types_a_table_of_copies_and_pairs():
    copy = {"study": "s", "temperature_axis": "epochs", "temperature": 10.0, "load_axis": "density", "load": 0.05,
            "dense_seed": 1, "density": 0.05, "run": "r", "ckpt": "epoch10", "prune": "uniform_d0.05",
            "retrain": "x", "achieved_density": 0.05, "kind": "copy", "retrain_seed": 2, "diverged": False,
            "test_error": 0.1, "final_test_error": 0.1, "final_train_error": 0.0, "final_train_loss": 0.01,
            "epochs": 160}
    pair = {k: copy[k] for k in list(copy)[:12]} | {"kind": "pair", "pair": "1-2", "lmc": -0.2, "cka": 0.8,
                                                     "cka_logit": 0.7}
    df = rs.conform(pd.DataFrame([pair, copy]), rs.TABLE, "t")  # columns in another order, gaps
    assert list(df.columns) == [c.name for c in rs.TABLE]
    assert {c: str(df[c].dtype) for c in df} == {c.name: c.dtype for c in rs.TABLE}
    assert rs.problems(df, rs.TABLE) == []
    assert df.retrain_seed.isna().tolist() == [True, False] and df.retrain_seed[1] == 2
    assert df.pair.isna().tolist() == [False, True] and df.pair[0] == "1-2"  # missing, not the text "nan"
    assert df.diverged.isna().tolist() == [True, False] and not df.diverged[1]
    with pytest.raises(ValueError, match=r"columns \['extra'\] are not in threeregime/results_schema.py"):
        rs.conform(pd.DataFrame([copy | {"extra": 1}]), rs.TABLE, "t")
    wrong = df.astype({"dense_seed": "float64"})
    assert rs.problems(wrong, rs.TABLE) == ["column 'dense_seed' is float64, schema says int64"]
    assert rs.problems(df[df.columns[::-1]], rs.TABLE)[0].startswith("columns ")


@pytest.mark.slow
def test_real_tables_match_the_schema_and_their_csv_exports(tiny_grid):
    folder, _ = tiny_grid
    root = folder / "results" / "studies" / "tiny"
    for name, columns in rs.TABLES.items():
        if name == "settled.parquet":  # the settle option's: tests/test_settle_workflow.py checks it
            continue
        df = pd.read_parquet(root / name)
        assert rs.problems(df, columns) == [], name
        csv = pd.read_csv(root / name.replace(".parquet", ".csv"))
        assert list(csv.columns) == list(df.columns)
        for col in df.columns:
            a, b = df[col].to_numpy(dtype=object), csv[col].to_numpy(dtype=object)
            for x, y in zip(a, b):
                if pd.isna(x):
                    assert pd.isna(y), (name, col)
                elif isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)):
                    assert float(y) == pytest.approx(float(x), rel=1e-12), (name, col)
                else:
                    assert str(y) == str(x), (name, col)
    cells = pd.read_parquet(root / "cells.parquet")
    html = (root / "cells.html").read_text()
    assert html.count("<tr") == len(cells) + 1 and "regime" in html
    # the study's configuration as it ran: the tiny study's own values, with the defaults merged in
    study = yaml.safe_load((root / "study.yaml").read_text())
    assert study["temperature"] == {"axis": "epochs", "values": [1, 2]}
    assert study["load"] == {"axis": "density", "values": [0.1, 0.5]}
    assert study["seeds"] == {"dense": [1], "retrain": [1, 2, 3]}
    assert study["model"] == {"arch": "preresnet", "depth": 8, "width": 0.5}
    assert study["train"]["epochs"] == 2 and study["train"]["lr"] == 0.1  # lr from config.yaml's defaults
    table = pd.read_parquet(root / "table.parquet")
    assert study["artifacts"]["retrain"] == table.retrain.iloc[0] and study["artifacts"]["dense_runs"] == [table.run[0]]
