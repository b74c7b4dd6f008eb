"""Figure 2 of the paper: test error, normalised test error, LMC and CKA on the
temperature x load grid, with the regime boundaries drawn."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .checkpoints import save_bytes  # noqa: E402


def _grid(summary: pd.DataFrame, value: str) -> pd.DataFrame:
    # Temperature on y with the smallest (10 epochs) at the top, density on x.
    return summary.pivot_table(index="temperature", columns="density", values=value, aggfunc="mean") \
        .sort_index(ascending=True).sort_index(axis=1)


def _boundary(ax, grid: pd.DataFrame, level: float, style: str, color: str) -> None:
    z = grid.to_numpy(dtype=float)
    if z.shape[0] < 2 or z.shape[1] < 2 or np.all(np.isnan(z)):
        return
    finite = z[np.isfinite(z)]
    if not (finite.min() < level < finite.max()):
        return  # the whole grid is on one side: no boundary to draw
    xs, ys = np.arange(z.shape[1]) + 0.5, np.arange(z.shape[0]) + 0.5
    ax.contour(xs, ys, np.ma.masked_invalid(z), levels=[level], colors=color, linestyles=style, linewidths=2.5)


def figure2(summary: pd.DataFrame, pdf_path: str, png_path: str, lmc_epsilon: float, cka_threshold: float,
            title: str = "") -> None:
    test = _grid(summary, "test_error") * 100
    panels = [
        ("Test error (%)", test, "viridis_r"),
        ("Normalized test error (%)", test - test.min(axis=0), "viridis_r"),
        ("LMC", _grid(summary, "lmc"), "RdBu"),
        ("CKA similarity", _grid(summary, "cka"), "magma"),
    ]
    lmc, cka = _grid(summary, "lmc"), _grid(summary, "cka")
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.2))
    for ax, (name, grid, cmap) in zip(axes, panels):
        kw = {"center": 0.0} if name == "LMC" else {}
        sns.heatmap(grid, ax=ax, cmap=cmap, annot=grid.shape[0] * grid.shape[1] <= 64, fmt=".2f",
                    cbar_kws={"label": name}, xticklabels=[f"{d * 100:g}" for d in grid.columns],
                    yticklabels=list(grid.index), **kw)
        _boundary(ax, lmc, lmc_epsilon, "-", "black")
        # II-A/II-B is a split of the connected regime only.
        _boundary(ax, cka.where(lmc >= lmc_epsilon), cka_threshold, "--", "white")
        ax.set_title(name)
        ax.set_xlabel("Density (%)  [load]")
        ax.set_ylabel("Training epochs  [temperature]")
    fig.suptitle((title + "  " if title else "")
                 + f"solid: Regime I boundary (LMC = {lmc_epsilon:g});  dashed: II-A / II-B boundary "
                 f"(CKA = {cka_threshold:g})", fontsize=11)
    fig.tight_layout()
    for path, fmt in ((pdf_path, "pdf"), (png_path, "png")):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110)
        save_bytes(buf.getvalue(), path)
    plt.close(fig)
