"""The joint subword vocabulary: sentencepiece BPE trained once on the training subsample
(source and target sentences together), an artifact keyed by the corpus identity
(spec.corpus.vocabulary_path). Ids are fixed: pad 0, unk 1, bos 2, eos 3."""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass

from ..atomic import save_bytes, save_json
from ..spec.corpus import CorpusSpec
from ..spec.data import DataError
from .corpus import ParallelCorpus, load_corpus

PAD, UNK, BOS, EOS = 0, 1, 2, 3
# The generated toy languages have a few dozen characters, all needed; WMT14's rare characters
# (0.05 % of the text) become <unk> as in sentencepiece's recommended setting for such corpora.
CHARACTER_COVERAGE = {"toy": 1.0, "wmt14": 0.9995}


def info_path(model_path: str) -> str:
    """The JSON written beside a vocabulary: identity, sentencepiece version, pieces."""
    return os.path.join(os.path.dirname(model_path), "vocab.json")


def train_sentencepiece(sentences: list[str], vocab_size: int, character_coverage: float = 1.0) -> bytes:
    """The serialized BPE model of `sentences` (in order; the same input gives the same bytes).

    sentencepiece's own limits become DataErrors naming data.vocab_size and the size that
    works: a vocabulary larger than the corpus has merges for, or smaller than its characters."""
    import sentencepiece as spm

    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=buf, vocab_size=int(vocab_size), model_type="bpe",
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, character_coverage=character_coverage,
            input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
    except RuntimeError as e:
        text = str(e)
        high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", text)
        if high:
            raise DataError(f"data.vocab_size {vocab_size} is larger than this corpus supports: its training "
                            f"subsample gives at most {high.group(2)} BPE pieces. Set data.vocab_size to at most "
                            f"{high.group(2)} (or train on more pairs: data.train_pairs)") from None
        low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", text)
        if low:
            raise DataError(f"data.vocab_size {vocab_size} is smaller than the corpus's {low.group(2)} characters "
                            f"and special pieces; set data.vocab_size to at least {low.group(2)}") from None
        raise
    return buf.getvalue()


def train_vocabulary(corpus_spec: CorpusSpec, out_path: str, log=print, corpus: ParallelCorpus | None = None) -> dict:
    """Train the corpus's vocabulary and write it to out_path (atomically) with vocab.json beside
    it; returns that JSON's content."""
    import sentencepiece as spm

    ident = corpus_spec.identity
    corpus = corpus or load_corpus(corpus_spec, log)
    sentences = [s for pair in corpus.train for s in pair if s.strip()]
    log(f"training a {ident.vocab_size}-piece BPE vocabulary on {len(corpus.train)} training pairs "
        f"({len(sentences)} sentences) of {ident.key()} with sentencepiece {spm.__version__}")
    model = train_sentencepiece(sentences, ident.vocab_size, CHARACTER_COVERAGE[ident.name])
    info = {"identity": ident.as_dict(), "key": ident.key(), "sentencepiece": spm.__version__,
            "pieces": ident.vocab_size, "model_type": "bpe", "training_sentences": len(sentences),
            "ids": {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS}}
    save_bytes(model, out_path)
    save_json(info, info_path(out_path))
    return info


@dataclass
class Vocabulary:
    """A trained vocabulary: text <-> ids (no BOS/EOS added; the token data adds them)."""

    processor: object
    path: str

    @property
    def size(self) -> int:
        return int(self.processor.get_piece_size())

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.processor.encode(list(texts), out_type=int)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return [self.processor.decode([int(i) for i in seq]) for seq in ids]

    def pieces(self, text: str) -> list[str]:
        return self.processor.encode(text, out_type=str)


def load_vocabulary(path: str) -> Vocabulary:
    import sentencepiece as spm

    if not os.path.exists(path):
        raise DataError(f"missing vocabulary {path}: rerun the workflow to rebuild it")
    processor = spm.SentencePieceProcessor(model_file=path)
    ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
    if ids != (PAD, UNK, BOS, EOS):
        raise DataError(f"vocabulary {path} has ids pad/unk/bos/eos {ids}, not {(PAD, UNK, BOS, EOS)}: it was not "
                        f"made by threeregime.seq2seq.vocab; delete it and rerun")
    return Vocabulary(processor, path)


def read_info(path: str) -> dict:
    with open(info_path(path)) as f:
        return json.load(f)
