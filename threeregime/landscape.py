"""Loss-landscape metrics of retrained copies: linear mode connectivity and CKA similarity."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .data import DeviceData
from .spec.landscape import LandscapeSpec
from .spec.model import ModelSpec
from .engine import Engine, build_model, evaluate, outputs, reestimate_bn

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def lmc_barrier(wrong, n: int) -> float:
    """LMC of an error curve along t in [0, 1], from the number of misclassified images
    wrong[i] out of n at each point: ½(err(0) + err(1)) − err(t*), err = wrong / n, with t* the
    point where |½(err(0) + err(1)) − err(t)| is largest.

    t* is chosen on the integer counts, |wrong(0) + wrong(1) − 2·wrong(t)|, so a tie is a tie
    exactly and goes by the rule, not by float rounding: the first such point in t order (from
    t = 0, seed_b's copy) wins. The two ends always tie (their gaps are ±(err(1) − err(0))/2),
    so on a curve whose largest gap is at the ends the rule gives (err(1) − err(0))/2; a bump
    and a dip of equal size inside go to the one at the smaller t.

    ≈ 0: connected; negative: a barrier (the path is worse than its ends).
    """
    c = np.asarray(wrong)
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"lmc_barrier takes integer error counts, got {c.dtype}")
    gap = int(c[0]) + int(c[-1]) - 2 * c.astype(np.int64)   # 2n x (mean of the ends - err(t)), exact
    star = int(np.argmax(np.abs(gap)))  # the first largest
    return float(gap[star]) / (2 * n)


def _error_counts(fractions: np.ndarray, n: int) -> np.ndarray:
    """Misclassified images from evaluate()'s error fractions over n images: exact as long as
    float32's 2^-24 relative rounding of wrong / n keeps wrong within 0.5 (n below 8 million)."""
    counts = np.rint(np.asarray(fractions, dtype=np.float64) * n)
    if np.abs(counts - np.asarray(fractions, dtype=np.float64) * n).max(initial=0.0) > 0.01:
        raise ValueError(f"error fractions {fractions} are not counts out of {n} images")
    return counts.astype(np.int64)


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of representations x [n, p] and y [n, q].

    HSIC with centred linear Gram matrices, computed in feature space:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).

    Undefined (NaN) when either representation is constant over the sample, e.g. a copy
    that collapsed to one prediction: its centred values are rounding noise.
    """
    x, y = x.double(), y.double()
    xc, yc = _centre(x), _centre(y)
    for raw, c in ((x, xc), (y, yc)):
        if float((c * c).sum()) <= 1e-20 * max(float((raw * raw).sum()), 1e-300):
            return float("nan")
    cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
    return float(cross / (torch.linalg.matrix_norm(xc.T @ xc) * torch.linalg.matrix_norm(yc.T @ yc)))


def interpolate(a: dict, b: dict, t: float) -> dict:
    """θ(t) = t·θ_a + (1−t)·θ_b for parameters; BatchNorm buffers reset (re-estimated later)."""
    out = {}
    for name, va in a.items():
        if name.endswith(BN_BUFFERS):
            out[name] = torch.ones_like(va) if name.endswith("running_var") else torch.zeros_like(va)
        else:
            out[name] = t * va + (1.0 - t) * b[name]
    return out


def training_subset(n_train: int, size: int, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of a fixed set of `size` training images, the same for every cell;
    all images when size is 0 or at least n_train.

    Sets of different sizes are prefixes of one permutation, so they are nested: the error
    subset lies inside the BatchNorm subset when it is smaller, and so on.
    """
    if size <= 0 or size >= n_train:
        return torch.arange(n_train)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_train, generator=g)[:size].sort().values


def _training_images(data: DeviceData, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of training_subset(size), without a copy when that is all of them."""
    idx = training_subset(data.n_train, size)
    if len(idx) == data.n_train:
        return data.x_train, data.y_train
    idx = idx.to(data.device)
    return data.x_train[idx], data.y_train[idx]


def landscape_metrics(spec: ModelSpec, states: dict[int, dict], data: DeviceData, engine: Engine,
                      what: LandscapeSpec = LandscapeSpec(), chunk: int = 0) -> dict:
    """LMC and CKA for every pair of retrained copies of one cell.

    The interpolated networks of all pairs (the shared endpoints once) are evaluated as
    grouped networks of `chunk` copies (0: as many as engine.nets_per_eval_pass allows on
    this device): BatchNorm re-estimation and the training error of many θ(t) cost one pass each
    over their subsets of the training set. BatchNorm is re-estimated as what.bn_estimate says
    (engine.reestimate_bn), in normalization batches of 64 images whatever the engine's batch
    size or layout, so the result does not depend on them beyond float rounding.
    The result records the estimate ("none" with bn_layers 0 for a network without BatchNorm).
    """
    points = what.points
    seeds = sorted(states)
    pairs = list(itertools.combinations(seeds, 2))
    ts = np.linspace(0.0, 1.0, points)
    # Unique networks: each copy once (t=0 / t=1 are copies themselves), then interior points.
    nets, index = [], {}
    for s in seeds:
        index[("copy", s)] = len(nets)
        nets.append(interpolate(states[s], states[s], 1.0))
    for a, b in pairs:
        for t in ts[1:-1]:
            index[(a, b, float(t))] = len(nets)
            nets.append(interpolate(states[a], states[b], float(t)))

    bn_x, _ = _training_images(data, what.bn_samples)
    err_x, err_y = _training_images(data, what.error_samples)
    n_err = int(err_x.shape[0])
    train_wrong = np.empty(len(nets), dtype=np.int64)
    train_loss = np.empty(len(nets))
    bn_layers = 0
    step = chunk or engine.nets_per_eval_pass(spec, tuple(data.x_train.shape[1:3]), len(nets))
    for lo in range(0, len(nets), step):
        model = build_model(spec, nets[lo:lo + step], engine)
        bn_layers = reestimate_bn(model, bn_x, data, engine, what.bn_estimate)
        res = evaluate(model, err_x, err_y, data, engine).cpu().numpy()
        train_loss[lo:lo + step], train_wrong[lo:lo + step] = res[:, 0], _error_counts(res[:, 1], n_err)
        del model

    # CKA on the copies as retrained (their own BatchNorm statistics), no augmentation.
    cka_x, _ = _training_images(data, what.cka_samples)
    model = build_model(spec, [states[s] for s in seeds], engine)
    logits = outputs(model, cka_x, data, engine).cpu()
    probs = torch.softmax(logits.double(), -1)

    result = {"ts": ts.tolist(), "samples": {"bn": int(bn_x.shape[0]), "error": n_err, "cka": int(cka_x.shape[0])},
              # the BatchNorm estimate used; none when the network has no BatchNorm (nothing re-estimated)
              "bn_estimate": what.bn_estimate if bn_layers else "none", "bn_layers": bn_layers, "pairs": []}
    for a, b in pairs:
        def at(t):
            if t == 0.0:
                return index[("copy", b)]
            if t == 1.0:
                return index[("copy", a)]
            return index[(a, b, float(t))]
        wrong = [int(train_wrong[at(float(t))]) for t in ts]
        errs = [w / n_err for w in wrong]
        losses = [float(train_loss[at(float(t))]) for t in ts]
        ia, ib = seeds.index(a), seeds.index(b)
        result["pairs"].append({
            "seed_a": a, "seed_b": b,
            "lmc": lmc_barrier(np.array(wrong), n_err),
            "cka": linear_cka(probs[ia], probs[ib]),
            "cka_logit": linear_cka(logits[ia], logits[ib]),
            "train_error_curve": errs,
            "train_loss_curve": losses,
        })
    return result
