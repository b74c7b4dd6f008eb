"""A corpus as token ids, encoded once per job, and the batches training and evaluation take.

Sides: the source is its pieces then EOS; the target is BOS, its pieces, EOS (the decoder
reads target[:-1] and predicts target[1:]). `max_len` counts a side's tokens with these.
  - training pairs whose source or target is longer than max_len are DROPPED (their count
    is logged; an error if none is left), as are pairs with an empty side;
  - validation pairs are kept, TRUNCATED to max_len per side (the count is logged): the
    decoder's input keeps its first max_len - 1 pieces and EOS, the teacher-forced target its
    first max_len - 2 pieces; BLEU is still scored against the full reference text.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ..spec.data import DataError
from .corpus import ParallelCorpus
from .vocab import BOS, EOS, PAD, Vocabulary

BUCKET_BATCHES = 64  # batches whose sentences are sorted by length together (less padding)


@dataclass
class Sentences:
    """Token-id sentences, concatenated: `flat` [total] and `offsets` [n + 1]."""

    flat: torch.Tensor
    offsets: torch.Tensor

    @staticmethod
    def of(seqs: list[list[int]]) -> "Sentences":
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int64)
        offsets = torch.zeros(len(seqs) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(lengths, 0)
        flat = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.int32)
        return Sentences(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def batch(self, idx) -> torch.Tensor:
        """Sentences idx, padded with PAD to the longest: [b, L] int64."""
        idx = [int(i) for i in idx]
        lengths = [int(self.offsets[i + 1] - self.offsets[i]) for i in idx]
        out = torch.full((len(idx), max(lengths)), PAD, dtype=torch.int64)
        for row, (i, n) in enumerate(zip(idx, lengths)):
            out[row, :n] = self.flat[self.offsets[i]:self.offsets[i] + n]
        return out


@dataclass
class TokenData:
    """The encoded corpus: training pairs (long ones dropped), validation pairs (truncated) and
    the validation references as text (for BLEU)."""

    train_src: Sentences
    train_tgt: Sentences
    valid_src: Sentences
    valid_tgt: Sentences
    valid_refs: list[str]
    vocab_size: int
    max_len: int
    dropped: int = 0
    truncated: int = 0

    @property
    def n_train(self) -> int:
        return len(self.train_src)


def encode_corpus(corpus: ParallelCorpus, vocab: Vocabulary, max_len: int, log=print) -> TokenData:
    src_ids, tgt_ids = vocab.encode([s for s, _ in corpus.train]), vocab.encode([t for _, t in corpus.train])
    keep = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids))
            if s and t and len(s) + 1 <= max_len and len(t) + 2 <= max_len]
    dropped = len(src_ids) - len(keep)
    if not keep:
        raise DataError(f"every one of the {len(src_ids)} training pairs is longer than data.max_len {max_len} "
                        f"tokens on a side (or empty): raise data.max_len")
    if dropped:
        log(f"dropped {dropped} of {len(src_ids)} training pairs ({100 * dropped / len(src_ids):.2f} %) longer "
            f"than data.max_len {max_len} tokens per side (BOS/EOS included) or with an empty side")
    vsrc, vtgt = vocab.encode([s for s, _ in corpus.valid]), vocab.encode([t for _, t in corpus.valid])
    truncated = sum(len(s) + 1 > max_len or len(t) + 2 > max_len for s, t in zip(vsrc, vtgt))
    if truncated:
        log(f"truncated {truncated} of {len(vsrc)} validation pairs to data.max_len {max_len} tokens per side "
            f"(decoder input and teacher-forced target; BLEU is scored against the full references)")
    return TokenData(
        Sentences.of([src_ids[i] + [EOS] for i in keep]),
        Sentences.of([[BOS] + tgt_ids[i] + [EOS] for i in keep]),
        Sentences.of([s[:max_len - 1] + [EOS] for s in vsrc]),
        Sentences.of([[BOS] + t[:max_len - 2] + [EOS] for t in vtgt]),
        [t for _, t in corpus.valid], vocab.size, max_len, dropped, truncated)


def epoch_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, full_only: bool = False) -> list:
    """One epoch's batches (index tensors) in training order, drawn with `gen`: a random
    permutation cut into groups of BUCKET_BATCHES batches, each group sorted by length (stably)
    and cut into batches of batch_size (so batches hold sentences of similar length), then
    all batches in a random order. ceil(N / B) batches, the last group's last one partial;
    full_only (fixed-iteration schedules) leaves the partial one out: floor(N / B)."""
    n = len(lengths)
    perm = torch.randperm(n, generator=gen)
    group = batch_size * BUCKET_BATCHES
    batches = []
    for lo in range(0, n, group):
        idx = perm[lo:lo + group]
        idx = idx[torch.sort(lengths[idx], stable=True).indices]
        batches += [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    if full_only and batches and len(batches[-1]) < batch_size:
        batches.pop()
    order = torch.randperm(len(batches), generator=gen)
    return [batches[int(i)] for i in order]
