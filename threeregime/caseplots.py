"""Figures of the paper's case studies, drawn from a case study's table (threeregime.casedecisions);
each algorithm's entry in threeregime.casestudies.ALGORITHMS names its drawing here.

* Figures 3, 15 (`temperature_figure`): per panel, LMC at T0 per load with the Regime-I loads
  boxed (top), and the test error reached at T0 and at T0 + ΔT (bottom).
* Figures 4, 16 (`selection_figure`): per panel, the final test error of the dense model each
  method picks per density: squares ours, crosses the baseline, a dashed line the grid search;
  markers coloured by the LMC of the pruned model picked.
* Figure 5 (`sam_vs_sgd_figure`): test error, LMC and CKA against the temperature, SGD vs SAM.
* Figure 6 (`sam_rho_figure`): (a) test error of a small ρ, a large ρ and the ρ chosen by CKA per
  density; (b) CKA against ρ, the choice starred.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .plots import _save, unsettled_patches  # noqa: E402
from .spec.common import fmt, resolve  # noqa: E402
from .study import axis_named  # noqa: E402

SGD_COLOUR, SAM_COLOUR = "tab:blue", "tab:orange"


def _loads(ax, loads, load_axis: str, label: bool = True):
    axis = axis_named(load_axis, "load")
    ax.set_xticks(range(len(loads)), [axis.tick(v) for v in loads])
    ax.set_xlim(-0.6, len(loads) - 0.4)
    if label:
        ax.set_xlabel(axis.label)


def _pct(v):
    return np.asarray(v, dtype=float) * 100


def regime_one_runs(flags) -> list[tuple[int, int]]:
    """(first, last) index of each run of consecutive True flags: the boxes of Figure 3."""
    runs, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def temperature_figure(table: pd.DataFrame, info: list[dict], pdf_path: str, png_path: str, title: str = "") -> None:
    panels = list(dict.fromkeys(table.panel))
    fig, axes = plt.subplots(2, len(panels), figsize=(max(7.5, 3.6 * len(panels) + 0.4), 6.4), layout="constrained",
                             squeeze=False)
    for j, (name, meta) in enumerate(zip(panels, info)):
        t = table[table.panel == name].sort_values("load")
        x = np.arange(len(t))
        t_axis = axis_named(meta["temperature_axis"], "temperature")
        top, bottom = axes[0, j], axes[1, j]
        top.plot(x, t.lmc, "o-", color="black", markersize=5)
        if "lmc_lo" in t:  # the interval of each mean LMC; an unknown one (one pair) is not drawn
            lo, hi = t.lmc_lo.astype(float).to_numpy(), t.lmc_hi.astype(float).to_numpy()
            known = np.isfinite(lo) & np.isfinite(hi)
            lmc = t.lmc.astype(float).to_numpy()
            top.errorbar(x[known], lmc[known], yerr=[lmc[known] - lo[known], hi[known] - lmc[known]], fmt="none",
                         ecolor="black", elinewidth=1.2, capsize=3, zorder=4,
                         label=f"{meta.get('confidence', 0.9) * 100:g} % interval")
        top.axhline(meta["epsilon"], color="tab:red", linestyle="--", linewidth=1, label=f"ε = {meta['epsilon']:g}")
        for a, b in regime_one_runs(t.regime_I):
            top.add_patch(Rectangle((a - 0.35, 0.02), b - a + 0.7, 0.96, transform=top.get_xaxis_transform(),
                                    fill=False, edgecolor="black", linewidth=1.8, zorder=5))
        for k, (a, b) in enumerate(regime_one_runs(t.decision == "unsettled")):  # hatched as on the phase diagram
            for patch in unsettled_patches((a - 0.45, 0.0), b - a + 0.9, 1.0, transform=top.get_xaxis_transform(),
                                           zorder=1, label="unsettled: no decision" if k == 0 else None):
                top.add_patch(patch)
        top.set_title(f"{name}\nT0 = {fmt(t.t0.iloc[0])}, T0 + ΔT = {fmt(t.t1.iloc[0])}", fontsize=10)
        top.set_ylabel("LMC at T0" if j == 0 else "")
        top.legend(fontsize=8, loc="lower right")
        _loads(top, list(t.load), meta["load_axis"], label=False)
        # the quality the decisions are judged on: the test error (%), or the task's metric (BLEU)
        quality = meta.get("quality") or {"column": "test_error", "label": "Test error (%)", "scale": 100.0}
        scaled = lambda v: np.asarray(v, dtype=float) * quality["scale"]  # noqa: E731
        q0, q1 = t[f"{quality['column']}_t0"], t[f"{quality['column']}_t1"]
        bottom.plot(x, scaled(q0), "o-", color="tab:blue", label=f"T0 = {fmt(t.t0.iloc[0])} ({t_axis.name})")
        bottom.plot(x, scaled(q1), "s--", color="tab:orange", label=f"T0 + ΔT = {fmt(t.t1.iloc[0])}")
        for xi, (dec, right, e0, e1) in enumerate(zip(t.decision, t.right, q0, q1)):
            mark = "" if right is None or pd.isna(right) else ("✓" if right else "✗")
            dec = "unsettled?" if dec == "unsettled" else dec
            y = np.nanmax(scaled([e0, e1])) if np.isfinite([e0, e1]).any() else np.nan
            if np.isfinite(y):
                bottom.annotate(f"{dec}{mark}", (xi, y), textcoords="offset points", xytext=(0, 5), ha="center",
                                fontsize=7, color="tab:green" if right else "tab:red" if right is False else "grey")
        bottom.set_ylabel(quality["label"] if j == 0 else "")
        bottom.legend(fontsize=8)
        bottom.margins(y=0.18)
        _loads(bottom, list(t.load), meta["load_axis"])
    fig.suptitle(title or "Algorithm 1: Regime I (LMC < ε, boxed) → raise the temperature", fontsize=12)
    _save(fig, pdf_path, png_path)


def selection_figure(table: pd.DataFrame, info: list[dict], pdf_path: str, png_path: str, title: str = "") -> None:
    panels = list(dict.fromkeys(table.panel))
    lmcs = pd.concat([table.ours_lmc, table.baseline_lmc]).astype(float)
    finite = lmcs[np.isfinite(lmcs)]
    norm = Normalize(float(finite.min()) if len(finite) else -1, max(0.0, float(finite.max())) if len(finite) else 0)
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(panels), figsize=(max(8.5, 4.6 * len(panels) + 1.0), 4.2), layout="constrained",
                             squeeze=False)
    method = "LMC + test error after α epochs (Algorithm 2)" if table.select_by.iloc[0] == "test_error" else \
        "LMC + CKA after α epochs (Algorithm 2.1)"
    for j, (name, meta) in enumerate(zip(panels, info)):
        ax = axes[0, j]
        t = table[table.panel == name].sort_values("load")
        x = np.arange(len(t))
        ax.plot(x, _pct(t.grid_error), "--", marker="_", markersize=22, color="grey", linewidth=1.4,
                label="grid search", zorder=1)
        ax.scatter(x, _pct(t.baseline_error), marker="x", s=70, c=cmap(norm(t.baseline_lmc.astype(float))),
                   linewidths=2, label="baseline (lowest dense test error)", zorder=3)
        ax.scatter(x, _pct(t.ours_error), marker="s", s=60, facecolors="none",
                   edgecolors=cmap(norm(t.ours_lmc.astype(float))), linewidths=2, label="ours", zorder=4)
        t_axis = axis_named(meta["temperature_axis"], "temperature")
        ax.set_title(f"selecting {t_axis.name} among {len(meta['candidates'])} dense models\nretraining epochs: ours "
                     f"{t.ours_epochs.sum():g}, grid search {t.grid_epochs.sum():g}", fontsize=10)
        ax.set_ylabel("Final test error (%)" if j == 0 else "")
        _loads(ax, list(t.load), meta["load_axis"])
        ax.grid(True, alpha=0.3)
        if j == 0:
            ax.legend(fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, -1], label="LMC of the pruned model picked")
    fig.suptitle(title or f"Selecting the dense model to prune: {method}", fontsize=12)
    _save(fig, pdf_path, png_path)


def sam_vs_sgd_figure(table: pd.DataFrame, info: list[dict], pdf_path: str, png_path: str, title: str = "") -> None:
    panels = list(dict.fromkeys(table.panel))
    fig, axes = plt.subplots(3, len(panels), figsize=(max(7.5, 4.2 * len(panels) + 0.4), 7.8), layout="constrained",
                             squeeze=False, sharex="col")
    for j, (name, meta) in enumerate(zip(panels, info)):
        t_axis = axis_named(meta["temperature_axis"], "temperature")
        t = table[table.panel == name]
        temps = sorted(set(t.temperature))
        for opt, colour in (("SGD", SGD_COLOUR), ("SAM", SAM_COLOUR)):
            o = t[t.optimizer == opt].set_index("temperature").reindex(temps)
            label = opt if opt == "SGD" else f"SAM (ρ = {fmt(o.rho.dropna().iloc[0]) if o.rho.notna().any() else '?'})"
            for i, (col, scale) in enumerate((("test_error", 100), ("lmc", 1), ("cka", 1))):
                axes[i, j].plot(range(len(temps)), o[col].astype(float) * scale, "o-", color=colour, label=label)
        for i, lab in enumerate(("Test error (%)", "LMC", "CKA")):
            axes[i, j].set_ylabel(lab if j == 0 else "")
            axes[i, j].grid(True, alpha=0.3)
        axes[1, j].axhline(meta["epsilon"], color="tab:red", linestyle="--", linewidth=1)
        axes[0, j].set_title(f"{name}, density {fmt(t.load.iloc[0] * 100)} %", fontsize=10)
        axes[2, j].set_xticks(range(len(temps)), [t_axis.tick(v) for v in temps])
        axes[2, j].set_xlabel(t_axis.label)
        axes[0, j].legend(fontsize=8)
    fig.suptitle(title or "Dense training with SGD vs SAM, after pruning and retraining", fontsize=12)
    _save(fig, pdf_path, png_path)


def sam_rho_figure(table: pd.DataFrame, info: list[dict], pdf_path: str, png_path: str, title: str = "",
                   cells: pd.DataFrame | None = None) -> None:
    t = table.sort_values("load")
    meta = info[0]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    x = np.arange(len(t))
    w = 0.27
    small, large = t.small_rho.iloc[0], t.large_rho.iloc[0]
    a.bar(x - w, _pct(t.small_error), w, color="tab:blue", label=f"small ρ = {fmt(small)}")
    a.bar(x, _pct(t.large_error), w, color="tab:orange", label=f"large ρ = {fmt(large)}")
    a.bar(x + w, _pct(t.selected_error), w, color="tab:red", label="ρ with the highest CKA (ours)")
    for xi, (rho, best) in enumerate(zip(t.selected_rho, t.selected_is_best)):
        if rho is not None and pd.notna(rho):
            a.annotate(f"ρ={fmt(rho)}{'*' if best else ''}", (xi + w, _pct([t.selected_error.iloc[xi]])[0]),
                       textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    _loads(a, list(t.load), meta["load_axis"])
    a.set_ylabel("Test error (%)")
    a.set_title("(a) test error; * = also the best ρ by test error", fontsize=10)
    a.legend(fontsize=8)
    if cells is not None:
        colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(t)))
        for colour, (load, rho) in zip(colours, zip(t.load, t.selected_rho)):
            c = cells[np.isclose(cells.load, load)].sort_values("temperature")
            b.plot(c.temperature, c.cka, "o-", color=colour, markersize=4,
                   label=f"{axis_named(meta['load_axis'], 'load').tick(load)}")
            sel = c[np.isclose(c.temperature, rho)] if rho is not None and pd.notna(rho) else c.iloc[:0]
            b.plot(sel.temperature, sel.cka, "*", color="black", markersize=14, zorder=5)
    b.set_xlabel("SAM ρ")
    b.set_ylabel("CKA")
    b.set_title("(b) CKA against ρ; ★ = the selected ρ", fontsize=10)
    b.legend(fontsize=8, title=axis_named(meta["load_axis"], "load").label, title_fontsize=8)
    b.grid(True, alpha=0.3)
    fig.suptitle(title or "Tuning SAM's ρ by CKA", fontsize=12)
    _save(fig, pdf_path, png_path)


def draw_case_study(case, table: pd.DataFrame, panels: list[dict], info: list[dict], pdf_path: str,
                    png_path: str) -> None:
    """The case study's figure: its algorithm's drawing (threeregime.casestudies.ALGORITHMS)."""
    entry = case.entry
    resolve(entry.draw)(table, info, pdf_path, png_path, f"{case.name}: " + entry.title(case.params),
                        **entry.draw_kwargs(panels))
