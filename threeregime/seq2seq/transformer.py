"""The encoder-decoder Transformer (Vaswani et al. 2017) on torch.nn, written out so that every
projection is an nn.Linear: prune.layers [linear] then chooses exactly the attention (q, k, v,
out) and feed-forward weights. The token embedding is shared by the encoder input, the decoder
input and the output projection (tied: F.linear with the embedding matrix), so it is not a
Linear and stays dense under prune.layers [linear] as the paper's setting asks.

Post-LN as in the paper (LayerNorm after each residual sum); it trains the toy corpus and
Transformer-base with the inverse square-root warm-up. Sinusoidal positions, embeddings scaled
by sqrt(d_model), dropout (default 0.1) on embeddings, attention weights and sublayer outputs.
One copy per network (FusedNetwork with copies == 1: copy_state, load_copies and prunable work
as for the image networks).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import FusedNetwork
from ..spec.model import ModelSpec, transformer_dims
from .vocab import PAD

DROPOUT = 0.1


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """Positional encodings [length, dim]: sin on even, cos on odd dimensions, wavelengths
    from 2 pi to 10000 * 2 pi (Vaswani et al. 2017, section 3.5)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class Attention(nn.Module):
    """Multi-head attention with separate q, k, v and output projections."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.out = (nn.Linear(d_model, d_model) for _ in range(4))
        for lin in (self.q, self.k, self.v, self.out):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [N, L, D] -> [N, H, L, D/H]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [N, T, D] attends to memory [N, S, D]; mask [N or 1, 1, T or 1, S] bool, True = may attend."""
        q, k, v = self._split(self.q(x)), self._split(self.k(memory)), self._split(self.v(memory))
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(h.transpose(1, 2).flatten(-2))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, ffn), nn.Linear(ffn, d_model)
        self.drop = nn.Dropout(dropout)
        for lin in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, d_model, heads, ffn, dropout):
        super().__init__()
        self.attn, self.ff = Attention(d_model, heads, dropout), FeedForward(d_model, ffn, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        x = self.norm1(x + self.drop(self.attn(x, x, mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class DecoderLayer(nn.Module):
    def __init__(self, d_model, heads, ffn, dropout):
        super().__init__()
        self.self_attn, self.cross_attn = Attention(d_model, heads, dropout), Attention(d_model, heads, dropout)
        self.ff = FeedForward(d_model, ffn, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, y, memory, self_mask, cross_mask):
        y = self.norm1(y + self.drop(self.self_attn(y, y, self_mask)))
        y = self.norm2(y + self.drop(self.cross_attn(y, memory, cross_mask)))
        return self.norm3(y + self.drop(self.ff(y)))


class Transformer(FusedNetwork):
    """spec.depth encoder and spec.depth decoder layers, transformer_dims(spec.width), a shared
    vocabulary of spec.num_classes pieces. forward(src [N, S], tgt_in [N, T]) -> logits [N, T, V]."""

    cuda_graphable = False
    MAX_POSITIONS = 1024

    def __init__(self, spec: ModelSpec, copies: int = 1, dropout: float = DROPOUT):
        if copies != 1:
            raise ValueError(f"the Transformer trains one copy per network (asked for {copies}); the translation "
                             f"loop trains a cell's copies one after another")
        super().__init__(spec, 1)
        d_model, ffn, heads = transformer_dims(spec.width)
        self.d_model = d_model
        self.embed = nn.Embedding(spec.num_classes, d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, 0.0, d_model ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.register_buffer("positions", sinusoids(self.MAX_POSITIONS, d_model), persistent=False)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn, dropout) for _ in range(spec.depth))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ffn, dropout) for _ in range(spec.depth))

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.MAX_POSITIONS:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than {self.MAX_POSITIONS} positions")
        x = self.embed(ids) * math.sqrt(self.d_model) + self.positions[:ids.shape[1]].to(self.embed.weight.dtype)
        return self.drop(x)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory [N, S, D], its attention mask [N, 1, 1, S]: True at non-pad source tokens)."""
        mask = (src != PAD)[:, None, None, :]
        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, mask)
        return x, mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Logits [N, T, V] of the next token at each position of tgt_in [N, T]. Padded positions
        (after EOS) only ever attend to earlier ones: the causal mask alone keeps real positions
        from seeing them."""
        t = tgt_in.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=tgt_in.device).tril()[None, None]
        y = self._embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, memory, causal, src_mask)
        return F.linear(y, self.embed.weight)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)


def build_transformer_copies(spec: ModelSpec, copies: int = 1) -> Transformer:
    """The ARCHITECTURES entry's builder: one Transformer (copies must be 1)."""
    return Transformer(spec, copies)
