"""How sure a cell's mean LMC and CKA are: the spread over pairs and dense seeds, an interval
for the mean, and from it the cell's regime confidence (`Regimes.candidates`).

A cell's pairs are not independent measurements: with copies 1, 2, 3 the pairs (1, 2),
(1, 3) and (2, 3) share copies, and the copies (one per retrain seed, from one pruned start)
are the independent units. The mean over pairs is a U-statistic of the copies; its standard
error is estimated by the jackknife over copies (leave one copy out, average the pairs that
remain): conservative for U-statistics (Efron-Stein), exact when a pair's value is the sum
of its two copies' effects, at most twice the true standard error when pairs vary
independently of each other. The interval is mean ± t·SE with n_copies − 1 degrees of
freedom (the copies are what was sampled); a cell with one pair (two copies) has no
spread to estimate, and its interval is unbounded.

Several dense seeds: each dense seed's copies are a sample of their own, and the cell mean
is the mean over dense seeds. The standard error is then that of the dense seeds' means,
sd(seed means) / sqrt(S) with S − 1 degrees of freedom: in a balanced nested design this is
the unbiased estimate of the grand mean's variance, between-seed and within-seed noise both
included (the within-seed spread is still reported, as `*_sd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .regimes import MISSING, Regimes, candidates_text

METRICS = ("lmc", "cka")


@dataclass(frozen=True)
class Interval:
    """One metric of one cell: its mean and how sure it is."""

    mean: float
    sd: float          # spread of single pairs around their dense seed's mean (pooled); NaN with one pair
    sd_dense: float    # spread of the dense seeds' means; NaN with one dense seed
    se: float          # standard error of `mean`; NaN when it cannot be estimated
    df: int            # degrees of freedom of the t quantile (0: none)
    lo: float          # mean - t·se (NaN: unknown, read as unbounded)
    hi: float


def jackknife_se(pairs: dict[tuple[int, int], float]) -> float:
    """Standard error of the mean over `pairs` ({(copy a, copy b): value}) by the jackknife
    over copies; NaN with fewer than 3 copies (leaving one out must leave a pair) or a NaN value."""
    copies = sorted({c for ab in pairs for c in ab})
    values = np.array(list(pairs.values()), dtype=float)
    n = len(copies)
    if n < 3 or not np.isfinite(values).all():
        return math.nan
    left = []
    for c in copies:
        rest = [v for ab, v in pairs.items() if c not in ab]
        if not rest:
            return math.nan
        left.append(float(np.mean(rest)))
    left = np.asarray(left)
    return float(math.sqrt((n - 1) / n * np.sum((left - left.mean()) ** 2)))


def interval(pairs_by_seed: dict[int, dict[tuple[int, int], float]], confidence: float) -> Interval:
    """The mean over all pairs of a cell (pairs of each dense seed: {(a, b): value}) and its
    interval at two-sided `confidence` (see the module's docstring for the two levels)."""
    values = np.array([v for pairs in pairs_by_seed.values() for v in pairs.values()], dtype=float)
    if not len(values) or not np.isfinite(values).all():
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(values.mean())
    seed_means = np.array([np.mean(list(p.values())) for p in pairs_by_seed.values()], dtype=float)
    resid = [v - float(np.mean(list(p.values()))) for p in pairs_by_seed.values() for v in p.values()]
    dof = sum(len(p) - 1 for p in pairs_by_seed.values())
    sd = float(math.sqrt(np.sum(np.square(resid)) / dof)) if dof > 0 else math.nan
    n_seeds = len(pairs_by_seed)
    sd_dense = float(np.std(seed_means, ddof=1)) if n_seeds > 1 else math.nan
    if n_seeds > 1:
        se, df = sd_dense / math.sqrt(n_seeds), n_seeds - 1
    else:
        (pairs,) = pairs_by_seed.values()
        se = jackknife_se(pairs)
        df = len({c for ab in pairs for c in ab}) - 1 if math.isfinite(se) else 0
    if not (math.isfinite(se) and df > 0):
        return Interval(mean, sd, sd_dense, math.nan, 0, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(mean, sd, sd_dense, se, df, mean - half, mean + half)


def _pair_seeds(pair: str) -> tuple[int, int]:
    a, b = str(pair).split("-")
    return int(a), int(b)


def cell_intervals(pair_rows: pd.DataFrame, keys: list[str], regimes: Regimes) -> pd.DataFrame:
    """Per cell (`keys`) of a table's pair rows (columns dense_seed, pair, lmc, cka): for each
    metric <m>_sd, <m>_sd_dense, <m>_lo, <m>_hi, and the cell's `settled` (NA for a missing
    cell) and `candidates` (the regimes its intervals reach, 'I/II-A' when unsettled)."""
    rows = []
    for key, g in pair_rows.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        ivs = {}
        for m in METRICS:
            by_seed = {int(s): {_pair_seeds(p): float(v) for p, v in zip(d["pair"], d[m])}
                       for s, d in g.groupby("dense_seed")}
            ivs[m] = iv = interval(by_seed, regimes.confidence)
            row.update({f"{m}_sd": iv.sd, f"{m}_sd_dense": iv.sd_dense, f"{m}_lo": iv.lo, f"{m}_hi": iv.hi})
        names = regimes.candidates(ivs["lmc"].mean, ivs["cka"].mean, (ivs["lmc"].lo, ivs["lmc"].hi),
                                   (ivs["cka"].lo, ivs["cka"].hi))
        row["settled"] = None if names == (MISSING,) else len(names) == 1
        row["candidates"] = candidates_text(names)
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + [f"{m}_{s}" for m in METRICS for s in ("sd", "sd_dense", "lo", "hi")]
                        + ["settled", "candidates"])


def describe(mean: float, lo: float, hi: float, confidence: float, fmt: str = "+.4f") -> str:
    """'-0.0633 (90 % interval -0.0950 to -0.0316)', or 'unknown' bounds for one pair."""
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean:{fmt}} ({confidence * 100:g} % interval unknown: one pair)"
    return f"{mean:{fmt}} ({confidence * 100:g} % interval {lo:{fmt}} to {hi:{fmt}})"

