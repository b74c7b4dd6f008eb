"""Unstructured magnitude pruning of the chosen weights (default: every convolution; the
classifier stays dense). Which weights: threeregime.models.FusedNetwork.prunable."""

from __future__ import annotations

import torch

from .spec.prune import METHODS


def _top_k_mask(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask keeping the k largest entries; ties go to the lower flat index."""
    flat = magnitude.flatten()
    # A stable descending sort keeps equal magnitudes in index order, so the result never
    # depends on the sorting kernel.
    order = torch.sort(flat, descending=True, stable=True).indices
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view_as(magnitude)


def magnitude_masks(weights: dict[str, torch.Tensor], density: float, method: str) -> dict[str, torch.Tensor]:
    """Masks that keep a `density` fraction of the given weights by |w|.

    uniform (UniformMP): round(density * n) weights in every layer.
    global (GlobalMP): round(density * N) weights over all layers together, one threshold.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    mags = {name: w.detach().abs().float().cpu() for name, w in weights.items()}
    if method == "uniform":
        return {name: _top_k_mask(m, int(round(density * m.numel()))) for name, m in mags.items()}
    if method == "global":
        names = list(mags)
        flat = torch.cat([mags[n].flatten() for n in names])
        keep = _top_k_mask(flat, int(round(density * flat.numel())))
        masks, start = {}, 0
        for n in names:
            size = mags[n].numel()
            masks[n] = keep[start:start + size].view_as(mags[n])
            start += size
        return masks
    raise ValueError(f"prune.method: unknown pruning method {method!r}; allowed: {list(METHODS)}")


def density_of(masks: dict[str, torch.Tensor]) -> float:
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    return kept / total


def layer_densities(masks: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per pruned weight: kept and total entries, and their ratio (the achieved density)."""
    return {name: {"kept": int(m.sum()), "total": m.numel(), "density": int(m.sum()) / m.numel()}
            for name, m in masks.items()}


def apply_masks(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for name, m in masks.items():
        out[name] = state[name] * m.to(state[name].dtype)
    return out
