"""Parallel corpora as lists of (source, target) sentence pairs: the generated toy language pair
and WMT14 through Hugging Face `datasets`.

The toy pair (no download, deterministic from toy_seed) has the structure that makes
translation more than word lookup, so a small Transformer has something to learn:
  - a lexicon: each source noun, verb, adjective and adverb has one target word (made-up
    words of different syllable inventories on the two sides);
  - word order: the source is verb-final with adjectives after their noun
    ("det noun adj* [object] [with-phrase] [adverb] verb"); the target puts the verb second
    and adjectives before the noun ("det adj* noun verb [object] [with-phrase] [adverb]");
  - morphology and agreement: number is marked on the source determiner and noun (a prefix);
    the target marks it with a noun suffix and makes the verb agree with the subject's number,
    which the source verb does not show (a dependency across the sentence);
  - 3 to 12 words per sentence.
WMT14 comes from `datasets`' "wmt14" configs, kept under data.root in save_to_disk layout.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass

from ..spec.corpus import CorpusSpec, corpus_problem, wmt14_folder
from ..spec.data import DataError


@dataclass(frozen=True)
class ParallelCorpus:
    """Sentence pairs (source, target) of the training subsample and of the validation set."""

    train: list
    valid: list
    source: str
    target: str


# --- the toy language pair --------------------------------------------------------------------------

_SRC_SYLLABLES = [c + v for c in "bdgklmnprstvz" for v in "aeiou"]
_TGT_SYLLABLES = [c + v for c in "cfhjlmnqrswxy" for v in "aeiouy"]
TOY_LEXICON = {"noun": 24, "verb": 12, "adj": 12, "adv": 8}  # words per class: each seen often in a few thousand pairs
TOY_MIN_WORDS, TOY_MAX_WORDS = 3, 12


@dataclass(frozen=True)
class ToyGrammar:
    """The lexicon of one toy seed: class -> list of (source word, target word)."""

    words: dict

    @staticmethod
    def of(seed: int) -> "ToyGrammar":
        rng = random.Random(f"toy-lexicon-{seed}")
        used_src, used_tgt, words = set(), set(), {}
        for cls, count in TOY_LEXICON.items():
            pairs = []
            while len(pairs) < count:
                src = "".join(rng.choice(_SRC_SYLLABLES) for _ in range(rng.randint(2, 3)))
                tgt = "".join(rng.choice(_TGT_SYLLABLES) for _ in range(rng.randint(2, 3)))
                if src in used_src or tgt in used_tgt:
                    continue
                used_src.add(src)
                used_tgt.add(tgt)
                pairs.append((src, tgt))
            words[cls] = pairs
        return ToyGrammar(words)

    def _np(self, rng: random.Random, adjectives: int):
        """A noun phrase: (source words, target words, plural)."""
        plural = rng.random() < 0.5
        definite = rng.random() < 0.5
        noun = rng.choice(self.words["noun"])
        adjs = [rng.choice(self.words["adj"]) for _ in range(adjectives)]
        src_det = ("ko" if plural else "ka") if definite else ("mo" if plural else "ma")
        tgt_det = "thy" if definite else ("sum" if plural else "an")
        src = [src_det, ("ri" if plural else "") + noun[0]] + [a[0] for a in adjs]       # noun adj*
        tgt = [tgt_det] + [a[1] for a in adjs] + [noun[1] + ("ez" if plural else "")]   # adj* noun
        return src, tgt, plural

    def sentence(self, rng: random.Random) -> tuple[str, str]:
        while True:
            subj_src, subj_tgt, plural = self._np(rng, rng.choice((0, 0, 1, 2)))
            src, tgt_tail = list(subj_src), []
            if rng.random() < 0.7:  # an object
                o_src, o_tgt, _ = self._np(rng, rng.choice((0, 0, 1, 2)))
                src += o_src
                tgt_tail += o_tgt
            if rng.random() < 0.35:  # a with-phrase
                w_src, w_tgt, _ = self._np(rng, rng.choice((0, 1)))
                src += ["pe"] + w_src
                tgt_tail += ["wyth"] + w_tgt
            if rng.random() < 0.3:  # an adverb
                adv = rng.choice(self.words["adv"])
                src.append(adv[0])
                tgt_tail.append(adv[1])
            verb = rng.choice(self.words["verb"])
            src.append(verb[0])                                     # verb-final
            tgt = subj_tgt + [verb[1] + ("en" if plural else "")] + tgt_tail  # verb second, agrees
            if TOY_MIN_WORDS <= len(src) <= TOY_MAX_WORDS and TOY_MIN_WORDS <= len(tgt) <= TOY_MAX_WORDS:
                return " ".join(src), " ".join(tgt)


def toy_pairs(seed: int, split: str, count: int) -> list[tuple[str, str]]:
    """`count` sentence pairs of the toy language pair of `seed`; the splits draw from separate
    streams, so the validation set does not change with the number of training pairs."""
    grammar = ToyGrammar.of(seed)
    rng = random.Random(f"toy-{split}-{seed}")
    return [grammar.sentence(rng) for _ in range(count)]


# --- WMT14 ------------------------------------------------------------------------------------------

def download_wmt14(spec: CorpusSpec, log=print) -> str:
    """load_dataset("wmt14", <config>) into <root>/hf-cache and save_to_disk at wmt14_folder,
    atomically (a temp folder renamed), so a killed download leaves no folder that looks whole."""
    import datasets

    folder = wmt14_folder(spec)
    config = spec.identity.wmt14_config
    log(f"downloading WMT14 {config} with datasets {datasets.__version__} into {folder}")
    ds = datasets.load_dataset("wmt14", config, cache_dir=os.path.join(str(spec.root), "hf-cache"))
    os.makedirs(str(spec.root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".", suffix=".tmp", dir=str(spec.root))
    try:
        ds.save_to_disk(tmp)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _load_wmt14(spec: CorpusSpec, log) -> ParallelCorpus:
    import datasets
    import numpy as np

    folder = wmt14_folder(spec)
    problem = corpus_problem(spec)  # the folder is not there, and data.download is false
    if problem:
        raise DataError(problem)
    if not os.path.isdir(folder):
        download_wmt14(spec, log)
    try:
        ds = datasets.load_from_disk(folder)
    except Exception as e:  # datasets raises several types for a folder it cannot read
        raise DataError(f"{folder} is not a dataset saved by datasets' save_to_disk ({type(e).__name__}: {e}); "
                        f"delete it and rerun with data.download: true") from None
    for split in ("train", "validation"):
        if split not in ds:
            raise DataError(f"{folder} has no {split!r} split (it has {list(ds)}); WMT14 from datasets has "
                            f"train, validation (newstest2013) and test: delete it and download again")
    src, tgt = spec.identity.source, spec.identity.target
    feature = ds["train"].features.get("translation")
    langs = set(getattr(feature, "languages", None) or [])
    if langs and not {src, tgt} <= langs:
        raise DataError(f"{folder} holds languages {sorted(langs)}, not data.pair {spec.pair!r}")
    train = ds["train"]
    n = len(train)
    if spec.train_pairs:
        if spec.train_pairs > n:
            raise DataError(f"data.train_pairs {spec.train_pairs} is more than the {n} training pairs of "
                            f"{folder}: lower it, or 0 for all")
        idx = np.sort(np.random.default_rng(spec.subsample_seed).permutation(n)[:spec.train_pairs])
        train = train.select(idx)
    pairs = {name: [(t[src], t[tgt]) for t in split["translation"]]
             for name, split in (("train", train), ("valid", ds["validation"]))}
    return ParallelCorpus(pairs["train"], pairs["valid"], src, tgt)


def subsample(pairs: list, count: int, seed: int) -> list:
    """A fixed subsample of `count` pairs (0: all), in corpus order: numpy's Generator(seed)
    permutation of the indices, its first `count` sorted (the WMT14 subsample's rule)."""
    import numpy as np

    if not count:
        return list(pairs)
    idx = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:count])
    return [pairs[i] for i in idx]


def load_corpus(spec: CorpusSpec, log=print) -> ParallelCorpus:
    """The training subsample and the validation pairs of a corpus; an empty side is an error."""
    ident = spec.identity
    if ident.name == "toy":  # train_pairs <= toy_train: CorpusIdentity checks it
        train = subsample(toy_pairs(ident.toy_seed, "train", ident.toy_train), ident.train_pairs,
                          ident.subsample_seed)
        corpus = ParallelCorpus(train, toy_pairs(ident.toy_seed, "valid", ident.toy_valid), ident.source,
                                ident.target)
    else:
        corpus = _load_wmt14(spec, log)
    for name, pairs in (("training", corpus.train), ("validation", corpus.valid)):
        if not any(s.strip() and t.strip() for s, t in pairs):
            raise DataError(f"the {name} set of {ident.key()} has no sentence pair with text on both sides "
                            f"({len(pairs)} pairs): check the corpus under data.root {spec.root!r}")
    return corpus
