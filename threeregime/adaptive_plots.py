"""The adaptive search's phase diagram (threeregime.adaptive): which cells were computed, which
were inferred, and the regime boundaries through both.

Three panels on the study's temperature x load grid, hottest row on top as in `plots`:

* Regimes: computed cells filled in their regime's colour with the round that computed them;
  skipped cells in a light shade of their inferred regime, hatched; the boundaries (Regime I |
  II solid, II-A | II-B dashed) drawn along cell edges between computed and inferred regimes.
  A computed cell whose regime is unsettled (the adaptive table's `near`: its intervals reach
  another regime) carries the phase diagram's unsettled hatch, and the boundaries next to it
  are dotted, as in `plots.phase_diagram`.
* LMC and CKA of the computed cells (skipped cells hatched grey), with the same boundaries.
"""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize, to_rgb  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from .regimes import Regimes  # noqa: E402
from .plots import (DENSITY, EDGE_I, EDGE_II, _save, EPOCHS, AxisStyle, edge_paths, mark_unsettled,  # noqa: E402
                    regime_edges, split_edges, temperature_order, unsettled_handle)
from matplotlib.legend_handler import HandlerTuple  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

REGIME_COLOURS = {"I": "#3b5b92", "II-A": "#e0913a", "II-B": "#4d9a5a", "missing": "#bbbbbb",
                  "undetermined": "#ffffff"}
_EDGE = {EDGE_I: dict(color="black", linestyle="-", linewidth=2.6),
         EDGE_II: dict(color="black", linestyle=(0, (3.0, 2.0)), linewidth=2.0)}
# next to an unsettled cell: thinner, dotted
_UNSURE_EDGE = {EDGE_I: dict(color="black", linestyle=(0, (1.0, 1.2)), linewidth=1.8),
                EDGE_II: dict(color="black", linestyle=(0, (1.0, 1.2, 3.0, 1.2)), linewidth=1.4)}


def _light(colour: str, amount: float = 0.55):
    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def grids(table: pd.DataFrame, hotter: str):
    """(temperatures top row first, loads, {column: 2-D array}) of the adaptive table."""
    temps = temperature_order(table["temperature"], hotter)
    loads = sorted({float(v) for v in table["load"]})
    by = table.assign(temperature=table["temperature"].astype(float),
                      load=table["load"].astype(float)).set_index(["temperature", "load"])
    out = {}
    if "near" not in by:  # tables written before near cells existed
        by = by.assign(near="")
    for col in ("regime", "computed", "round", "outlier", "near", "lmc", "cka"):
        out[col] = np.array([[by.at[(t, l), col] for l in loads] for t in temps],
                            dtype=object if col in ("regime", "near") else float)
    return temps, loads, out


def _axes(ax, temps, loads, temperature: AxisStyle, load: AxisStyle, title: str):
    ax.set_xlim(0, len(loads))
    ax.set_ylim(len(temps), 0)
    ax.set_xticks([c + 0.5 for c in range(len(loads))], [load.tick(v) for v in loads],
                  rotation=45 if len(loads) > 10 else 0)
    step = max(1, int(np.ceil(len(temps) / 20)))
    ax.set_yticks([r + 0.5 for r in range(0, len(temps), step)], [temperature.tick(v) for v in temps[::step]])
    ax.tick_params(length=2, labelsize=8)
    ax.set_xlabel(load.label)
    ax.set_ylabel(temperature.label)
    ax.set_title(title)


def _boundaries(ax, regimes, settled):
    sure, unsure = split_edges(regime_edges(regimes), settled)
    for edges, styles in ((sure, _EDGE), (unsure, _UNSURE_EDGE)):
        for path, kind in edge_paths(edges):
            xs, ys = zip(*path)
            ax.plot(xs, ys, zorder=5, solid_capstyle="projecting", **styles[kind])


def adaptive_diagram(table: pd.DataFrame, pdf_path: str, png_path: str, thresholds: Regimes,
                     temperature: AxisStyle = EPOCHS, load: AxisStyle = DENSITY, title: str = "") -> None:
    """Draw the adaptive search's table (threeregime.adaptive.cell_table) as PDF and PNG."""
    lmc_epsilon, cka_threshold = thresholds.lmc_epsilon, thresholds.cka_threshold
    temps, loads, g = grids(table, temperature.hotter)
    ny, nx = len(temps), len(loads)
    regimes = g["regime"]
    computed = g["computed"].astype(bool)
    # settled unless measured unsettled (skipped cells are inferred from settled ones only)
    settled = np.array([[not (computed[r, c] and str(g["near"][r, c]) not in ("", "nan", "None"))
                         for c in range(nx)] for r in range(ny)], dtype=bool)
    panel_w, panel_h = float(np.clip(0.62 * nx, 3.2, 6.0)), float(np.clip(0.5 * ny, 3.0, 6.5))
    fig, axes = plt.subplots(1, 3, figsize=(3 * panel_w + 3.2, panel_h + 1.9), layout="constrained")
    ax = axes[0]
    for r in range(ny):
        for c in range(nx):
            name = str(regimes[r, c])
            colour = REGIME_COLOURS.get(name, "#ffffff")
            if computed[r, c]:
                ax.add_patch(Rectangle((c, r), 1, 1, facecolor=colour, edgecolor="white", linewidth=0.8))
                rnd = int(g["round"][r, c])
                mark = "*" if g["outlier"][r, c] else ""
                if not settled[r, c]:
                    mark_unsettled(ax, r, c)
                ax.text(c + 0.5, r + 0.5, f"{rnd}{mark}", ha="center", va="center", fontsize=8, color="white",
                        fontweight="bold", zorder=3,
                        bbox=None if settled[r, c] else dict(boxstyle="square,pad=0.1", facecolor=colour,
                                                             edgecolor="none"))
            else:
                ax.add_patch(Rectangle((c, r), 1, 1, facecolor=_light(colour), edgecolor="white", linewidth=0.8,
                                       hatch="///", zorder=1))
    _boundaries(ax, regimes, settled)
    _axes(ax, temps, loads, temperature, load, "Regimes (the round that computed a cell; *: outlier)")
    handles = [Patch(facecolor=REGIME_COLOURS[n]) for n in ("I", "II-A", "II-B")]
    handles += [Patch(facecolor=_light(REGIME_COLOURS[n]), hatch="///") for n in ("I", "II-A", "II-B")]
    labels = [f"{n} computed" for n in ("I", "II-A", "II-B")] + [f"{n} inferred" for n in ("I", "II-A", "II-B")]
    if not settled.all():
        handles += [unsettled_handle(), Line2D([], [], **_UNSURE_EDGE[EDGE_I])]
        labels += [f"unsettled: its {thresholds.confidence * 100:g} % interval (or margin) crosses a boundary; "
                   f"nothing is inferred from it", "boundary next to an unsettled cell"]
    fig.legend(handles, labels, loc="outside lower center", ncol=6 if settled.all() else 4, fontsize=8,
               frameon=False, handler_map={tuple: HandlerTuple(ndivide=1, pad=0)})

    for ax, col, name, cmap, level in ((axes[1], "lmc", f"LMC (ε = {lmc_epsilon:g})", "Blues_r", lmc_epsilon),
                                       (axes[2], "cka", f"CKA (threshold {cka_threshold:g})", "viridis",
                                        cka_threshold)):
        z = np.where(computed, g[col], np.nan)
        finite = z[np.isfinite(z)]
        lo = min(float(finite.min()), level) if finite.size else level - 1
        hi = max(float(finite.max()), level) if finite.size else level + 1
        norm = Normalize(lo, hi if hi > lo else lo + 1e-6)
        mesh = ax.pcolormesh(np.arange(nx + 1), np.arange(ny + 1), np.ma.masked_invalid(z), cmap=cmap, norm=norm)
        for r in range(ny):
            for c in range(nx):
                if not np.isfinite(z[r, c]):
                    ax.add_patch(Rectangle((c, r), 1, 1, fill=False, hatch="///", edgecolor="0.75", linewidth=0))
                elif not settled[r, c]:
                    mark_unsettled(ax, r, c)
                if np.isfinite(z[r, c]) and ny * nx <= 64:
                    rgb = plt.get_cmap(cmap)(norm(z[r, c]))
                    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
                    ax.text(c + 0.5, r + 0.5, f"{z[r, c]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if lum < 0.5 else "black", zorder=3,
                            bbox=None if settled[r, c] else dict(boxstyle="square,pad=0.1", facecolor=rgb,
                                                                 edgecolor="none"))
        _boundaries(ax, regimes, settled)
        _axes(ax, temps, loads, temperature, load, name)
        cbar = fig.colorbar(mesh, ax=ax, fraction=0.06, pad=0.03)
        cbar.ax.axhline(level, color="black", linewidth=1.5)
    n_comp = int(computed.sum())
    fig.suptitle(f"{title + ': ' if title else ''}adaptive search, {n_comp} of {nx * ny} cells computed "
                 f"({nx * ny / max(n_comp, 1):.1f}x fewer)", fontsize=11)
    _save(fig, pdf_path, png_path)
