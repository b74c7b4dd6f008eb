"""The inverse square-root learning-rate schedule (TrainSpec schedule "inverse_sqrt").

The function lives in the spec layer (threeregime.spec.train), where TrainSpec.lr_at_step
uses it without torch; this module is its name on the translation side. With n = step + 1
(the 1-based optimizer step): lr * n / warmup while n <= warmup (linear warm-up, the peak lr
at n == warmup), then lr * sqrt(warmup / n) - fairseq's inverse_sqrt with warmup_init_lr 0,
the first step taken at lr / warmup instead of 0.
"""

from ..spec.train import inverse_sqrt_lr

__all__ = ["inverse_sqrt_lr"]
