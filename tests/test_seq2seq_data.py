"""The translation task's data: the toy corpus, WMT14 from a save_to_disk folder, the
sentencepiece vocabulary artifact and the token data (dropping and truncation)."""

import json

import pytest

from threeregime.seq2seq.corpus import ToyGrammar, load_corpus, subsample, toy_pairs, wmt14_folder
from threeregime.seq2seq.tokens import encode_corpus, epoch_batches
from threeregime.seq2seq.vocab import BOS, EOS, PAD, UNK, load_vocabulary, read_info, train_vocabulary
from threeregime.spec.common import ConfigError
from threeregime.spec.corpus import CorpusSpec
from threeregime.spec.data import DataError

GERMAN = ["das haus ist klein", "der hund schläft", "ich trinke kaffee", "wir gehen nach hause",
          "die katze ist schwarz", "es regnet heute", "er liest ein buch", "sie spielt klavier"]
ENGLISH = ["the house is small", "the dog sleeps", "i drink coffee", "we go home", "the cat is black",
           "it rains today", "he reads a book", "she plays the piano"]


def write_wmt14(root, config="de-en", train=None, valid=None):
    """A DatasetDict with WMT14's features in datasets' save_to_disk layout: the on-disk format."""
    import datasets

    src, tgt = config.split("-")
    features = datasets.Features({"translation": datasets.Translation(languages=[src, tgt])})
    train = list(zip(GERMAN, ENGLISH)) if train is None else train
    valid = list(zip(GERMAN[:3], ENGLISH[:3])) if valid is None else valid

    def split(pairs):
        return datasets.Dataset.from_dict({"translation": [{src: a, tgt: b} for a, b in pairs]}, features=features)

    folder = root / f"wmt14-{config}"
    datasets.DatasetDict({"train": split(train), "validation": split(valid), "test": split(valid)}).save_to_disk(
        str(folder))
    return folder


# --- toy corpus ---------------------------------------------------------------------------------------

def test_toy_corpus_is_deterministic_and_structured():
    a, b = toy_pairs(0, "train", 300), toy_pairs(0, "train", 300)
    assert a == b and toy_pairs(1, "train", 300) != a
    assert toy_pairs(0, "valid", 50) == toy_pairs(0, "valid", 50) != a[:50]
    # more training pairs extend the same stream; the validation set does not depend on them
    assert toy_pairs(0, "train", 500)[:300] == a
    grammar = ToyGrammar.of(0)
    verbs = {s: t for s, t in grammar.words["verb"]}
    for src, tgt in a:
        s, t = src.split(), tgt.split()
        assert 3 <= len(s) <= 12 and 3 <= len(t) <= 12
        # verb-final source, the verb's translation in the target (plural subject: suffix "en")
        assert s[-1] in verbs
        assert any(w in (verbs[s[-1]], verbs[s[-1]] + "en") for w in t)
        plural = s[0] in ("ko", "mo")
        assert (verbs[s[-1]] + "en" in t) == plural


def test_subsample_is_fixed_and_of_its_size():
    pairs = toy_pairs(0, "train", 100)
    sub = subsample(pairs, 30, seed=5)
    assert len(sub) == 30 and sub == subsample(pairs, 30, seed=5) and sub != subsample(pairs, 30, seed=6)
    positions = [pairs.index(p) for p in sub]
    assert positions == sorted(positions)  # corpus order kept
    assert subsample(pairs, 0, 0) == pairs


def test_toy_corpus_through_load_corpus():
    c = load_corpus(CorpusSpec("toy", toy_train=200, toy_valid=20, train_pairs=50, vocab_size=64, max_len=32))
    assert len(c.train) == 50 and len(c.valid) == 20 and (c.source, c.target) == ("src", "tgt")
    with pytest.raises(ConfigError, match="data.train_pairs: 300 is more than the 200 generated"):
        CorpusSpec("toy", toy_train=200, train_pairs=300, vocab_size=64, max_len=32)  # before any job


# --- WMT14 on disk ------------------------------------------------------------------------------------

def test_wmt14_loader_reads_save_to_disk_layout(tmp_path):
    write_wmt14(tmp_path)
    spec = CorpusSpec("wmt14", "de-en", root=str(tmp_path))
    c = load_corpus(spec)
    assert c.train == list(zip(GERMAN, ENGLISH)) and c.valid == list(zip(GERMAN[:3], ENGLISH[:3]))
    # the other direction of the same config: English source
    rev = load_corpus(CorpusSpec("wmt14", "en-de", root=str(tmp_path)))
    assert rev.train == list(zip(ENGLISH, GERMAN)) and (rev.source, rev.target) == ("en", "de")
    # a seeded subsample: fixed, of its size, in corpus order
    sub = load_corpus(CorpusSpec("wmt14", "de-en", train_pairs=5, subsample_seed=1, root=str(tmp_path))).train
    assert len(sub) == 5 and sub == subsample(list(zip(GERMAN, ENGLISH)), 5, 1)
    assert sub == load_corpus(CorpusSpec("wmt14", "de-en", train_pairs=5, subsample_seed=1, root=str(tmp_path))).train
    assert sub != load_corpus(CorpusSpec("wmt14", "de-en", train_pairs=5, subsample_seed=2, root=str(tmp_path))).train


def test_wmt14_missing_folder_names_download(tmp_path):
    spec = CorpusSpec("wmt14", "fr-en", root=str(tmp_path))
    with pytest.raises(DataError, match="data.download: true") as e:
        load_corpus(spec)
    assert wmt14_folder(spec) in str(e.value)


def test_wmt14_empty_corpus_and_too_many_pairs(tmp_path):
    write_wmt14(tmp_path, train=[("", "")] * 3)
    with pytest.raises(DataError, match="training set .* has no sentence pair with text on both sides"):
        load_corpus(CorpusSpec("wmt14", "de-en", root=str(tmp_path)))
    with pytest.raises(DataError, match="data.train_pairs 10 is more than the 3 training pairs"):
        load_corpus(CorpusSpec("wmt14", "de-en", train_pairs=10, root=str(tmp_path)))


# --- vocabulary ---------------------------------------------------------------------------------------

TOY = CorpusSpec("toy", toy_train=400, toy_valid=40, vocab_size=120, max_len=32)


def test_vocabulary_artifact(tmp_path):
    info = train_vocabulary(TOY, str(tmp_path / "a" / "sentencepiece.model"))
    train_vocabulary(TOY, str(tmp_path / "b" / "sentencepiece.model"))
    a, b = (tmp_path / d / "sentencepiece.model" for d in "ab")
    assert a.read_bytes() == b.read_bytes()  # the same corpus gives the same pieces
    assert not list(tmp_path.glob("**/*.tmp"))
    on_disk = json.loads((tmp_path / "a" / "vocab.json").read_text())
    assert on_disk == info == read_info(str(a))
    assert on_disk["identity"] == TOY.identity.as_dict() and on_disk["pieces"] == 120
    assert on_disk["sentencepiece"] == "0.2.3"
    vocab = load_vocabulary(str(a))
    assert vocab.size == 120
    assert [vocab.processor.id_to_piece(i) for i in (PAD, UNK, BOS, EOS)] == ["<pad>", "<unk>", "<s>", "</s>"]
    text = [s for s, _ in toy_pairs(0, "valid", 5)]
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text and all(PAD not in s and EOS not in s for s in ids)


def test_vocabulary_larger_than_the_corpus_names_the_largest_size(tmp_path):
    spec = CorpusSpec("toy", toy_train=20, toy_valid=5, vocab_size=5000, max_len=32)
    with pytest.raises(DataError, match=r"data.vocab_size 5000 is larger than this corpus supports: .* at most "
                                        r"(\d+) BPE pieces") as e:
        train_vocabulary(spec, str(tmp_path / "sentencepiece.model"))
    largest = int(str(e.value).split("at most ")[1].split(" ")[0])
    train_vocabulary(CorpusSpec("toy", toy_train=20, toy_valid=5, vocab_size=largest, max_len=32),
                     str(tmp_path / "ok.model"))  # the size it names works
    assert not (tmp_path / "sentencepiece.model").exists()


# --- token data ---------------------------------------------------------------------------------------

def test_long_training_pairs_dropped_validation_truncated(tmp_path):
    path = str(tmp_path / "sentencepiece.model")
    train_vocabulary(TOY, path)
    vocab = load_vocabulary(path)
    corpus = load_corpus(TOY)
    lines = []
    data = encode_corpus(corpus, vocab, 12, log=lines.append)
    src_len = [len(s) + 1 for s in vocab.encode([s for s, _ in corpus.train])]
    tgt_len = [len(t) + 2 for t in vocab.encode([t for _, t in corpus.train])]
    kept = sum(s <= 12 and t <= 12 for s, t in zip(src_len, tgt_len))
    assert data.n_train == kept and data.dropped == len(corpus.train) - kept > 0
    assert int(data.train_src.lengths.max()) <= 12 and int(data.train_tgt.lengths.max()) <= 12
    assert any(f"dropped {data.dropped} of {len(corpus.train)} training pairs" in ln for ln in lines)
    # validation: all pairs kept, truncated to 12 tokens, EOS last; references in full
    assert len(data.valid_src) == len(corpus.valid) and data.truncated > 0
    assert int(data.valid_src.lengths.max()) <= 12 and int(data.valid_tgt.lengths.max()) <= 12
    assert data.valid_refs == [t for _, t in corpus.valid]
    row = data.valid_tgt.batch([0])[0].tolist()
    assert row[0] == BOS and row[-1] == EOS
    with pytest.raises(DataError, match="longer than data.max_len 3"):
        encode_corpus(corpus, vocab, 3)


def test_epoch_batches_cover_the_epoch_once():
    import torch

    lengths = torch.randint(3, 30, (1000,), generator=torch.Generator().manual_seed(0))
    batches = epoch_batches(lengths, 7, torch.Generator().manual_seed(1))
    assert len(batches) == -(-1000 // 7)
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    again = epoch_batches(lengths, 7, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    full = epoch_batches(lengths, 7, torch.Generator().manual_seed(1), full_only=True)
    assert len(full) == 1000 // 7 and all(len(b) == 7 for b in full)
