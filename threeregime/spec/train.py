"""A training recipe (optimizer, learning-rate schedule, batch size) and the optimizers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

from .common import ConfigError, fields_without_late_defaults, whole

Ref = Union[str, Callable]  # "module:attribute" (imported where it runs) or the object itself


@dataclass(frozen=True)
class OptimizerEntry:
    """An optimizer of TrainSpec.optimizer: `build(params, hp)` makes the torch optimizer over
    the fused model's parameters (it must act elementwise, so one optimizer over the stacked
    copies is K independent ones), `step` does one training step with the signature of
    training's train_step (gradients zero on entry; pruned weights must stay exactly zero).
    Both are "module:attribute" references, resolved by the engine (spec.common.resolve)."""

    build: Ref
    step: Ref
    description: str = ""
    graphable: bool = True  # its step can be captured in a CUDA graph (engine.cuda_graph)


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry("threeregime.steps:build_sgd", "threeregime.steps:train_step",
                          "SGD with momentum and L2 weight decay"),
    # Adam keeps its step count on the host (capturable=False, the default): eager on GPUs too.
    "adam": OptimizerEntry("threeregime.steps:build_adam", "threeregime.steps:train_step",
                           "Adam (default betas, eps), L2 weight decay; momentum unused", graphable=False),
    "sam": OptimizerEntry("threeregime.steps:build_sgd", "threeregime.steps:sam_step",
                          "SAM (per-copy ascent of size rho) around SGD"),
}


# The learning-rate schedules (TrainSpec.schedule).
SCHEDULES = {
    "step": "lr times gamma at each milestone (epochs, or steps with iterations > 0)",
    "inverse_sqrt": "linear warm-up over `warmup` optimizer steps to lr, then lr * sqrt(warmup / step) "
                    "(Vaswani et al. 2017, in fairseq's form: the peak lr is a config value)",
}
# Fields added after artifacts were made: left out of as_dict (so of every key and digest) at
# their default, so the runs made before them keep their keys.
_OMITTED_AT_DEFAULT = ("schedule", "warmup", "label_smoothing")


@dataclass(frozen=True)
class TrainSpec:
    """One training recipe: optimizer, learning-rate schedule and batch size.

    schedule "inverse_sqrt" (the Transformer's, translation): the lr of optimizer step n
    (1-based, counted over the whole run) is lr * min(n / warmup, sqrt(warmup / n)): a linear
    ramp that reaches lr at n == warmup, then the inverse square root. This is fairseq's
    inverse_sqrt with warmup_init_lr 0, except that its first step uses lr / warmup instead
    of 0 (a step with lr 0 would be wasted). Vaswani et al.'s d_model^-0.5 factor is folded
    into `lr`, so the peak is a config value. It changes the lr per step in both the epoch
    and the iteration form; milestones and gamma are unused (milestones must be empty).
    label_smoothing eps: the cross-entropy is taken against (1 - eps) one-hot + eps uniform
    over the classes (torch's F.cross_entropy label_smoothing; both tasks), 0 the plain loss.

    Two step schedules:
      iterations == 0: `epochs` epochs over the whole training set (the last, partial batch of
        each epoch included); `milestones` are epochs, the lr changes per epoch.
      iterations > 0: exactly `iterations` optimizer steps of full batches (the paper's
        batch-size temperature, Figure 7: 62,400 steps whatever the batch size). Each epoch
        drops its last partial batch, so it has floor(N / B) steps; the run lasts
        ceil(iterations / floor(N / B)) epochs, the last one possibly cut short; `milestones`
        are step indices and the lr changes per step. `epochs` is ignored.
    """

    optimizer: str = "sgd"          # a key of OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9           # sgd and sam; ignored by adam
    weight_decay: float = 1e-4      # L2 added to the gradient (all optimizers)
    batch_size: int = 64
    epochs: int = 160
    milestones: tuple[int, ...] = (80, 120)
    gamma: float = 0.1
    rho: float = 0.0                # SAM's neighbourhood size (optimizer sam; 0 = plain SGD)
    iterations: int = 0             # > 0: a fixed-iteration schedule (see above)
    schedule: str = "step"          # a key of SCHEDULES
    warmup: int = 0                 # inverse_sqrt: optimizer steps of the linear warm-up
    label_smoothing: float = 0.0    # the cross-entropy's label smoothing eps (0.1 for the Transformer)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; allowed: "
                             + ", ".join(repr(k) for k in OPTIMIZERS))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0 (0: the epoch schedule), got {self.iterations}")
        if not self.iterations and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not (self.rho >= 0):  # also refuses NaN
            raise ValueError(f"rho must be >= 0, got {self.rho}")
        self._check_schedule()
        unit, horizon = ("iterations", self.iterations) if self.iterations else ("epochs", self.epochs)
        ms = self.milestones
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"milestones must be increasing, got {list(ms)}")
        if ms and (ms[0] < 1 or ms[-1] >= horizon):
            raise ValueError(f"milestones are {unit} here and must lie in 1..{horizon - 1} "
                             f"({unit} = {horizon}), got {list(ms)}")

    def _check_schedule(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule: unknown learning-rate schedule {self.schedule!r}; allowed: "
                              + ", ".join(f"{k!r} ({v})" for k, v in SCHEDULES.items()))
        object.__setattr__(self, "warmup", whole(self.warmup, "warmup"))
        if self.warmup < 0:
            raise ConfigError(f"warmup must be a whole number of optimizer steps >= 0, got {self.warmup!r}")
        if self.schedule == "inverse_sqrt":
            if self.warmup < 1:
                raise ConfigError(f"warmup must be > 0 with schedule inverse_sqrt (the optimizer steps of the "
                                  f"linear warm-up, e.g. 4000 for Transformer-base), got {self.warmup}")
            if self.milestones:
                raise ConfigError(f"milestones {list(self.milestones)} are for schedule step; schedule "
                                  f"inverse_sqrt has none: set milestones: []")
        elif self.warmup:
            raise ConfigError(f"warmup ({self.warmup}) is for schedule inverse_sqrt; schedule {self.schedule!r} "
                              f"has no warm-up: remove warmup or set schedule: inverse_sqrt")
        ls = self.label_smoothing
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not (0 <= ls < 1):  # also refuses NaN
            raise ConfigError(f"label_smoothing must be a number in [0, 1) (0: plain cross-entropy; 0.1 is "
                              f"usual for the Transformer), got {ls!r}")

    @staticmethod
    def from_dict(d: dict) -> "TrainSpec":
        return TrainSpec(**{**d, "milestones": tuple(d.get("milestones", ()))})

    # --- schedule ------------------------------------------------------------------------

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps of a full epoch: ceil(N / B), or floor(N / B) for iteration schedules."""
        if self.iterations:
            steps = n_train // self.batch_size
            if steps == 0:
                raise ValueError(f"batch_size {self.batch_size} is larger than the training set ({n_train} images): "
                                 f"a fixed-iteration schedule drops each epoch's partial batch, so an epoch "
                                 f"would have no step")
            return steps
        return -(-n_train // self.batch_size)

    def total_epochs(self, n_train: int) -> int:
        """Epochs the run lasts (for iteration schedules the last one may be partial)."""
        if self.iterations:
            return -(-self.iterations // self.steps_per_epoch(n_train))
        return self.epochs

    def steps_in_epoch(self, epoch0: int, n_train: int) -> int:
        """Optimizer steps of 0-based epoch `epoch0`."""
        if not 0 <= epoch0 < self.total_epochs(n_train):
            raise ValueError(f"epoch {epoch0} (0-based) is outside the schedule's "
                             f"{self.total_epochs(n_train)} epochs")
        spe = self.steps_per_epoch(n_train)
        if self.iterations:
            return min(spe, self.iterations - epoch0 * spe)
        return spe

    def lr_at_step(self, global_step: int, n_train: int) -> float:
        """Learning rate of 0-based optimizer step `global_step` (counted over the whole run)."""
        if self.schedule == "inverse_sqrt":
            return inverse_sqrt_lr(global_step, self.lr, self.warmup)
        if self.iterations:
            return self.lr * self.gamma ** sum(global_step >= m for m in self.milestones)
        return self.lr_at(global_step // self.steps_per_epoch(n_train))

    @property
    def per_step(self) -> bool:
        """Whether the lr changes from one optimizer step to the next (not only per epoch)."""
        return bool(self.iterations) or self.schedule != "step"

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based epoch `epoch` of an epoch schedule (multiplied by gamma at
        each milestone); iteration schedules change the lr per step: use lr_at_step."""
        if self.per_step:
            raise ValueError("lr_at(epoch) is for step schedules counted in epochs; this one changes the lr "
                             "per optimizer step: use lr_at_step")
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def as_dict(self) -> dict:
        return {**fields_without_late_defaults(self, _OMITTED_AT_DEFAULT), "milestones": list(self.milestones)}


def inverse_sqrt_lr(global_step: int, lr: float, warmup: int) -> float:
    """The lr of 0-based optimizer step `global_step` under schedule inverse_sqrt: with
    n = global_step + 1, lr * n / warmup while n <= warmup, then lr * sqrt(warmup / n)."""
    n = int(global_step) + 1
    if n < 1 or warmup < 1:
        raise ValueError(f"inverse_sqrt_lr needs global_step >= 0 and warmup >= 1, got {global_step}, {warmup}")
    return lr * n / warmup if n <= warmup else lr * math.sqrt(warmup / n)
