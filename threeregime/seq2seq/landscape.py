"""LMC and CKA of a translation cell's retrained copies.

LMC: the barrier (threeregime.landscape.lmc_barrier, its integer-count tie rule included) of
the teacher-forced TOKEN ERROR along the straight line θ(t) = t·θ_a + (1−t)·θ_b, measured on
a fixed subsample of `error_samples` training sentence pairs (landscape.training_subset, the
image path's subset rule): err(t) = wrong target tokens / non-pad target tokens of those
pairs. The Transformer has LayerNorm only, which normalizes each token by its own statistics:
nothing is re-estimated at θ(t) (the JSON says bn_estimate "none", bn_layers 0).

CKA: linear CKA (threeregime.landscape.linear_cka) of the two copies' output distributions,
softmax over the vocabulary ("cka"), and of their logits ("cka_logit"), as the image path
does, at a fixed sample of `cka_samples` target token positions: drawn (seeded) from the
non-pad target positions of the first `cka_samples` pairs of the fixed training subset,
teacher-forced, eval mode. Probabilities are what the copies predict and compare like the
image path's class probabilities; the logits of a large vocabulary are dominated by the
thousands of pieces neither copy predicts, so they are kept as the secondary number.
A vocabulary larger than the sample (32,000 pieces, 6,400 positions) is first reduced to an
n-dimensional representation with the same centred Gram matrix (linear CKA depends on the
representations only through it), so linear_cka never forms a vocabulary x vocabulary matrix.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..engine import Engine
from ..landscape import interpolate, linear_cka, lmc_barrier, training_subset
from ..spec.landscape import LandscapeSpec
from ..spec.model import ModelSpec
from .tokens import TokenData
from .train import build_transformer, teacher_forced
from .vocab import PAD

CKA_POSITION_SEED = 0


def gram_representation(x: torch.Tensor) -> torch.Tensor:
    """x [n, p] -> r [n, min(n, p)] with the same centred Gram matrix (so the same linear CKA
    against anything): x itself when p <= n, else U·sqrt(Λ) of the centred Gram's eigenpairs."""
    x = x.double()
    n, p = x.shape
    if p <= n:
        return x
    xc = x - x.mean(0, keepdim=True)
    vals, vecs = torch.linalg.eigh(xc @ xc.T)
    return vecs * vals.clamp_min(0).sqrt()


def cka_positions(data: TokenData, samples: int) -> tuple[list[int], torch.Tensor]:
    """(sentence indices, flat positions into their teacher-forced targets [S, T-1] row-major):
    `samples` non-pad target positions of the first `samples` pairs of the fixed training
    subset (all of them when fewer)."""
    sentences = training_subset(data.n_train, samples).tolist() if samples else list(range(data.n_train))
    tgt = data.train_tgt.batch(sentences)[:, 1:]
    real = (tgt != PAD).flatten().nonzero().flatten()
    if samples and samples < len(real):
        g = torch.Generator().manual_seed(CKA_POSITION_SEED)
        real = real[torch.randperm(len(real), generator=g)[:samples].sort().values]
    return sentences, real


@torch.no_grad()
def output_logits(model, data: TokenData, sentences: list[int], positions: torch.Tensor, engine: Engine,
                  batch_size: int) -> torch.Tensor:
    """Teacher-forced logits [len(positions), V] at the given flat target positions."""
    model.eval()
    width = int(data.train_tgt.batch(sentences).shape[1]) - 1
    row, col = positions // width, positions % width
    parts = []
    for lo in range(0, len(sentences), batch_size):
        b = sentences[lo:lo + batch_size]
        here = (row >= lo) & (row < lo + len(b))
        if not bool(here.any()):
            continue
        src, tgt = data.train_src.batch(b).to(engine.device), data.train_tgt.batch(b).to(engine.device)
        with engine.autocast():
            logits = model(src, tgt[:, :-1]).float()
        parts.append(logits[(row[here] - lo).to(engine.device), col[here].to(engine.device)].cpu())
    return torch.cat(parts, 0)


def translation_landscape(spec: ModelSpec, states: dict[int, dict], data: TokenData, engine: Engine,
                          what: LandscapeSpec = LandscapeSpec(), batch_size: int = 0) -> dict:
    """LMC and CKA of every pair of copies (the image path's JSON shape, see module docstring)."""
    bs = batch_size or max(1, min(engine.eval_batch_size, 256))
    seeds = sorted(states)
    pairs = list(itertools.combinations(seeds, 2))
    ts = np.linspace(0.0, 1.0, what.points)
    err_idx = training_subset(data.n_train, what.error_samples).tolist()

    def measure(state):
        model = build_transformer(spec, state, engine)
        return teacher_forced(model, data.train_src, data.train_tgt, engine, bs, err_idx)

    ends = {s: measure(states[s]) for s in seeds}
    n_tokens = ends[seeds[0]][2]

    sentences, positions = cka_positions(data, what.cka_samples)
    probs, logits = {}, {}
    for s in seeds:
        out = output_logits(build_transformer(spec, states[s], engine), data, sentences, positions, engine, bs)
        probs[s] = gram_representation(torch.softmax(out.double(), -1))
        logits[s] = gram_representation(out)

    result = {"ts": ts.tolist(),
              "samples": {"bn": 0, "error": n_tokens, "error_sentences": len(err_idx), "cka": int(len(positions))},
              "bn_estimate": "none", "bn_layers": 0, "pairs": []}
    for a, b in pairs:
        curve = []
        for t in ts:
            t = float(t)
            curve.append(ends[b] if t == 0.0 else ends[a] if t == 1.0
                         else measure(interpolate(states[a], states[b], t)))
        wrong = np.array([c[1] for c in curve], dtype=np.int64)
        result["pairs"].append({
            "seed_a": a, "seed_b": b,
            "lmc": lmc_barrier(wrong, n_tokens),
            "cka": linear_cka(probs[a], probs[b]),
            "cka_logit": linear_cka(logits[a], logits[b]),
            "train_error_curve": [int(w) / n_tokens for w in wrong],
            "train_loss_curve": [c[0] / c[2] for c in curve],
        })
    return result
