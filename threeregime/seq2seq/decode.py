"""Decoding a trained Transformer: batched greedy search (the default) and beam search.

method "greedy" or "beam<k>" (e.g. "beam4"). The encoder runs once per batch; the decoder is
rerun on the whole prefix at each step (no key/value cache: simple and exact, quadratic in the
output length, which the short sentences here afford). Beam search keeps k hypotheses per
sentence ranked by their summed log-probability; a hypothesis that produced EOS is finished
and carried on unchanged. At the end the best of the k is chosen by the length-normalized
score sum log p / length (fairseq's default length penalty, lenpen = 1), length counting the
EOS. Decoding stops at max_len target tokens (BOS and EOS included) or when all are finished.
"""

from __future__ import annotations

import re

import torch

from .vocab import BOS, EOS, PAD


def parse_method(method: str) -> int:
    """Beam size of a decode method: "greedy" -> 1, "beam<k>" -> k (k >= 1)."""
    if method == "greedy":
        return 1
    m = re.fullmatch(r"beam([1-9][0-9]*)", str(method))
    if not m:
        raise ValueError(f"decode: {method!r} is neither 'greedy' nor 'beam<k>' (e.g. 'beam4')")
    return int(m.group(1))


def _strip(seq: list[int]) -> list[int]:
    out = []
    for t in seq:
        if t == EOS:
            break
        if t not in (BOS, PAD):
            out.append(t)
    return out


@torch.no_grad()
def greedy(model, src: torch.Tensor, max_len: int) -> list[list[int]]:
    """Token ids (without BOS/EOS) of the greedy translation of each row of src [N, S]."""
    memory, mask = model.encode(src)
    n = src.shape[0]
    ys = torch.full((n, 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(n, dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        nxt = model.decode(ys, memory, mask)[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        ys = torch.cat([ys, nxt[:, None]], 1)
        done |= nxt == EOS
        if bool(done.all()):
            break
    return [_strip(row) for row in ys[:, 1:].tolist()]


@torch.no_grad()
def beam(model, src: torch.Tensor, max_len: int, k: int) -> list[list[int]]:
    """Token ids of the beam-search translation (beam k, length-normalized choice) of each row."""
    memory, mask = model.encode(src)
    n, dev = src.shape[0], src.device
    memory = memory.repeat_interleave(k, 0)
    mask = mask.repeat_interleave(k, 0)
    ys = torch.full((n * k, 1), BOS, dtype=torch.long, device=dev)
    scores = torch.full((n, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # one live hypothesis per sentence at the start
    done = torch.zeros(n * k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(n * k, device=dev)
    for _ in range(max_len - 1):
        logp = torch.log_softmax(model.decode(ys, memory, mask)[:, -1].float(), -1)  # [n*k, V]
        vocab = logp.shape[-1]
        # a finished hypothesis continues with PAD at no cost (and only with PAD)
        logp[done] = float("-inf")
        logp[done, PAD] = 0.0
        cand = (scores.view(n * k, 1) + logp).view(n, k * vocab)
        top, idx = cand.topk(k, dim=-1)                                  # [n, k]
        origin = (idx // vocab) + torch.arange(n, device=dev)[:, None] * k
        token = idx % vocab
        origin, token = origin.view(-1), token.view(-1)
        was_done = done[origin]
        ys = torch.cat([ys[origin], token[:, None]], 1)
        lengths = lengths[origin] + (~was_done).float()
        done = was_done | (token == EOS)
        scores = top
        if bool(done.all()):
            break
    normalized = (scores.view(-1) / lengths.clamp_min(1)).view(n, k)
    normalized[torch.isnan(normalized)] = float("-inf")
    best = normalized.argmax(-1) + torch.arange(n, device=dev) * k
    return [_strip(row) for row in ys[best, 1:].tolist()]


def translate(model, src_batches, vocab, method: str = "greedy", max_len: int = 256) -> list[str]:
    """Detokenized translations of every batch of source ids ([b, S] tensors, PAD-padded), in order."""
    k = parse_method(method)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for src in src_batches:
            src = src.to(device)
            ids = greedy(model, src, max_len) if k == 1 else beam(model, src, max_len, k)
            out += vocab.decode(ids)
    finally:
        model.train(was_training)
    return out
