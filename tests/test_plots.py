"""Figures: regime boundaries along cell edges, temperature order, files written (PDF + PNG >= 200 dpi)."""

import struct

import numpy as np
import pandas as pd
import pytest

from threeregime.regimes import Regimes
from threeregime import plots
from threeregime.plots import EDGE_I, EDGE_II, AxisStyle

GRID_3x3 = [["II-A", "II-A", "II-B"],
            ["I", "II-A", "II-B"],
            ["I", "I", "II-B"]]


def _segments(edges):
    return {(tuple(map(float, a)), tuple(map(float, b)), k) for a, b, k in edges}


def test_regime_edges_staircase_3x3():
    edges = plots.regime_edges(GRID_3x3)
    assert len(edges) == 6
    assert _segments(edges) == {
        ((2, 0), (2, 1), EDGE_II),   # II-A | II-B, top row
        ((2, 1), (2, 2), EDGE_II),   # II-A | II-B, middle row
        ((0, 1), (1, 1), EDGE_I),    # II-A above I, column 0
        ((1, 1), (1, 2), EDGE_I),    # I left of II-A, middle row
        ((1, 2), (2, 2), EDGE_I),    # II-A above I, column 1
        ((2, 2), (2, 3), EDGE_I),    # I left of II-B, bottom row
    }
    # every segment is one cell edge long and lies on integer grid lines
    for (x0, y0), (x1, y1), _ in edges:
        assert abs(x1 - x0) + abs(y1 - y0) == 1
        assert float(x0).is_integer() and float(y0).is_integer()


def test_merge_and_chain_edges_3x3():
    merged = _segments(plots.merge_edges(plots.regime_edges(GRID_3x3)))
    assert ((2, 0), (2, 2), EDGE_II) in merged
    paths = plots.edge_paths(plots.regime_edges(GRID_3x3))
    by_kind = {k: p for p, k in paths}
    assert len(paths) == 2
    assert by_kind[EDGE_II] in ([(2, 0), (2, 2)], [(2, 2), (2, 0)])
    staircase = [(0, 1), (1, 1), (1, 2), (2, 2), (2, 3)]
    assert by_kind[EDGE_I] in (staircase, staircase[::-1])


def test_regime_edges_single_regime_has_none():
    assert plots.regime_edges([["II-B"] * 4] * 3) == []
    assert plots.edge_paths([]) == []


def test_regime_edges_skip_missing_cell():
    grid = [["I", "I", "II-A"],
            ["I", "missing", "II-A"],
            ["II-A", "II-A", "II-A"]]
    edges = _segments(plots.regime_edges(grid))
    assert edges == {((2, 0), (2, 1), EDGE_I), ((0, 2), (1, 2), EDGE_I)}
    missing_cell_edges = {((1, 1), (2, 1)), ((1, 2), (2, 2)), ((1, 1), (1, 2)), ((2, 1), (2, 2))}
    assert not {(a, b) for a, b, _ in edges} & missing_cell_edges


def test_regime_regions_label_inside_each_region():
    regions = sorted(plots.regime_regions(GRID_3x3))
    assert regions == [("I", (2, 0), 3), ("II-A", (0, 1), 3), ("II-B", (1, 2), 3)]
    # two separate II-A regions get a label each; missing cells get none
    split = [["II-A", "I", "II-A"], ["missing", "I", "II-A"]]
    names = [n for n, _, _ in plots.regime_regions(split)]
    assert sorted(names) == ["I", "II-A", "II-A"]


def test_temperature_order_hottest_on_top():
    assert plots.temperature_order([40, 10, 160, 10], "low") == [10.0, 40.0, 160.0]
    assert plots.temperature_order([0.05, 0.0, 0.2], "high") == [0.2, 0.05, 0.0]
    with pytest.raises(ValueError):
        plots.temperature_order([1, 2], "hot")
    with pytest.raises(ValueError):
        AxisStyle("x", hotter="up")
    s = _summary()
    assert plots.cell_grids(s, "low").temperatures[0] == s.temperature.min()
    assert plots.cell_grids(s, "high").temperatures[0] == s.temperature.max()
    g = plots.cell_grids(s, "low")
    # the grid's row 0 is the top row: its values are those of the smallest temperature
    top = s[s.temperature == s.temperature.min()].sort_values("load")
    np.testing.assert_allclose(g.values["lmc"][0], top.lmc.to_numpy())


def _summary() -> pd.DataFrame:
    """4 x 4 grid, Regime I bottom-left (low density, many epochs), one NaN cell, one absent row."""
    rows = []
    for e in (10.0, 40.0, 80.0, 160.0):
        for d in (0.05, 0.1, 0.2, 0.8):
            x, y = np.log(d / 0.05) / np.log(16), (e - 10) / 150
            lmc = -0.5 if y - 1.3 * x > 0.25 else -0.01
            cka = 0.9 if (x + y > 0.9 and lmc > -0.05) else (0.6 if lmc > -0.05 else 0.3)
            te = 0.07 + 0.12 * (1 - x) ** 3 + 0.04 * (lmc < -0.05)
            regime = "I" if lmc < -0.05 else ("II-B" if cka >= 0.85 else "II-A")
            rows.append(dict(temperature=e, load=d, test_error=te, lmc=lmc, cka=cka, regime=regime,
                             n_copies=2, n_pairs=1))
    df = pd.DataFrame(rows)
    nan = (df.temperature == 40.0) & (df.load == 0.2)
    df.loc[nan, ["test_error", "lmc", "cka"]] = np.nan
    df.loc[nan, "regime"] = "missing"
    return df[~((df.temperature == 160.0) & (df.load == 0.8))].reset_index(drop=True)


def _png_info(data: bytes) -> tuple[int, int, float]:
    """(width, height, dots per inch) from a PNG's IHDR and pHYs chunks."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, width, height, dpi = 8, 0, 0, 0.0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"pHYs":
            ppx, _, unit = struct.unpack(">IIB", body)
            assert unit == 1  # pixels per metre
            dpi = ppx * 0.0254
        elif kind == b"IEND":
            break
        pos += 12 + length
    return width, height, dpi


@pytest.fixture()
def saved(monkeypatch):
    """Paths written through atomic.save_bytes (the atomic writer)."""
    paths = []
    real = plots.save_bytes

    def spy(data, path):
        paths.append(str(path))
        real(data, path)

    monkeypatch.setattr(plots, "save_bytes", spy)
    return paths


def _check_files(tmp_path, saved, stem, min_width=1000):
    pdf, png = tmp_path / f"{stem}.pdf", tmp_path / f"{stem}.png"
    assert saved == [str(pdf), str(png)]
    assert pdf.read_bytes().startswith(b"%PDF")
    width, height, dpi = _png_info(png.read_bytes())
    assert dpi >= 199.5 and width >= min_width and height >= 400
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([pdf.name, png.name])  # no temp files left


def test_phase_diagram_writes_pdf_and_png(tmp_path, saved):
    t = AxisStyle("Temperature (training epochs)", lambda v: f"{v:g}", "low")
    load = AxisStyle("Load (density, %)", lambda v: f"{v * 100:g}", "low")
    plots.phase_diagram(_summary(), str(tmp_path / "fig.pdf"), str(tmp_path / "fig.png"), Regimes(-0.05, 0.85),
                        temperature=t, load=load, title="synthetic 4 x 4")
    _check_files(tmp_path, saved, "fig", min_width=3000)


def test_phase_diagram_without_regime_column(tmp_path, saved):
    s = _summary().drop(columns="regime")
    plots.phase_diagram(s, str(tmp_path / "fig.pdf"), str(tmp_path / "fig.png"), Regimes(-0.05, 0.85),
                        temperature=AxisStyle("Temperature (SAM ρ)", hotter="high"),
                        load=AxisStyle("Load (width ×)"))
    _check_files(tmp_path, saved, "fig", min_width=3000)


def test_optimizer_lines_writes_pdf_and_png(tmp_path, saved):
    rows = [dict(combination=c, load=d, temperature=e, test_error=0.15 + 0.001 * e + 0.02 * i - d)
            for i, c in enumerate(["SGD → SGD", "Adam → SGD", "SGD → Adam", "Adam → Adam"])
            for d in (0.05, 0.06) for e in (10, 40, 80, 160)]
    plots.optimizer_lines(pd.DataFrame(rows), str(tmp_path / "f13.pdf"), str(tmp_path / "f13.png"), title="Fig 13")
    _check_files(tmp_path, saved, "f13")


def test_lmc_curves_writes_pdf_and_png(tmp_path, saved):
    ts = np.linspace(0, 1, 11)
    pairs = [dict(ts=ts.tolist(), train_error_curve=(0.02 + h * np.sin(np.pi * ts) ** 2).tolist(), seed_a=a,
                  seed_b=b, lmc=-h) for a, b, h in ((0, 1, 0.3), (0, 2, 0.01))]
    plots.lmc_curves(pairs, str(tmp_path / "lmc.pdf"), str(tmp_path / "lmc.png"), title="cell")
    _check_files(tmp_path, saved, "lmc")


def test_boundaries_next_to_unsettled_cells_are_drawn_apart():
    # the middle cell (1, 1), II-A, is unsettled: its three boundary edges are unsure, the rest sure
    settled = np.ones((3, 3), dtype=bool)
    settled[1, 1] = False
    sure, unsure = plots.split_edges(plots.regime_edges(GRID_3x3), settled)
    assert _segments(unsure) == {((1, 1), (1, 2), EDGE_I), ((1, 2), (2, 2), EDGE_I), ((2, 1), (2, 2), EDGE_II)}
    assert _segments(sure) == {((2, 0), (2, 1), EDGE_II), ((0, 1), (1, 1), EDGE_I), ((2, 2), (2, 3), EDGE_I)}
    for e in plots.regime_edges(GRID_3x3):
        a, b = plots.edge_cells(e)
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 and GRID_3x3[a[0]][a[1]] != GRID_3x3[b[0]][b[1]]


def _with_confidence(s: pd.DataFrame) -> pd.DataFrame:
    """_summary() with confidence columns: two cells unsettled, the missing one NA."""
    s = s.assign(settled=pd.array([True] * len(s), dtype="boolean"), candidates=s.regime)
    for t, l, c in ((80.0, 0.1, "I/II-A"), (10.0, 0.2, "II-A/II-B")):
        m = (s.temperature == t) & (s.load == l)
        s.loc[m, "settled"] = False
        s.loc[m, "candidates"] = c
    s.loc[s.regime == "missing", "settled"] = pd.NA
    return s


def test_cell_grids_read_which_cells_are_settled():
    g = plots.cell_grids(_with_confidence(_summary()), "low")
    # rows 10, 40, 80, 160 epochs; columns 5, 10, 20, 80 %
    assert sorted(zip(*np.nonzero(~g.settled))) == [(0, 2), (2, 1)]
    assert g.candidates[2, 1] == "I/II-A" and g.candidates[0, 2] == "II-A/II-B" and g.candidates[0, 0] == g.regimes[0, 0]
    assert g.settled[1, 2]  # the missing cell (NA) is drawn as missing, not as unsettled
    assert plots.cell_grids(_summary(), "low").settled.all()  # tables without the columns: all settled


def test_phase_diagram_with_unsettled_cells(tmp_path, saved, monkeypatch):
    labels = []
    real = plots.plt.Figure.legend

    def spy(fig, handles, texts, **kw):
        labels.extend(texts)
        return real(fig, handles, texts, **kw)

    monkeypatch.setattr(plots.plt.Figure, "legend", spy)
    plots.phase_diagram(_with_confidence(_summary()), str(tmp_path / "fig.pdf"), str(tmp_path / "fig.png"),
                        Regimes(-0.05, 0.85), title="unsettled cells")
    _check_files(tmp_path, saved, "fig", min_width=3000)
    assert "unsettled: its 90 % interval crosses a boundary" in labels
    assert "I | II boundary next to an unsettled cell" in labels
