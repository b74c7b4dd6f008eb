"""Figures of the paper drawn from a study's tables.

* `phase_diagram`: Figure 2 (and 7-12): test error, normalised test error, LMC and CKA on the
  temperature x load grid, regime boundaries drawn along cell edges, regimes named in their regions.
* `optimizer_lines`: Figure 13: test error against training epochs, one line per
  dense-optimizer -> retrain-optimizer combination, one panel per density.
* `lmc_curves`: the train-error curves along the linear path between the copies of one cell.

Grid coordinates: cell (row r, column c) covers x in [c, c+1] and y in [r, r+1]; row 0 is drawn at
the top (the hottest temperature), column 0 on the left (the smallest load).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.legend_handler import HandlerTuple  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from .atomic import save_bytes  # noqa: E402

PNG_DPI = 200
from .regimes import MISSING, NAMES as REGIMES, Regimes  # noqa: E402
from .spec.task import DEFAULT_TASK, TASKS, Metric  # noqa: E402
# Edge kinds returned by regime_edges
EDGE_I = "I|II"        # Regime I against Regime II (A or B): the LMC transition
EDGE_II = "IIA|IIB"    # Regime II-A against II-B: the CKA transition
ANNOTATE_MAX_CELLS = 64


def _g(v: float) -> str:
    return f"{v:g}"


@dataclass(frozen=True)
class AxisStyle:
    """How a study's axis is drawn.

    label: axis label, e.g. "Temperature (training epochs)" or "Load (density, %)".
    tick: value -> tick text, e.g. density 0.05 -> "5".
    hotter: "low" or "high": which end of the values is the higher temperature (temperature axes
        only; the hottest row is drawn at the top).
    """

    label: str
    tick: Callable[[float], str] = _g
    hotter: str = "low"

    def __post_init__(self):
        if self.hotter not in ("low", "high"):
            raise ValueError(f"AxisStyle.hotter must be 'low' or 'high' (got {self.hotter!r})")


EPOCHS = AxisStyle("Temperature (training epochs)", _g, "low")
DENSITY = AxisStyle("Load (density, %)", lambda v: f"{v * 100:g}")
TEST_ERROR = TASKS[DEFAULT_TASK].quality  # the quality metric of image studies


# ---------------------------------------------------------------------------------------------
# Pure helpers (tested without drawing)

def temperature_order(values: Iterable[float], hotter: str) -> list[float]:
    """Distinct temperatures from the top row to the bottom one: the hottest first."""
    if hotter not in ("low", "high"):
        raise ValueError(f"hotter must be 'low' or 'high' (got {hotter!r})")
    return sorted({float(v) for v in values}, reverse=(hotter == "high"))


def _edge_kind(a: str, b: str) -> str | None:
    if a == b or MISSING in (a, b):
        return None  # no boundary is asserted next to a cell without data
    if "I" in (a, b):
        return EDGE_I
    return EDGE_II


Segment = tuple[tuple[float, float], tuple[float, float], str]


def regime_edges(regime_grid) -> list[Segment]:
    """Unit-length cell edges between neighbouring cells of different regimes.

    regime_grid: 2-D array-like of regime names, row 0 the top row. Returns
    ((x0, y0), (x1, y1), kind) with kind EDGE_I ("I|II") between Regime I and a Regime II cell,
    EDGE_II ("IIA|IIB") between II-A and II-B; nothing along a "missing" cell or the grid's border.
    Vertical edges have x0 == x1 and y1 = y0 + 1; horizontal ones y0 == y1 and x1 = x0 + 1.
    """
    g = np.asarray(regime_grid, dtype=object)
    if g.ndim != 2:
        raise ValueError("regime_grid must be 2-D")
    ny, nx = g.shape
    out: list[Segment] = []
    for r in range(ny):
        for c in range(nx):
            if c + 1 < nx and (k := _edge_kind(g[r, c], g[r, c + 1])):
                out.append(((float(c + 1), float(r)), (float(c + 1), float(r + 1)), k))
            if r + 1 < ny and (k := _edge_kind(g[r, c], g[r + 1, c])):
                out.append(((float(c), float(r + 1)), (float(c + 1), float(r + 1)), k))
    return out


def edge_cells(edge: Segment) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two cells (row, col) a unit edge of `regime_edges` separates."""
    (x0, y0), (x1, y1), _ = edge
    if x0 == x1:  # vertical: between columns x0 - 1 and x0 of row y0
        return (int(y0), int(x0) - 1), (int(y0), int(x0))
    return (int(y0) - 1, int(x0)), (int(y0), int(x0))


def split_edges(edges: Sequence[Segment], settled) -> tuple[list[Segment], list[Segment]]:
    """(edges between two settled cells, edges next to an unsettled one): a boundary is drawn
    as sure only where the cells on both sides are settled (settled: 2-D bools, row 0 on top)."""
    ok = np.asarray(settled, dtype=bool)
    sure, unsure = [], []
    for e in edges:
        a, b = edge_cells(e)
        (sure if ok[a] and ok[b] else unsure).append(e)
    return sure, unsure


def merge_edges(edges: Sequence[Segment]) -> list[Segment]:
    """Join collinear, touching unit edges of one kind into single segments (even dash patterns)."""
    out: list[Segment] = []
    horiz: dict[tuple[float, str], list[tuple[float, float]]] = {}
    vert: dict[tuple[float, str], list[tuple[float, float]]] = {}
    for (x0, y0), (x1, y1), k in edges:
        if y0 == y1:
            horiz.setdefault((y0, k), []).append((min(x0, x1), max(x0, x1)))
        else:
            vert.setdefault((x0, k), []).append((min(y0, y1), max(y0, y1)))
    for table, horizontal in ((horiz, True), (vert, False)):
        for (at, k), spans in sorted(table.items()):
            spans.sort()
            lo, hi = spans[0]
            for a, b in spans[1:] + [(np.inf, np.inf)]:
                if a <= hi:
                    hi = max(hi, b)
                    continue
                out.append(((lo, at), (hi, at), k) if horizontal else ((at, lo), (at, hi), k))
                lo, hi = a, b
    return out


def edge_paths(edges: Sequence[Segment]) -> list[tuple[list[tuple[float, float]], str]]:
    """Chain the edges of each kind into polylines (so staircase corners join cleanly)."""
    out = []
    for kind in dict.fromkeys(k for _, _, k in edges):
        segs = [(a, b) for a, b, k in merge_edges([e for e in edges if e[2] == kind])]
        at: dict[tuple[float, float], list[int]] = {}
        for i, (a, b) in enumerate(segs):
            at.setdefault(a, []).append(i)
            at.setdefault(b, []).append(i)
        used = [False] * len(segs)

        def walk(point):
            path = [point]
            while True:
                nxt = next((i for i in at[point] if not used[i]), None)
                if nxt is None:
                    return path
                used[nxt] = True
                a, b = segs[nxt]
                point = b if a == point else a
                path.append(point)

        # start from path ends (odd degree) first, then close the remaining loops
        starts = sorted(p for p, ids in at.items() if len(ids) % 2) + sorted(at)
        for start in starts:
            while any(not used[i] for i in at[start]):
                out.append((walk(start), kind))
    return out


def regime_regions(regime_grid) -> list[tuple[str, tuple[int, int], int]]:
    """Connected (4-neighbour) regions of each regime: (regime, (row, col) of the label cell, size).

    The label cell is the region's cell nearest to the region's centroid (so it lies inside the
    region even when the region is not convex). "missing" cells form no region.
    """
    g = np.asarray(regime_grid, dtype=object)
    ny, nx = g.shape
    seen = np.zeros(g.shape, dtype=bool)
    out = []
    for r0 in range(ny):
        for c0 in range(nx):
            name = g[r0, c0]
            if seen[r0, c0] or name == MISSING:
                continue
            stack, cells = [(r0, c0)], []
            seen[r0, c0] = True
            while stack:
                r, c = stack.pop()
                cells.append((r, c))
                for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                    if 0 <= rr < ny and 0 <= cc < nx and not seen[rr, cc] and g[rr, cc] == name:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
            cells.sort()
            cy, cx = np.mean([r for r, _ in cells]), np.mean([c for _, c in cells])
            best = min(cells, key=lambda rc: ((rc[0] - cy) ** 2 + (rc[1] - cx) ** 2, rc))
            out.append((str(name), best, len(cells)))
    return out


@dataclass
class Grids:
    temperatures: list[float]    # top row first
    loads: list[float]           # left column first
    values: dict[str, np.ndarray]
    regimes: np.ndarray          # object array of regime names, "missing" where absent
    settled: np.ndarray | None = None  # bools: the cell's regime is settled (True where not known)
    candidates: np.ndarray | None = None  # object array: the regimes an unsettled cell lies between


def cell_grids(summary: pd.DataFrame, hotter: str, regimes: Regimes | None = None) -> Grids:
    """The summary's columns as (temperature x load) arrays in drawing order."""
    temps = temperature_order(summary["temperature"], hotter)
    loads = sorted({float(v) for v in summary["load"]})
    df = summary.assign(temperature=summary["temperature"].astype(float), load=summary["load"].astype(float))
    values = {}
    for col in ("test_error", "bleu", "lmc", "cka"):
        if col in df:
            p = df.pivot_table(index="temperature", columns="load", values=col, aggfunc="mean", dropna=False)
            values[col] = p.reindex(index=temps, columns=loads).to_numpy(dtype=float)
        else:
            values[col] = np.full((len(temps), len(loads)), np.nan)
    if "regime" in df:
        reg = df.drop_duplicates(["temperature", "load"]).set_index(["temperature", "load"])["regime"]
        grid = np.array([[str(reg.get((t, l), MISSING)) for l in loads] for t in temps], dtype=object)
        grid[pd.isna(grid) | (grid == "nan") | (grid == "None")] = MISSING
    else:
        if regimes is None:
            raise ValueError("summary has no 'regime' column: pass the study's regimes")
        grid = np.array([[regimes.classify(l, k) for l, k in zip(lr, kr)]
                         for lr, kr in zip(values["lmc"], values["cka"])], dtype=object)
    settled = np.ones(grid.shape, dtype=bool)
    candidates = grid.copy()
    if "settled" in df:  # tables written before confidence existed have none: all drawn as settled
        rows = df.drop_duplicates(["temperature", "load"]).set_index(["temperature", "load"])
        for r, t in enumerate(temps):
            for c, l in enumerate(loads):
                flag = rows.at[(t, l), "settled"] if (t, l) in rows.index else pd.NA
                if pd.notna(flag) and not bool(flag):  # NA: a missing cell, drawn as missing
                    settled[r, c] = False
                    if "candidates" in rows:
                        candidates[r, c] = str(rows.at[(t, l), "candidates"])
    return Grids(temps, loads, values, grid, settled, candidates)


# ---------------------------------------------------------------------------------------------
# Drawing

def _save(fig, pdf_path: str, png_path: str) -> None:
    for path, fmt, meta in ((pdf_path, "pdf", {"CreationDate": None}), (png_path, "png", {"Software": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=PNG_DPI, metadata=meta)
        save_bytes(buf.getvalue(), path)
    plt.close(fig)


def _fmt(v: float, fmt: str) -> str:
    text = format(v, fmt)
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


# Each boundary kind: the lines drawn on top of each other. Regime I | II: solid black with a thin
# white rim (visible on dark cells); II-A | II-B: white dashes on a black line (visible on any cell).
_EDGE_STYLE = {
    EDGE_I: [dict(color="white", linestyle="-", linewidth=4.6, zorder=5.1),
             dict(color="black", linestyle="-", linewidth=2.8, zorder=5.2)],
    EDGE_II: [dict(color="black", linestyle="-", linewidth=3.4, zorder=5.0),
              dict(color="white", linestyle=(0, (3.0, 2.0)), linewidth=1.8, zorder=5.05)],
}


# A boundary next to an unsettled cell: the same two kinds, thinner and dotted (drawn "with its
# uncertainty": the cells on one side may lie on the other).
_UNSURE_EDGE_STYLE = {
    EDGE_I: [dict(color="white", linestyle="-", linewidth=3.0, zorder=5.1),
             dict(color="black", linestyle=(0, (1.0, 1.2)), linewidth=1.8, zorder=5.2)],
    EDGE_II: [dict(color="white", linestyle="-", linewidth=2.6, zorder=5.0),
              dict(color="black", linestyle=(0, (1.0, 1.2, 3.0, 1.2)), linewidth=1.4, zorder=5.05)],
}

# Blank cells: without data ("missing"), or being computed (a half-finished grid, threeregime.progress).
_MISSING_HATCH = dict(hatch="xxx", hatchcolor="0.6")
_RUNNING_HATCH = dict(hatch="///", hatchcolor="tab:orange")
# An unsettled cell (its intervals reach another regime): black hatching with a white rim, so it
# shows on dark and light cells alike and in grey print; sparse, so the value stays readable.
UNSETTLED_HATCH = "\\\\"
_UNSETTLED_LAYERS = (("white", 2.6), ("black", 1.0))


def unsettled_patches(xy, width: float, height: float, label: str | None = None, **kw) -> list[Rectangle]:
    """The unsettled mark over a rectangle (its two hatch layers; `label` on the top one, for
    a legend); kw: Rectangle's, e.g. transform, zorder."""
    out = []
    for colour, lw in _UNSETTLED_LAYERS:
        patch = Rectangle(xy, width, height, fill=False, edgecolor="none", linewidth=0, hatch=UNSETTLED_HATCH,
                          hatchcolor=colour, label=label if colour == "black" else None, **kw)
        patch.set_hatch_linewidth(lw)
        out.append(patch)
    return out


def mark_unsettled(ax, r: int, c: int, zorder: float = 2.5) -> None:
    """Hatch cell (r, c) as unsettled (the same mark on every diagram)."""
    for patch in unsettled_patches((c, r), 1, 1, zorder=zorder):
        ax.add_patch(patch)


def unsettled_handle() -> tuple:
    """A legend handle showing the unsettled mark."""
    out = []
    for colour, width in _UNSETTLED_LAYERS:
        p = Patch(facecolor="none" if colour == "black" else "0.55", edgecolor="none", hatch=UNSETTLED_HATCH,
                  hatchcolor=colour)
        p.set_hatch_linewidth(width)
        out.append(p)
    return tuple(out)


def draw_edges(ax, edges, styles) -> None:
    """Boundary polylines (edge_paths) in their kind's layered style."""
    for path, kind in edges:
        xs, ys = zip(*path)
        for style in styles[kind]:
            ax.plot(xs, ys, solid_joinstyle="miter", solid_capstyle="projecting", dash_capstyle="butt",
                    dash_joinstyle="miter", **style)


def edge_handle(kind: str, sure: bool = True) -> tuple:
    styles = (_EDGE_STYLE if sure else _UNSURE_EDGE_STYLE)[kind]
    return tuple(Line2D([], [], **{k: v for k, v in st.items() if k != "zorder"}) for st in styles)


def _tick_positions(n: int, max_ticks: int) -> list[int]:
    step = max(1, int(np.ceil(n / max_ticks)))
    return list(range(0, n, step))


def _panel(ax, fig, z: np.ndarray, grids: Grids, name: str, cbar_label: str, cmap: str, norm: Normalize,
           fmt: str, temperature: AxisStyle, load: AxisStyle, annotate: bool, fontsize: float,
           label_cells: dict, edges: list, cbar_lines: Sequence[float] = (),
           running: frozenset = frozenset(), unsure_edges: list = (), unsettled: frozenset = frozenset()) -> None:
    ny, nx = z.shape
    cm = plt.get_cmap(cmap)
    ax.set_facecolor("white")
    mesh = ax.pcolormesh(np.arange(nx + 1), np.arange(ny + 1), np.ma.masked_invalid(z), cmap=cm, norm=norm,
                         edgecolors="face", linewidth=0, rasterized=False)
    ax.set_xlim(0, nx)
    ax.set_ylim(ny, 0)  # row 0 (the hottest temperature) at the top
    for r in range(ny):
        for c in range(nx):
            v = z[r, c]
            labelled = (r, c) in label_cells
            if not np.isfinite(v):
                ax.add_patch(Rectangle((c, r), 1, 1, fill=False, edgecolor="none", linewidth=0, zorder=2,
                                       **(_RUNNING_HATCH if (r, c) in running else _MISSING_HATCH)))
                continue
            if (r, c) in unsettled:
                mark_unsettled(ax, r, c)
            if annotate:
                colour = "white" if _luminance(cm(norm(v))) < 0.5 else "black"
                # on a hatched (unsettled) cell the value sits on a patch of its cell's colour
                box = dict(boxstyle="square,pad=0.1", facecolor=cm(norm(v)), edgecolor="none") \
                    if (r, c) in unsettled else None
                ax.text(c + 0.5, r + (0.7 if labelled else 0.5), _fmt(v, fmt), ha="center", va="center",
                        fontsize=fontsize, color=colour, zorder=3, bbox=box)
    draw_edges(ax, edges, _EDGE_STYLE)
    draw_edges(ax, unsure_edges, _UNSURE_EDGE_STYLE)
    for (r, c), regime_name in label_cells.items():
        ax.text(c + 0.5, r + (0.3 if annotate else 0.5), regime_name, ha="center", va="center",
                fontsize=fontsize + 1 if annotate else 13, fontweight="bold", color="black", zorder=6,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.75))
    xt = _tick_positions(nx, 14)
    yt = _tick_positions(ny, 20)
    ax.set_xticks([c + 0.5 for c in xt], [load.tick(grids.loads[c]) for c in xt],
                  rotation=45 if nx > 10 else 0, ha="right" if nx > 10 else "center")
    ax.set_yticks([r + 0.5 for r in yt], [temperature.tick(grids.temperatures[r]) for r in yt])
    ax.tick_params(length=2, labelsize=8)
    ax.set_xlabel(load.label)
    ax.set_ylabel(temperature.label)
    ax.set_title(name)
    cbar = fig.colorbar(mesh, ax=ax, fraction=0.06, pad=0.03)
    cbar.set_label(cbar_label)
    cbar.ax.tick_params(labelsize=8)
    for level in cbar_lines:
        cbar.ax.axhline(level, color="black", linewidth=1.5)


def _norm(z: np.ndarray, lo: float | None = None, hi: float | None = None) -> Normalize:
    finite = z[np.isfinite(z)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    vmin = vmin if lo is None else min(vmin, lo)
    vmax = vmax if hi is None else max(vmax, hi)
    if vmax <= vmin:  # one value (e.g. a single finished row): a readable range above it
        vmax = vmin + (1.0 if vmin == 0 else abs(vmin) * 1e-2)
    return Normalize(vmin, vmax)


def _panel_size(nx: int, ny: int) -> tuple[float, float]:
    """A heatmap panel's (width, height) in inches for nx loads x ny temperatures."""
    return float(np.clip(0.6 * nx, 3.0, 5.6)), float(np.clip(0.55 * ny, 3.0, 6.5))


def _grid_marks(grids, panel_w: float, panel_h: float):
    """What the heatmap panels draw besides the values, shared by the phase diagram and Figure
    14's lines: (annotate the cells?, font size, regime label cells, boundary paths, boundary
    paths next to an unsettled cell, unsettled cells)."""
    ny, nx = len(grids.temperatures), len(grids.loads)
    fontsize = float(np.clip(16 * min(panel_w / nx, panel_h / ny), 6.0, 10.0))
    sure, unsure = split_edges(regime_edges(grids.regimes), grids.settled)
    unsettled = frozenset(zip(*map(lambda a: a.tolist(), np.nonzero(~grids.settled))))
    label_cells = {rc: name for name, rc, _ in regime_regions(grids.regimes) if name in REGIMES}
    return ny * nx <= ANNOTATE_MAX_CELLS, fontsize, label_cells, edge_paths(sure), edge_paths(unsure), unsettled


def _lmc_cka_panels(lmc, cka, quality: Metric, regimes: Regimes, letters: tuple[str, str]) -> list[tuple]:
    """The LMC and CKA heatmap panels (name, colour-bar label, values, colour map, norm, format,
    threshold lines). LMC is on the training error (translation: the token error)."""
    error = "token" if quality.column == "bleu" else "train"
    return [
        # dark = negative LMC (a barrier: Regime I), white = connected
        (f"({letters[0]}) LMC", f"LMC ({error} error)", lmc, "Blues_r",
         _norm(lmc, lo=min(regimes.lmc_epsilon, 0.0) * 2, hi=0.0), ".2f", (regimes.lmc_epsilon,)),
        # dark = dissimilar outputs
        (f"({letters[1]}) CKA similarity", "CKA similarity", cka, "magma", _norm(cka), ".2f",
         (regimes.cka_threshold,)),
    ]


def _regime_legend(regimes: Regimes, unsure_edges, unsettled) -> tuple[list, list[str]]:
    """The legend entries of the regime boundaries and of unsettled cells."""
    handles = [edge_handle(EDGE_I), edge_handle(EDGE_II)]
    labels = [f"Regime I | II boundary (LMC = {regimes.lmc_epsilon:g})",
              f"Regime II-A | II-B boundary (CKA = {regimes.cka_threshold:g})"]
    if unsettled:
        kinds = list(dict.fromkeys(k for _, k in unsure_edges))
        handles += [edge_handle(k, sure=False) for k in kinds]
        labels += [f"{'I | II' if k == EDGE_I else 'II-A | II-B'} boundary next to an unsettled cell" for k in kinds]
        handles.append(unsettled_handle())
        labels.append(f"unsettled: its {regimes.confidence * 100:g} % interval crosses a boundary")
    return handles, labels


def phase_diagram(summary: pd.DataFrame, pdf_path: str, png_path: str, regimes: Regimes,
                  temperature: AxisStyle = EPOCHS, load: AxisStyle = DENSITY, title: str = "",
                  running: Iterable[tuple[float, float]] = (), missing_label: str = "missing",
                  quality: Metric = TEST_ERROR) -> None:
    """The four panels of Figure 2 on the study's (temperature x load) grid, as PDF and PNG.

    quality: the task's quality metric (threeregime.spec.task: test error, or BLEU for
    translation) drawn in panels (a) and (b); (b) is its distance from the best cell of each
    load column (0 = the best temperature for that load, whichever way the metric is better).

    summary: one row per cell with columns temperature, load, test_error (fraction), lmc, cka and
    regime ("I", "II-A", "II-B", "missing"; computed from lmc/cka and the thresholds when absent).
    A half-finished grid (threeregime.progress): rows of unfinished cells carry NaN values;
    `running` names the (temperature, load) cells being computed (hatched apart from the other
    missing ones), `missing_label` is the legend's word for the rest.
    """
    grids = cell_grids(summary, temperature.hotter, regimes)
    at = {(t, l): (r, c) for r, t in enumerate(grids.temperatures) for c, l in enumerate(grids.loads)}
    running_cells = frozenset(at[(float(t), float(l))] for t, l in running if (float(t), float(l)) in at)
    ny, nx = len(grids.temperatures), len(grids.loads)
    test = grids.values[quality.column] * quality.scale
    with np.errstate(all="ignore"):
        best = np.nanmax if quality.higher_is_better else np.nanmin
        col_best = np.array([best(col) if np.isfinite(col).any() else np.nan for col in test.T])
    normalized = (col_best[None, :] - test) if quality.higher_is_better else (test - col_best[None, :])
    # the metric's own colour map: dark is bad (high error, low BLEU)
    cmap = "viridis" if quality.higher_is_better else "viridis_r"
    unit = f" ({quality.unit})" if quality.unit else ""
    name = quality.label.split(" (")[0]
    normalized_label = (f"{name} below the column's best{unit}" if quality.higher_is_better
                        else f"Normalized {name[0].lower() + name[1:]}{unit}")
    lmc, cka = grids.values["lmc"], grids.values["cka"]
    panel_w, panel_h = _panel_size(nx, ny)
    annotate, fontsize, label_cells, edges, unsure_edges, unsettled = _grid_marks(grids, panel_w, panel_h)
    panels = [
        (f"(a) {name}", quality.label, test, cmap, _norm(test), ".1f", ()),
        (f"(b) Normalized {name[0].lower() + name[1:] if not name.isupper() else name}", normalized_label,
         normalized, "viridis_r", _norm(normalized, lo=0.0), ".1f", ()),
        *_lmc_cka_panels(lmc, cka, quality, regimes, ("c", "d")),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(4 * (panel_w + 1.9), panel_h + 1.9), layout="constrained")
    for ax, (name, clabel, z, cmap, norm, fmt, lines) in zip(axes, panels):
        lines = [v for v in lines if norm.vmin <= v <= norm.vmax]
        _panel(ax, fig, z, grids, name, clabel, cmap, norm, fmt, temperature, load, annotate, fontsize,
               label_cells, edges, lines, running_cells, unsure_edges, unsettled)
    handles, labels = _regime_legend(regimes, unsure_edges, unsettled)
    blank = ~(np.isfinite(test) & np.isfinite(lmc) & np.isfinite(cka)) | (grids.regimes == MISSING)
    if any(blank[rc] for rc in running_cells):
        handles.append(Patch(facecolor="white", edgecolor=_RUNNING_HATCH["hatchcolor"], hatch=_RUNNING_HATCH["hatch"]))
        labels.append("running")
    if any(blank[r, c] and (r, c) not in running_cells for r in range(ny) for c in range(nx)):
        handles.append(Patch(facecolor="white", edgecolor="0.4", hatch=_MISSING_HATCH["hatch"]))
        labels.append(missing_label)
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 4), frameon=False, fontsize=9,
               handlelength=3.5, handler_map={tuple: HandlerTuple(ndivide=1, pad=0)})
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, pdf_path, png_path)


figure2 = phase_diagram  # the old name


# ---------------------------------------------------------------------------------------------
# Figure 13

_COMBINATIONS = ["SGD → SGD", "Adam → SGD", "SGD → Adam", "Adam → Adam"]
_COMBO_STYLE = {
    "SGD → SGD": ("tab:blue", "o", "-"),
    "Adam → SGD": ("tab:orange", "s", "-"),
    "SGD → Adam": ("tab:green", "^", "--"),
    "Adam → Adam": ("tab:olive", "D", "--"),
}


def _combo_key(name: str) -> str:
    return " → ".join(p.strip() for p in str(name).replace("->", "→").split("→"))


def optimizer_lines(df: pd.DataFrame, pdf_path: str, png_path: str, title: str = "", *,
                    temperature: AxisStyle | None = None, load: AxisStyle | None = None) -> None:
    """Figure 13: test error (%) against dense training epochs, one panel per load (density),
    one line per 'dense optimizer → retrain optimizer' combination.

    df: columns combination, load, temperature, test_error (fraction). Several rows for one
    (combination, load, temperature) are averaged and their spread shaded (± 1 std).
    """
    temperature = temperature or AxisStyle("Training epochs (temperature)")
    load = load or DENSITY
    d = df.assign(combination=df["combination"].map(_combo_key), load=df["load"].astype(float),
                  temperature=df["temperature"].astype(float), err=df["test_error"].astype(float) * 100)
    stats = d.groupby(["combination", "load", "temperature"])["err"].agg(["mean", "std", "size"]).reset_index()
    loads = sorted(stats["load"].unique())
    present = list(dict.fromkeys(stats["combination"]))
    combos = [c for c in _COMBINATIONS if c in present] + [c for c in present if c not in _COMBINATIONS]
    n = max(1, len(loads))
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n + 0.4, 3.9), sharey=True, layout="constrained", squeeze=False)
    extra = iter(plt.get_cmap("tab10").colors[4:])
    styles = {c: _COMBO_STYLE.get(c) or (next(extra, "grey"), "v", ":") for c in combos}
    for ax, lv in zip(axes[0], loads):
        sub = stats[stats["load"] == lv]
        for combo in combos:
            s = sub[sub["combination"] == combo].sort_values("temperature")
            if s.empty:
                continue
            colour, marker, ls = styles[combo]
            ax.plot(s["temperature"], s["mean"], color=colour, marker=marker, linestyle=ls, markersize=5,
                    linewidth=1.6, label=combo)
            if (s["size"] > 1).any():
                sd = s["std"].fillna(0.0)
                ax.fill_between(s["temperature"], s["mean"] - sd, s["mean"] + sd, color=colour, alpha=0.15,
                                linewidth=0)
        temps = sorted(sub["temperature"].unique())
        step = max(1, int(np.ceil(len(temps) / 10)))
        ax.set_xticks(temps[::step], [temperature.tick(t) for t in temps[::step]])
        ax.set_title(f"Density {load.tick(lv)}%" if load is DENSITY else f"{load.label}: {load.tick(lv)}")
        ax.set_xlabel(temperature.label)
        ax.grid(True, alpha=0.35)
        ax.tick_params(labelsize=8)
        ax.yaxis.set_tick_params(labelleft=True)
    axes[0][0].set_ylabel("Test error (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=max(1, len(labels)), frameon=False,
               fontsize=9, title="dense optimizer → retrain optimizer", title_fontsize=9)
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, pdf_path, png_path)


# ---------------------------------------------------------------------------------------------
# Figure 14: the quality metric against the temperature, one line per load

def quality_lines(summary: pd.DataFrame, pdf_path: str, png_path: str, regimes: Regimes,
                  quality: Metric = TEST_ERROR, temperature: AxisStyle = EPOCHS, load: AxisStyle = DENSITY,
                  title: str = "") -> None:
    """Figure 14 as the paper draws it: the quality metric (BLEU for translation) after retraining
    against the temperature (training epochs, hotter to the left as in the paper's x axis of
    epochs 1..10), one line per load (density), the mean over dense seeds and retrained copies;
    beside it the study's LMC and CKA panels with the regime boundaries (the phase diagram's
    (c) and (d)).

    summary: cells.parquet (temperature, load, the metric's column, lmc, cka, regime).
    """
    grids = cell_grids(summary, temperature.hotter, regimes)
    d = summary.assign(temperature=summary["temperature"].astype(float), load=summary["load"].astype(float),
                       value=summary[quality.column].astype(float) * quality.scale)
    loads = sorted(d["load"].unique())
    ny, nx = len(grids.temperatures), len(grids.loads)
    panel_w, panel_h = _panel_size(nx, ny)
    fig, axes = plt.subplots(1, 3, figsize=(5.6 + 2 * (panel_w + 1.9), panel_h + 1.9), layout="constrained",
                             gridspec_kw={"width_ratios": [5.6, panel_w + 1.9, panel_w + 1.9]})
    ax = axes[0]
    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(1, len(loads))))
    markers = "osD^v<>ph*"
    for i, lv in enumerate(loads):
        s = d[d["load"] == lv].groupby("temperature")["value"].mean().sort_index()
        ax.plot(s.index, s.values, marker=markers[i % len(markers)], color=colours[i], linewidth=1.6, markersize=5,
                label=(f"{load.tick(lv)}%" if load is DENSITY else load.tick(lv)))
    temps = sorted(d["temperature"].unique())
    ax.set_xticks(temps, [temperature.tick(t) for t in temps])
    ax.set_xlabel(temperature.label)
    ax.set_ylabel(quality.label)
    ax.set_title(f"(a) {quality.label.split(' (')[0]} after retraining")
    ax.grid(True, alpha=0.35)
    ax.legend(title=load.label.replace("Load (", "").rstrip(")").capitalize() if load is DENSITY else load.label,
              fontsize=8, title_fontsize=8, ncol=2 if len(loads) > 4 else 1)
    lmc, cka = grids.values["lmc"], grids.values["cka"]
    annotate, fontsize, label_cells, edges, unsure_edges, unsettled = _grid_marks(grids, panel_w, panel_h)
    for ax, (name, clabel, z, cmap, norm, fmt, lines) in zip(axes[1:], _lmc_cka_panels(lmc, cka, quality, regimes,
                                                                                        ("b", "c"))):
        lines = [v for v in lines if norm.vmin <= v <= norm.vmax]
        _panel(ax, fig, z, grids, name, clabel, cmap, norm, fmt, temperature, load, annotate, fontsize, label_cells,
               edges, lines, frozenset(), unsure_edges, unsettled)
    handles, labels = _regime_legend(regimes, unsure_edges, unsettled)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9,
               handlelength=3.5,
               handler_map={tuple: HandlerTuple(ndivide=1, pad=0)})
    if title:
        fig.suptitle(title, fontsize=12)
    _save(fig, pdf_path, png_path)


# ---------------------------------------------------------------------------------------------
# LMC curves of one cell

def lmc_curves(pairs: Sequence[dict], pdf_path: str, png_path: str, title: str = "") -> None:
    """Train error (%) along θ(t) = t·θ_a + (1−t)·θ_b for each pair of one cell.

    pairs: dicts with ts, train_error_curve (fractions), seed_a, seed_b, lmc. The ends (the copies
    themselves) are marked; a dotted bar shows the barrier at t*, where |mean of ends − error| peaks.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    colours = plt.get_cmap("tab10").colors
    for i, p in enumerate(pairs):
        ts = np.asarray(p["ts"], dtype=float)
        err = np.asarray(p["train_error_curve"], dtype=float) * 100
        if ts.size == 0 or ts.size != err.size:
            continue
        colour = colours[i % len(colours)]
        lmc = p.get("lmc", np.nan)
        lmc_txt = f"{lmc:+.3f}" if lmc is not None and np.isfinite(lmc) else "n/a"
        ax.plot(ts, err, color=colour, marker=".", markersize=5, linewidth=1.6,
                label=f"seeds {p['seed_a']} / {p['seed_b']}: LMC = {lmc_txt}")
        ends = [0, ts.size - 1]
        ax.plot(ts[ends], err[ends], linestyle="none", marker="o", markersize=8, color=colour,
                markeredgecolor="black", markeredgewidth=0.8, zorder=4)
        if np.isfinite(err[ends]).all():
            mid = 0.5 * (err[0] + err[-1])
            gap = mid - err
            if np.isfinite(gap).any():
                k = int(np.nanargmax(np.abs(gap)))
                ax.plot([ts[k], ts[k]], [mid, err[k]], color=colour, linestyle=":", linewidth=1.4)
    ax.set_xlim(-0.04, 1.04)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("t   (θ(t) = t·θ_a + (1 − t)·θ_b;  t = 0: copy b,  t = 1: copy a)")
    ax.set_ylabel("Train error (%)")
    ax.grid(True, alpha=0.35)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", title="pair (a / b)", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no pairs", transform=ax.transAxes, ha="center", va="center")
    ax.set_title(title or "Linear mode connectivity", fontsize=11 if "\n" not in title else 9.5)
    _save(fig, pdf_path, png_path)
