"""What the loss-landscape measurement (LMC and CKA of a cell's copies) samples."""

from __future__ import annotations

from dataclasses import dataclass

from .common import fields_without_late_defaults

# BatchNorm re-estimation runs the network in train mode, where each BatchNorm normalizes its
# input by the statistics of the batch it is given: a deeper layer's input, and so the
# statistics estimated for it, depend on that batch size. Both estimates fix it at the paper
# code's 64 images (consecutive groups of the image set), whatever engine.eval_batch_size is.
BN_BATCH = 64

# How the per-batch moments become a layer's running statistics (landscape.bn_estimate):
BN_ESTIMATES = {
    "accurate": "the set's mean and unbiased variance of each BatchNorm's input, merged in float64 "
                "(the variance includes the spread between batches)",
    "upstream": "the paper code's cumulative average: the mean of the per-batch means and of the per-batch "
                "unbiased variances, weighted by batch size (torch's running-stat update with momentum "
                "b / (images so far + b))",
}


@dataclass(frozen=True)
class LandscapeSpec:
    """What landscape_metrics measures. Sample sizes count training images; 0 = all of them.

    The paper's code re-estimates BatchNorm and measures the training error on the whole
    training set at each of the 11 points. Fixed subsets make a pair cost about one training
    epoch instead of about seven (see README, "LMC on subsets" for the measured agreement).
    bn_estimate picks the BatchNorm estimate (BN_ESTIMATES); only a non-default one is part
    of the key, so the paths of the default stay as they were.
    """

    points: int = 11           # interpolation points t in [0, 1], ends included
    bn_samples: int = 10000    # images for BatchNorm re-estimation at each point
    error_samples: int = 10000  # images the training error err(t) is measured on
    cka_samples: int = 6400    # images CKA is measured on
    bn_estimate: str = "accurate"  # a key of BN_ESTIMATES

    def __post_init__(self):
        if self.points < 3:
            raise ValueError(f"landscape.points must be at least 3 (got {self.points})")
        for name in ("bn_samples", "error_samples", "cka_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"landscape.{name} must be >= 0 (0 = the whole training set)")
        if self.bn_estimate not in BN_ESTIMATES:
            raise ValueError(f"landscape.bn_estimate must be one of {', '.join(BN_ESTIMATES)} "
                             f"(got {self.bn_estimate!r})")

    @property
    def key(self) -> str:
        """Path segment, e.g. 'p11_bn10000_err10000_cka6400' ('..._bnupstream' with bn_estimate upstream)."""
        key = f"p{self.points}_bn{self.bn_samples}_err{self.error_samples}_cka{self.cka_samples}"
        if self.bn_estimate != LandscapeSpec.bn_estimate:
            key += f"_bn{self.bn_estimate}"
        return key

    def as_dict(self) -> dict:
        """The fields, bn_estimate only when not the default: the landscape rule's parameters,
        which Snakemake records, stay what they were before it existed (a changed record would
        rerun every finished landscape job)."""
        return fields_without_late_defaults(self, ("bn_estimate",))
