"""The translation task's spec layer: TrainSpec's schedule fields, the corpus identity and its
keys, the Transformer architecture entry. Torch-free like the spec layer itself."""

import math
import subprocess
import sys

import pytest

from conftest import ROOT
from threeregime.spec.common import ConfigError
from threeregime.spec.corpus import CorpusIdentity, CorpusSpec, vocabulary_path, wmt14_pairs
from threeregime.spec.data import DataIdentity
from threeregime.spec.identity import DenseRun, RetrainSpec
from threeregime.spec.model import ModelSpec, transformer_dims
from threeregime.spec.train import TrainSpec, inverse_sqrt_lr


def test_existing_keys_are_unchanged_by_the_new_train_fields():
    """Keys computed on main before schedule/warmup/label_smoothing existed."""
    run = DenseRun(DataIdentity(), ModelSpec("preresnet", 20, 1.0, None, None), TrainSpec())
    assert run.key == "cifar10_preresnet20w1_sgd_bs64_e160-fd7c9811"
    retrain = RetrainSpec(TrainSpec(optimizer="adam", lr=1e-3, epochs=40, milestones=()))
    assert retrain.key == "adam_bs64_e40_x3-bed8db16"
    assert not {"schedule", "warmup", "label_smoothing"} & set(TrainSpec().as_dict())


def test_new_train_fields_enter_the_dict_and_round_trip():
    t = TrainSpec(optimizer="adam", lr=7e-4, epochs=10, milestones=(), schedule="inverse_sqrt", warmup=4000,
                  label_smoothing=0.1)
    d = t.as_dict()
    assert (d["schedule"], d["warmup"], d["label_smoothing"]) == ("inverse_sqrt", 4000, 0.1)
    assert TrainSpec.from_dict(d) == t
    base = TrainSpec(optimizer="adam", lr=7e-4, epochs=10, milestones=())
    assert RetrainSpec(t).key != RetrainSpec(base).key


def test_inverse_sqrt_values():
    t = TrainSpec(optimizer="adam", lr=1e-3, epochs=10, milestones=(), schedule="inverse_sqrt", warmup=4)
    # step n = global_step + 1: ramp n/4 up to the peak at n == 4, then sqrt(4/n)
    assert [t.lr_at_step(s, 100) for s in range(4)] == [0.25e-3, 0.5e-3, 0.75e-3, 1e-3]
    assert t.lr_at_step(15, 100) == pytest.approx(1e-3 * 0.5)       # n = 16: sqrt(4/16)
    assert t.lr_at_step(99, 100) == pytest.approx(1e-3 * 0.2)       # n = 100: sqrt(4/100)
    assert inverse_sqrt_lr(3999, 7e-4, 4000) == pytest.approx(7e-4)
    assert inverse_sqrt_lr(15999, 7e-4, 4000) == pytest.approx(3.5e-4)
    assert t.per_step and not TrainSpec().per_step
    with pytest.raises(ValueError, match="lr_at_step"):
        t.lr_at(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"schedule": "cosine"}, "schedule: unknown"),
    ({"schedule": "inverse_sqrt", "milestones": ()}, "warmup must be > 0"),
    ({"schedule": "inverse_sqrt", "warmup": 10}, "milestones .* are for schedule step"),
    ({"warmup": 10}, "warmup .* is for schedule inverse_sqrt"),
    ({"warmup": 2.5}, "warmup must be a whole number"),
    ({"label_smoothing": 1.0}, "label_smoothing must be a number in"),
    ({"label_smoothing": -0.1}, "label_smoothing must be a number in"),
    ({"label_smoothing": math.nan}, "label_smoothing must be a number in"),
])
def test_bad_schedule_fields_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainSpec(**kwargs)


def test_corpus_keys_have_no_underscore_and_name_what_made_them():
    wmt = CorpusIdentity("wmt14", "de-en", 1280000, 0, 32000, 256)
    assert wmt.key() == "wmt14deen-n1280000-v32000-l256"
    assert CorpusIdentity("wmt14", "en-de", 0, 3, 32000, 256).key() == "wmt14ende-nall-sub3-v32000-l256"
    toy = CorpusIdentity("toy", vocab_size=256, max_len=32)
    assert toy.key() == "toy-train4000-valid200-seed0-nall-v256-l32"
    for ident in (wmt, toy):
        assert "_" not in ident.key()
        assert CorpusIdentity.from_dict(ident.as_dict()) == ident
    assert "toy_train" not in wmt.as_dict() and toy.as_dict()["toy_train"] == 4000
    assert vocabulary_path(wmt) == "results/vocab/wmt14deen-n1280000-v32000-l256/sentencepiece.model"
    run = DenseRun(toy, ModelSpec("transformer", 2, 0.125, None, None),
                   TrainSpec(optimizer="adam", lr=1e-3, epochs=4, milestones=(), schedule="inverse_sqrt", warmup=50))
    assert DenseRun.data_key_of(run.key) == toy.key()


def test_corpus_spec_keeps_where_out_of_the_identity():
    a = CorpusSpec("wmt14", "de-en", 100, root="/data/a", download=True)
    b = CorpusSpec("wmt14", "de-en", 100, root="/elsewhere")
    assert a.identity == b.identity and a.identity.wmt14_config == "de-en"
    c = CorpusSpec("wmt14", "en-de", 5, root="/x").located(a.identity)
    assert c == CorpusSpec("wmt14", "de-en", 100, root="/x") and c.identity == a.identity
    assert CorpusIdentity("wmt14", "en-fr").wmt14_config == "fr-en"
    assert CorpusSpec("toy").pair == "src-tgt" and CorpusSpec().pair == "de-en"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "wmt15"}, "unknown corpus"),
    ({"pair": "de-fr"}, "WMT14 has no language pair 'de-fr'"),
    ({"name": "toy", "pair": "de-en"}, "toy corpus has the one pair"),
    ({"vocab_size": 10}, "vocab_size must be at least"),
    ({"max_len": 4}, "max_len must be at least 8"),
    ({"train_pairs": -1}, "train_pairs must be >= 0"),
    ({"train_pairs": 1.5}, "train_pairs must be a whole number"),
    ({"name": "toy", "toy_train": 0}, "toy_train and data.toy_valid"),
])
def test_bad_corpus_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CorpusIdentity(**kwargs)


def test_wmt14_pairs_both_directions():
    assert set(wmt14_pairs()) == {"cs-en", "en-cs", "de-en", "en-de", "fr-en", "en-fr", "hi-en", "en-hi",
                                  "ru-en", "en-ru"}


def test_transformer_architecture_entry():
    spec = ModelSpec("transformer", 6, 1.0, None, None)
    assert transformer_dims(1.0) == (512, 2048, 8) and transformer_dims(0.125) == (64, 256, 8)
    assert transformer_dims(0.01) == (8, 20, 8)  # at least one dimension per head
    assert spec.first_channels == 512 and spec.run_label == "transformer6w1"
    assert spec.for_data(0, 32000).complete
    with pytest.raises(ValueError, match="layers per stack"):
        ModelSpec("transformer", 0, 1.0, None, None)


def test_spec_layer_corpus_imports_no_heavy_module():
    code = ("import sys; import threeregime.spec.corpus, threeregime.spec.train, threeregime.spec.model; "
            "bad = [m for m in ('torch', 'numpy', 'datasets', 'sentencepiece', 'sacrebleu') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
