"""The three regimes: the thresholds, the names, the rule, and what "near a boundary" means.

Regime I: poorly connected, LMC < ε (strict: LMC = ε is connected, as in the paper's LMC ∈ [ε, 0]).
Connected cells: II-B if CKA ≥ the threshold (similar copies), II-A otherwise.
Every table, diagram, case study and the adaptive search classifies through `Regimes`.
Torch-free (the spec layer builds it from the config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NAMES = ("I", "II-A", "II-B")
MISSING = "missing"  # a metric is NaN: a diverged or constant copy, or a cell not computed
DEFAULT_LMC_EPSILON = -0.05
DEFAULT_CKA_THRESHOLD = 0.9


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

    def __post_init__(self):
        if not (_finite(self.lmc_epsilon) and self.lmc_epsilon <= 0):
            raise ValueError(f"regimes.lmc_epsilon must be <= 0 (Regime I is LMC < epsilon, a barrier), "
                             f"got {self.lmc_epsilon}")
        if not (_finite(self.cka_threshold) and 0 < self.cka_threshold <= 1):
            raise ValueError(f"regimes.cka_threshold must be in (0, 1], got {self.cka_threshold}")

    @staticmethod
    def from_dict(d: dict | None) -> "Regimes":
        d = d or {}
        return Regimes(float(d.get("lmc_epsilon", DEFAULT_LMC_EPSILON)),
                       float(d.get("cka_threshold", DEFAULT_CKA_THRESHOLD)))

    def as_dict(self) -> dict:
        return {"lmc_epsilon": self.lmc_epsilon, "cka_threshold": self.cka_threshold}

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

    def near(self, name: str, lmc: float, cka: float, lmc_margin: float, cka_margin: float) -> tuple[str, ...]:
        """The regimes other than its own that a cell measured as `name` is within its margins of:
        across the Regime-I boundary when |LMC − ε| < lmc_margin, across the II-A/II-B boundary
        when it is in Regime II and |CKA − threshold| < cka_margin. Empty for margins of 0 and
        NaN metrics."""
        if name not in NAMES or not (_finite(lmc) and _finite(cka)):
            return ()
        out = set()
        if abs(lmc - self.lmc_epsilon) < lmc_margin:  # across ε: Regime I, or the Regime II its CKA gives
            out.add(("II-B" if cka >= self.cka_threshold else "II-A") if name == "I" else "I")
        if name != "I" and abs(cka - self.cka_threshold) < cka_margin:
            out.add("II-A" if name == "II-B" else "II-B")
        return tuple(sorted(out))
