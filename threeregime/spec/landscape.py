"""What the loss-landscape measurement (LMC and CKA of a cell's copies) samples."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LandscapeSpec:
    """What landscape_metrics measures. Sample sizes count training images; 0 = all of them.

    The paper's code re-estimates BatchNorm and measures the training error on the whole
    training set at each of the 11 points. Fixed subsets make a pair cost about one training
    epoch instead of about seven (see README, "LMC on subsets" for the measured agreement).
    """

    points: int = 11           # interpolation points t in [0, 1], ends included
    bn_samples: int = 10000    # images for BatchNorm re-estimation at each point
    error_samples: int = 10000  # images the training error err(t) is measured on
    cka_samples: int = 6400    # images CKA is measured on

    def __post_init__(self):
        if self.points < 3:
            raise ValueError(f"landscape.points must be at least 3 (got {self.points})")
        for name in ("bn_samples", "error_samples", "cka_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"landscape.{name} must be >= 0 (0 = the whole training set)")

    @property
    def key(self) -> str:
        """Path segment, e.g. 'p11_bn10000_err10000_cka6400'."""
        return f"p{self.points}_bn{self.bn_samples}_err{self.error_samples}_cka{self.cka_samples}"

    def as_dict(self) -> dict:
        return dict(self.__dict__)
