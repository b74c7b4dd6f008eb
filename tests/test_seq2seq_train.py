"""The translation training loop (resume, segments, masks, divergence), the job-level functions
and the translation LMC/CKA, on a tiny Transformer and the toy corpus."""

import csv
import json
import math

import pytest
import torch

from threeregime.checkpoints import load_torch
from threeregime.engine import Engine
from threeregime.pipeline import prune_checkpoint
from threeregime.seq2seq import pipeline as s2s
from threeregime.seq2seq.landscape import gram_representation, translation_landscape
from threeregime.seq2seq.train import build_transformer, teacher_forced, train_translation
from threeregime.landscape import interpolate, linear_cka, lmc_barrier, training_subset
from threeregime.spec.corpus import CorpusSpec, vocabulary_path
from threeregime.spec.identity import DenseRun
from threeregime.spec.landscape import LandscapeSpec
from threeregime.spec.model import ModelSpec
from threeregime.spec.train import TrainSpec
from threeregime.training import DivergedError

CORPUS = CorpusSpec("toy", toy_train=240, toy_valid=24, vocab_size=90, max_len=24)
MODEL = ModelSpec("transformer", 1, 1 / 16, None, None)  # d_model 32
HP = TrainSpec(optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=32, epochs=3, milestones=(),
               schedule="inverse_sqrt", warmup=10, label_smoothing=0.1)
CPU = Engine()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocab")
    path = str(root / "sentencepiece.model")
    s2s.train_vocabulary_job(CORPUS, path, log=lambda *_: None)
    vocab, data = s2s.token_data(CORPUS, path, log=lambda *_: None)
    spec = MODEL.for_data(0, vocab.size)
    torch.manual_seed(0)
    return path, vocab, data, spec, build_transformer(spec, None, CPU).copy_state(0)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _histories_equal(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class _Killed(Exception):
    pass


def test_killed_training_resumes_bitwise(toy, tmp_path):
    _, vocab, data, spec, init = toy
    full, full_hist = train_translation(spec, init, 7, data, HP, CPU, vocab=vocab, log=lambda *_: None)
    resume = str(tmp_path / "resume.pt")

    def kill_in_epoch_2(line):
        if "epoch 2/3" in line:
            raise _Killed  # after epoch 2 is trained, before its state is written: epoch 1's stays
    with pytest.raises(_Killed):
        train_translation(spec, init, 7, data, HP, CPU, vocab=vocab, resume_path=resume, resume_meta={"m": 1},
                          log=kill_in_epoch_2)
    assert load_torch(resume)["epoch"] == 1
    lines = []
    again, hist = train_translation(spec, init, 7, data, HP, CPU, vocab=vocab, resume_path=resume,
                                    resume_meta={"m": 1}, log=lines.append)
    assert any("resumed from" in ln and "at epoch 1" in ln for ln in lines)
    assert _same(full, again) and _histories_equal(full_hist, hist)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert all(math.isnan(h["bleu"]) for h in hist[:2]) and math.isfinite(hist[2]["bleu"])
    assert hist[2]["bleu_signature"].startswith("nrefs:1|")
    # another seed: another data order and dropout
    other, _ = train_translation(spec, init, 8, data, HP, CPU, bleu=False, log=lambda *_: None)
    assert not _same(full, other)


def test_masked_weights_stay_exactly_zero(toy):
    _, vocab, data, spec, init = toy
    names = build_transformer(spec, None, CPU).prunable(("linear",))
    masks = {n: torch.rand(init[n].shape, generator=torch.Generator().manual_seed(1)) < 0.3 for n in names}
    start = {k: (v * masks[k] if k in masks else v) for k, v in init.items()}
    hp = TrainSpec(**{**HP.as_dict(), "epochs": 1, "weight_decay": 1e-2, "milestones": ()})
    out, _ = train_translation(spec, start, 1, data, hp, CPU, masks=masks, bleu=False, log=lambda *_: None)
    for n, m in masks.items():
        assert torch.all(out[n][~m] == 0) and torch.all(out[n][m] != start[n][m])


def test_divergence_raises_with_history(toy):
    _, vocab, data, spec, init = toy
    hp = TrainSpec(**{**HP.as_dict(), "lr": 1e30, "warmup": 1, "milestones": ()})
    with pytest.raises(DivergedError, match="training diverged: copy with seed 3") as e:
        train_translation(spec, init, 3, data, hp, CPU, bleu=False, log=lambda *_: None)
    assert not math.isfinite(e.value.history[-1]["train_loss"])


def test_dense_segments_prune_retrain_measure(toy, tmp_path):
    """The job chain: dense run in two segments (equal to one run), pruning by the image
    pipeline, retraining of two copies (log with a bleu column), landscape JSON."""
    vocab_path, vocab, data, spec, _ = toy
    run = DenseRun(CORPUS.identity, MODEL, TrainSpec(**{**HP.as_dict(), "epochs": 2, "milestones": ()}),
                   checkpoint_every=1)
    assert run.checkpoints() == ["epoch1", "epoch2"]
    d = tmp_path / "dense"
    for ckpt in run.checkpoints():
        prev = run.previous(ckpt)
        s2s.train_dense(CORPUS, vocab_path, run, 1, ckpt, str(d / f"{prev}.pt") if prev else None,
                        str(d / f"{ckpt}.pt"), str(d / f"{ckpt}.resume.pt"), CPU, log=lambda *_: None)
    seg = load_torch(str(d / "epoch2.pt"), expect={"kind": "dense", "run": run.key, "seed": 1, "ckpt": "epoch2"})
    assert set(seg) == {"meta", "spec", "hparams", "state_dict", "history", "train_state"}
    assert not (d / "epoch2.resume.pt").exists()
    one = tmp_path / "one"
    s2s.train_dense(CORPUS, vocab_path, DenseRun(run.data, run.model, run.train, checkpoint_every=2), 1, "epoch2",
                    None, str(one / "epoch2.pt"), str(one / "r.pt"), CPU, log=lambda *_: None)
    whole = load_torch(str(one / "epoch2.pt"))
    assert _same(seg["state_dict"], whole["state_dict"])
    assert [h["train_loss"] for h in seg["history"]] == [h["train_loss"] for h in whole["history"]]
    first = load_torch(str(d / "epoch1.pt"))
    assert math.isfinite(first["history"][0]["bleu"])  # each dense checkpoint has its BLEU

    cell = tmp_path / "cell"
    meta = {"kind": "pruned", "run": run.key}
    prune_checkpoint(str(d / "epoch2.pt"), str(cell / "pruned.pt"), 0.3, "uniform", expect={"ckpt": "epoch2"},
                     meta=meta, log=lambda *_: None, layers=("linear",))
    hp = TrainSpec(**{**HP.as_dict(), "epochs": 2, "milestones": ()})
    s2s.retrain_cell(str(cell / "pruned.pt"), str(cell / "r" / "retrained.pt"), str(cell / "r" / "retrain_log.csv"),
                     CORPUS, vocab_path, hp, [2, 1], CPU, str(cell / "r" / ".resume"),
                     meta={"kind": "retrained"}, expect=meta, log=lambda *_: None)
    ret = load_torch(str(cell / "r" / "retrained.pt"))
    assert set(ret) == {"meta", "spec", "mask", "copies"} and sorted(ret["copies"]) == [1, 2]
    for c in ret["copies"].values():
        assert c["diverged"] is None
        for n, m in ret["mask"].items():
            assert torch.all(c["state_dict"][n][~m] == 0)
    with open(cell / "r" / "retrain_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(s2s.TRANSLATION_LOG_COLUMNS)
    assert [(r["retrain_seed"], r["epoch"]) for r in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert [math.isnan(float(r["bleu"])) for r in rows] == [True, False, True, False]
    assert not (cell / "r" / ".resume").exists()

    what = LandscapeSpec(points=5, bn_samples=0, error_samples=50, cka_samples=300)
    res = s2s.measure_cell(str(cell / "r" / "retrained.pt"), str(cell / "r" / "landscape.json"), CORPUS, vocab_path,
                           CPU, what, meta={"kind": "landscape"}, expect={"kind": "retrained"}, log=lambda *_: None)
    on_disk = json.loads((cell / "r" / "landscape.json").read_text())
    assert on_disk["achieved_density"] == pytest.approx(0.3, abs=0.01) and on_disk["bn_estimate"] == "none"
    (pair,) = on_disk["pairs"]
    assert {"seed_a", "seed_b", "lmc", "cka", "cka_logit", "train_error_curve", "train_loss_curve"} <= set(pair)
    assert (pair["seed_a"], pair["seed_b"]) == (1, 2) and len(pair["train_error_curve"]) == 5
    assert on_disk["samples"]["cka"] == 300 and on_disk["samples"]["error_sentences"] == 50
    assert res["pairs"][0]["lmc"] == pair["lmc"] and 0 < pair["cka"] <= 1 + 1e-9


def test_landscape_of_identical_copies_and_of_a_known_barrier(toy):
    _, vocab, data, spec, init = toy
    trained, _ = train_translation(spec, init, 1, data, HP, CPU, bleu=False, log=lambda *_: None)
    what = LandscapeSpec(points=11, bn_samples=0, error_samples=60, cka_samples=200)
    same = translation_landscape(spec, {1: trained, 2: trained}, data, CPU, what)
    (p,) = same["pairs"]
    assert p["lmc"] == 0.0 and p["cka"] == pytest.approx(1.0, abs=1e-9) and p["cka_logit"] == pytest.approx(1.0)
    # copy 2: the last LayerNorm negated, so its logits are copy 1's negated. On the line its
    # gain and bias are (2t - 1) times copy 1's: at t = 1/2 all logits are 0 exactly and the
    # argmax is token 0 (padding), never a target: every token wrong, the largest gap.
    flipped = dict(trained)
    for k in ("decoder.0.norm3.weight", "decoder.0.norm3.bias"):
        flipped[k] = -trained[k]
    res = translation_landscape(spec, {1: trained, 2: flipped}, data, CPU, what)
    (p,) = res["pairs"]
    n = res["samples"]["error"]
    idx = training_subset(data.n_train, 60).tolist()
    wa = teacher_forced(build_transformer(spec, trained, CPU), data.train_src, data.train_tgt, CPU, 64, idx)[1]
    wb = teacher_forced(build_transformer(spec, flipped, CPU), data.train_src, data.train_tgt, CPU, 64, idx)[1]
    curve = p["train_error_curve"]
    assert curve[5] == 1.0 and curve[0] == wb / n and curve[10] == wa / n
    assert p["lmc"] == (wa + wb - 2 * n) / (2 * n)
    assert p["lmc"] == lmc_barrier(torch.tensor([round(c * n) for c in curve]).numpy(), n)
    mid = interpolate(trained, flipped, 0.5)
    assert torch.all(mid["decoder.0.norm3.weight"] == 0)


def test_gram_representation_keeps_linear_cka():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 50, generator=g, dtype=torch.float64), torch.randn(20, 70, generator=g, dtype=torch.float64)
    y = y + 0.5 * torch.cat([x, x[:, :20]], 1)
    rx, ry = gram_representation(x), gram_representation(y)
    assert rx.shape == (20, 20) and linear_cka(rx, ry) == pytest.approx(linear_cka(x, y), abs=1e-10)
    assert gram_representation(x[:, :10]) is not None and gram_representation(x[:, :10]).shape == (20, 10)


def test_vocabulary_path_is_where_the_job_writes(toy):
    assert vocabulary_path(CORPUS.identity).startswith(f"results/vocab/{CORPUS.identity.key()}/")


@pytest.mark.slow
def test_the_toy_corpus_is_learnable(tmp_path):
    """A tiny Transformer (2 + 2 layers, d_model 64) learns the toy pair on a CPU in about a
    minute: BLEU well above 0, and rising with the epochs (the demo's temperature axis)."""
    corpus = CorpusSpec("toy", toy_train=1000, toy_valid=200, vocab_size=160, max_len=40)
    path = str(tmp_path / "sentencepiece.model")
    s2s.train_vocabulary_job(corpus, path, log=lambda *_: None)
    vocab, data = s2s.token_data(corpus, path, log=lambda *_: None)
    spec = ModelSpec("transformer", 2, 0.125, None, None).for_data(0, vocab.size)
    torch.manual_seed(1)
    init = build_transformer(spec, None, CPU).copy_state(0)
    hp = TrainSpec(optimizer="adam", lr=5e-3, weight_decay=0.0, batch_size=32, epochs=10, milestones=(),
                   schedule="inverse_sqrt", warmup=60, label_smoothing=0.1)
    state = {}
    _, early = train_translation(spec, init, 1, data, hp, CPU, vocab=vocab, stop_epoch=3, state_out=state,
                                 log=lambda *_: None)
    _, late = train_translation(spec, init, 1, data, hp, CPU, vocab=vocab, start_state=state, log=lambda *_: None)
    assert early[-1]["bleu"] < 5 and late[-1]["bleu"] > 20, (early[-1]["bleu"], late[-1]["bleu"])
    assert late[-1]["test_error"] < early[-1]["test_error"] - 0.2
