"""The Transformer (masks, prunable weights, pruning through the image pipeline), decoding and BLEU."""

import math

import pytest
import torch

from threeregime.models import build_network
from threeregime.pipeline import prune_state
from threeregime.seq2seq.bleu import corpus_bleu
from threeregime.seq2seq.decode import beam, greedy, parse_method, translate
from threeregime.seq2seq.transformer import Transformer, sinusoids
from threeregime.seq2seq.vocab import BOS, EOS, PAD
from threeregime.spec.model import ModelSpec

SPEC = ModelSpec("transformer", 2, 1 / 16, None, None).for_data(0, 40)  # d_model 32, ffn 128


def model(seed=0):
    torch.manual_seed(seed)
    return build_network(SPEC, 1).eval()


def test_shapes_and_the_architecture_entry():
    m = model()
    assert isinstance(m, Transformer) and m.d_model == 32
    src = torch.randint(4, 40, (3, 7))
    tgt = torch.randint(4, 40, (3, 5))
    assert m(src, tgt).shape == (3, 5, 40)
    with pytest.raises(ValueError, match="one copy per network"):
        build_network(SPEC, 2)
    pe = sinusoids(10, 8)
    assert pe[0].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert pe[3, 0] == pytest.approx(math.sin(3)) and pe[3, 3] == pytest.approx(math.cos(3 / 10000 ** (2 / 8)))


def test_causal_and_padding_masks():
    m = model()
    src = torch.randint(4, 40, (2, 6))
    tgt = torch.randint(4, 40, (2, 8))
    out = m(src, tgt)
    changed = tgt.clone()
    changed[:, 5:] = torch.randint(4, 40, (2, 3))
    # positions before 5 see nothing of what follows them
    assert torch.allclose(m(src, changed)[:, :5], out[:, :5], atol=1e-6)
    assert not torch.allclose(m(src, changed)[:, 5:], out[:, 5:], atol=1e-3)
    # padding the source changes nothing
    padded = torch.cat([src, torch.full((2, 4), PAD)], 1)
    assert torch.allclose(m(padded, tgt), out, atol=1e-5)


def test_prunable_is_exactly_attention_and_feed_forward():
    m = model()
    names = set(m.prunable(("linear",)))
    expected = set()
    for stack, attns in (("encoder", ("attn",)), ("decoder", ("self_attn", "cross_attn"))):
        for i in range(2):
            expected |= {f"{stack}.{i}.{a}.{p}.weight" for a in attns for p in ("q", "k", "v", "out")}
            expected |= {f"{stack}.{i}.ff.fc1.weight", f"{stack}.{i}.ff.fc2.weight"}
    assert names == expected
    assert m.prunable(("conv",)) == {}
    assert set(m.prunable(("linear",), ("decoder.*",))) == {n for n in expected if n.startswith("encoder")}
    # the image pipeline's pruning works on its state dicts unchanged; the tied embedding stays dense
    state = m.copy_state(0)
    pruned, masks = prune_state(state, SPEC, 0.25, "uniform", ("linear",))
    assert set(masks) == expected
    for name, mask in masks.items():
        assert int(mask.sum()) == round(0.25 * mask.numel())
        assert torch.all(pruned[name][~mask] == 0) and torch.equal(pruned[name][mask], state[name][mask])
    assert torch.equal(pruned["embed.weight"], state["embed.weight"])


class _Vocab:
    def decode(self, ids):
        return [" ".join({4: "A", 5: "B"}.get(i, "?") for i in seq) for seq in ids]


class _Scripted(torch.nn.Module):
    """A model whose next-token distribution depends only on the last token: after BOS A 0.6,
    B 0.4; after A: EOS 0.35, A 0.33, B 0.32; after B: EOS 0.99."""

    A, B = 4, 5

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        table = torch.full((6, 6), 1e-9)
        table[BOS, self.A], table[BOS, self.B] = 0.6, 0.4
        table[self.A, EOS], table[self.A, self.A], table[self.A, self.B] = 0.35, 0.33, 0.32
        table[self.B, EOS] = 0.99
        table[EOS, EOS] = table[PAD, EOS] = 1.0
        self.table = table.log()

    def encode(self, src):
        return torch.zeros(src.shape[0], 1, 1), torch.ones(src.shape[0], 1, 1, 1, dtype=torch.bool)

    def decode(self, ys, memory, mask):
        return self.table[ys]  # [N, T, V]


def test_beam_finds_what_greedy_misses():
    m, src = _Scripted(), torch.zeros(2, 3, dtype=torch.long)
    assert greedy(m, src, 10) == [[4], [4]]            # A (p 0.6) then EOS: 0.21
    assert beam(m, src, 10, 2) == [[5], [5]]           # B then EOS: 0.396
    assert beam(m, src, 10, 1) == greedy(m, src, 10)
    assert translate(m, [src], _Vocab(), "beam2", 10) == ["B", "B"]
    assert parse_method("greedy") == 1 and parse_method("beam5") == 5
    with pytest.raises(ValueError, match="neither 'greedy' nor 'beam<k>'"):
        parse_method("beam0")


def test_greedy_equals_beam_one_on_a_transformer():
    m = model(3)
    src = torch.randint(4, 40, (4, 6))
    assert greedy(m, src, 9) == beam(m, src, 9, 1)
    assert all(len(s) <= 8 for s in greedy(m, src, 9))


def test_bleu_against_sacrebleu_and_by_hand():
    import sacrebleu

    hyps = ["the cat sat on the mat today", "the cat sat on the"]
    refs = ["the cat sat on the mat", "the cat sat on the mat"]
    score, signature = corpus_bleu(hyps, refs)
    assert score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-12)
    # by hand: clipped n-gram matches summed over the corpus, 1..4-grams; lengths 12 vs 12: no brevity penalty
    assert score == pytest.approx(100 * (11 / 12 * 9 / 10 * 7 / 8 * 5 / 6) ** 0.25, abs=1e-9)
    # one sentence 5 words against 6: all n-grams match, brevity penalty exp(1 - 6/5)
    assert corpus_bleu(hyps[1:], refs[1:])[0] == pytest.approx(100 * math.exp(1 - 6 / 5), abs=1e-9)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0")
    other = ["Das ist ein Test .", "Ein zweiter Satz, mit Komma!"]
    ref2 = ["Das ist ein kleiner Test.", "Ein zweiter Satz mit Komma!"]
    assert corpus_bleu(other, ref2)[0] == pytest.approx(sacrebleu.corpus_bleu(other, [ref2]).score, abs=1e-12)
