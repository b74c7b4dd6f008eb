"""The three regimes: the thresholds, the names, the rule, and how sure a cell's regime is.

Regime I: poorly connected, LMC < ε (strict: LMC = ε is connected, as in the paper's LMC ∈ [ε, 0]).
Connected cells: II-B if CKA ≥ the threshold (similar copies), II-A otherwise.
Every table, diagram, case study and the adaptive search classifies through `Regimes`.

A measured cell's regime is *settled* when the intervals of its mean LMC and CKA (from
threeregime.uncertainty) lie on one side of every boundary that matters; otherwise it is
*unsettled* between the regimes the intervals reach (`candidates`). The adaptive search's
"near a boundary" is the same rule with its margins as the least half-width (`near`).
Torch-free (the spec layer builds it from the config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NAMES = ("I", "II-A", "II-B")
MISSING = "missing"  # a metric is NaN: a diverged or constant copy, or a cell not computed
DEFAULT_LMC_EPSILON = -0.05
DEFAULT_CKA_THRESHOLD = 0.9
# Two-sided confidence of a cell's intervals (README "How sure is a cell's regime": with 3
# copies the t quantile has 2 degrees of freedom, 2.92 at 0.9 and 4.30 at 0.95).
DEFAULT_CONFIDENCE = 0.9
UNSETTLED_SEP = "/"  # candidates as text: "I/II-A"


def _finite(x) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False


@dataclass(frozen=True)
class Regimes:
    """A study's regime thresholds (config `regimes`) and the rule they define."""

    lmc_epsilon: float = DEFAULT_LMC_EPSILON
    cka_threshold: float = DEFAULT_CKA_THRESHOLD
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self):
        if not (_finite(self.lmc_epsilon) and self.lmc_epsilon <= 0):
            raise ValueError(f"regimes.lmc_epsilon must be <= 0 (Regime I is LMC < epsilon, a barrier), "
                             f"got {self.lmc_epsilon}")
        if not (_finite(self.cka_threshold) and 0 < self.cka_threshold <= 1):
            raise ValueError(f"regimes.cka_threshold must be in (0, 1], got {self.cka_threshold}")
        if not (_finite(self.confidence) and 0 < self.confidence < 1):
            raise ValueError(f"regimes.confidence must be in (0, 1) (e.g. 0.9 for 90 % intervals), "
                             f"got {self.confidence}")

    @staticmethod
    def from_dict(d: dict | None) -> "Regimes":
        d = d or {}
        return Regimes(float(d.get("lmc_epsilon", DEFAULT_LMC_EPSILON)),
                       float(d.get("cka_threshold", DEFAULT_CKA_THRESHOLD)),
                       float(d.get("confidence", DEFAULT_CONFIDENCE)))

    def as_dict(self) -> dict:
        return {"lmc_epsilon": self.lmc_epsilon, "cka_threshold": self.cka_threshold, "confidence": self.confidence}

    def is_one(self, lmc: float) -> bool:
        """Regime I: LMC < ε (NaN is not Regime I)."""
        return bool(_finite(lmc) and lmc < self.lmc_epsilon)

    def classify(self, lmc: float, cka: float) -> str:
        """'I', 'II-A', 'II-B', or MISSING when the metric that decides is NaN."""
        if not _finite(lmc):
            return MISSING
        if lmc < self.lmc_epsilon:
            return "I"
        if not _finite(cka):
            return MISSING  # connected, but a copy's outputs are constant: similarity undefined
        return "II-B" if cka >= self.cka_threshold else "II-A"

    def candidates(self, lmc: float, cka: float, lmc_interval=(math.nan, math.nan),
                   cka_interval=(math.nan, math.nan)) -> tuple[str, ...]:
        """The regimes a cell measured at (lmc, cka) may have, given intervals for the two means:
        its own regime (`classify`) and every regime the open box lmc_interval x cka_interval
        reaches, in NAMES order. One name: settled; several: unsettled between them.

        A NaN bound is unknown (a cell with one pair has no spread): unbounded on that side. An
        interval of zero width is the point itself, so an exact tie (LMC = ε, CKA = threshold)
        with no spread stays settled on the connected / II-B side, as `classify` puts it; a tie
        with any spread reaches both sides. (MISSING,) when the point's metrics are NaN."""
        point = self.classify(lmc, cka)
        if point == MISSING:
            return (MISSING,)
        side = self.side(lmc, lmc_interval)
        out = {point}
        if side in ("I", "unsettled"):
            out.add("I")
        if side in ("II", "unsettled"):  # the connected side is reached
            if _finite(cka):
                c_lo, c_hi = _bounds(cka, cka_interval)
                out.add("II-B" if cka >= self.cka_threshold else "II-A")
                if c_lo < self.cka_threshold:
                    out.add("II-A")
                if c_hi > self.cka_threshold:
                    out.add("II-B")
        return tuple(n for n in NAMES if n in out)

    def side(self, lmc: float, interval=(math.nan, math.nan)) -> str:
        """Which side of ε a mean LMC with its interval lies on: 'I' (below), 'II' (at or above:
        connected), 'unsettled' (the interval reaches both), MISSING (NaN). The LMC half of
        `candidates`, for the decisions that read LMC alone (Algorithms 1 and 2)."""
        if not _finite(lmc):
            return MISSING
        lo, hi = _bounds(lmc, interval)
        below = lo < self.lmc_epsilon
        above = hi > self.lmc_epsilon or lmc >= self.lmc_epsilon
        return "unsettled" if below and above else ("I" if below else "II")

    def near(self, name: str, lmc: float, cka: float, lmc_margin: float, cka_margin: float) -> tuple[str, ...]:
        """The regimes other than its own that a cell measured as `name` is within its margins of:
        `candidates` with the intervals lmc ± lmc_margin and cka ± cka_margin (open: a cell
        exactly a margin away is not near). Empty for margins of 0 and NaN metrics."""
        if name not in NAMES or not (_finite(lmc) and _finite(cka)):
            return ()
        box = self.candidates(lmc, cka, (lmc - lmc_margin, lmc + lmc_margin), (cka - cka_margin, cka + cka_margin))
        return tuple(n for n in box if n != name)


def _bounds(value: float, interval) -> tuple[float, float]:
    """(lo, hi) of an interval around `value`: NaN bounds unbounded, widened to hold the value."""
    lo, hi = interval
    lo = lo if _finite(lo) else -math.inf
    hi = hi if _finite(hi) else math.inf
    return min(lo, value), max(hi, value)


def candidates_text(names) -> str:
    """Candidates as one table cell: 'II-A' (settled) or 'I/II-A' (unsettled)."""
    return UNSETTLED_SEP.join(names)
