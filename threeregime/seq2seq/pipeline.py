"""The translation task's job-level functions, with the file contracts of threeregime.pipeline:

  train_vocabulary_job  results/vocab/<corpus>/sentencepiece.model (+ vocab.json)
  train_dense           one segment of a dense run: checkpoint {meta, spec, hparams, state_dict,
                        history, train_state}, each segment continuing the previous exactly
  retrain_cell          retrained.pt {meta, spec, mask, copies: {seed: {state_dict, history,
                        diverged}}} and retrain_log.csv (LOG_COLUMNS + bleu)
  measure_cell          landscape JSON {ts, samples, bn_estimate, bn_layers, pairs, meta,
                        achieved_density}
Pruning needs nothing of its own: threeregime.pipeline.prune_checkpoint builds the Transformer
from the checkpoint's ModelSpec and asks its `prunable`.

`decode` ("greedy" or "beam<k>") says how BLEU decodes the validation set; BLEU is computed at
the last epoch of each job (each dense checkpoint, each retrained copy) and NaN elsewhere.
"""

from __future__ import annotations

import os


from ..checkpoints import load_torch, save_torch
from ..engine import Engine
from ..pipeline import (LOG_COLUMNS, diverged_landscape, save_landscape, save_retrained, save_segment,
                        segment_start)
from ..pruning import density_of
from ..spec.corpus import CorpusSpec
from ..spec.data import DataError
from ..spec.landscape import LandscapeSpec
from ..spec.model import ModelSpec
from ..spec.train import TrainSpec
from ..training import DivergedError
from .corpus import load_corpus
from .landscape import translation_landscape
from .tokens import TokenData, encode_corpus
from .train import build_transformer, train_translation
from .vocab import load_vocabulary, train_vocabulary

TRANSLATION_LOG_COLUMNS = LOG_COLUMNS + ("bleu",)
_TOKENS: dict = {}  # (corpus identity, vocabulary path) -> (vocabulary, TokenData): encoded once per job


def train_vocabulary_job(corpus_spec: CorpusSpec, out_path: str, log=print) -> dict:
    """The vocabulary artifact of a corpus (a vocab_size the corpus cannot give is a DataError
    naming data.vocab_size and the largest size that works)."""
    return train_vocabulary(corpus_spec, out_path, log)


def token_data(corpus_spec: CorpusSpec, vocab_path: str, log=print):
    """(vocabulary, TokenData) of a corpus, encoded once per process."""
    key = (corpus_spec.identity, os.path.abspath(vocab_path), os.path.getmtime(vocab_path))
    if key not in _TOKENS:
        vocab = load_vocabulary(vocab_path)
        if vocab.size != corpus_spec.vocab_size:
            raise DataError(f"vocabulary {vocab_path} has {vocab.size} pieces, data.vocab_size says "
                            f"{corpus_spec.vocab_size}: delete it and rerun to rebuild it")
        _TOKENS.clear()
        _TOKENS[key] = (vocab, encode_corpus(load_corpus(corpus_spec, log), vocab, corpus_spec.max_len, log))
    return _TOKENS[key]


def _spec_of(ckpt: dict) -> ModelSpec:
    return ModelSpec(**ckpt["spec"])


def train_dense(corpus_spec: CorpusSpec, vocab_path: str, run, seed: int, ckpt: str, previous: str | None,
                out_path: str, resume_path: str, engine: Engine, log=print, decode: str = "greedy") -> None:
    """One segment of a dense translation run (a DenseRun whose data is a CorpusIdentity): from
    checkpoint `previous` (or the seed's initialisation) to `ckpt` ('epoch<e>' or 'final'), with
    BLEU at its last epoch. Segments continue each other bitwise (on CPU); a killed segment
    resumes from resume_path."""
    vocab, data = token_data(corpus_spec, vocab_path, log)
    spec = run.model.for_data(0, vocab.size)
    meta, stop, init, start_state = segment_start(run, seed, ckpt, previous, data.n_train,
                                                  lambda: build_transformer(spec, None, engine).copy_state(0))
    log(f"dense translation training seed {seed} to {ckpt} (from {previous or 'initialisation'}): {spec.key}, "
        f"{run.train}, {data.n_train} pairs, {engine.describe()}")
    state: dict = {}
    weights, history = train_translation(
        spec, init, seed, data, run.train, engine, vocab=vocab, resume_path=resume_path,
        resume_meta={**meta, "ckpt": ckpt, "run_spec": run.as_dict()}, start_state=start_state, stop_epoch=stop,
        state_out=state, decode=decode, log=log)
    save_segment(meta, ckpt, stop, spec, run, weights, history, state, out_path, resume_path)


def retrain_cell(pruned_path: str, out_path: str, log_path: str, corpus_spec: CorpusSpec, vocab_path: str,
                 hp: TrainSpec, seeds: list[int], engine: Engine, resume_dir: str, meta: dict, expect: dict,
                 log=print, on_divergence: str = "fail", decode: str = "greedy") -> None:
    """Retrain copies of one pruned Transformer, one per seed (data order and dropout), one after
    another, all from the same pruned weights and keeping its mask. Each finished copy is kept
    in resume_dir (and a running one's per-epoch state) until all are done."""
    ckpt = load_torch(pruned_path, expect=expect)
    spec, masks = _spec_of(ckpt), ckpt["mask"]
    vocab, data = token_data(corpus_spec, vocab_path, log)
    seeds = sorted(int(s) for s in seeds)
    os.makedirs(resume_dir, exist_ok=True)
    log(f"retraining {len(seeds)} copies of {pruned_path} one after another, {hp}, {engine.describe()}")
    job_meta = {**meta, "train": hp.as_dict(), "seeds": seeds}
    for s in seeds:
        done = os.path.join(resume_dir, f"seed{s}.pt")
        if os.path.exists(done):
            continue
        diverged = None
        try:
            weights, history = train_translation(
                spec, ckpt["state_dict"], s, data, hp, engine, vocab=vocab, masks=masks,
                resume_path=os.path.join(resume_dir, f"training{s}.pt"), resume_meta={**job_meta, "retrain_seed": s},
                decode=decode, log=log)
        except DivergedError as e:
            if on_divergence != "record":
                raise
            log(f"recording the cell as diverged: {e}")
            diverged, history, weights = str(e), e.history, ckpt["state_dict"]
        save_torch({"meta": {**job_meta, "retrain_seed": s}, "state_dict": weights, "history": history,
                    "diverged": diverged}, done)
    save_retrained(resume_dir, seeds, job_meta, meta, hp, ckpt["spec"], masks, out_path, log_path,
                   TRANSLATION_LOG_COLUMNS)


def measure_cell(retrained_path: str, out_path: str, corpus_spec: CorpusSpec, vocab_path: str, engine: Engine,
                 what: LandscapeSpec, meta: dict, expect: dict, log=print) -> dict:
    """LMC (token error) and CKA (output distributions) of a cell's retrained copies."""
    ckpt = load_torch(retrained_path, expect=expect)
    spec, copies = _spec_of(ckpt), ckpt["copies"]
    seeds = sorted(copies)
    achieved = density_of(ckpt["mask"])
    diverged = diverged_landscape(copies, meta, achieved, out_path, log)
    if diverged is not None:
        return diverged
    _, data = token_data(corpus_spec, vocab_path, log)
    log(f"translation landscape metrics of {len(seeds)} copies: {what}, {engine.describe()}")
    res = translation_landscape(spec, {s: copies[s]["state_dict"] for s in seeds}, data, engine, what)
    return save_landscape(res, meta, achieved, out_path, log)


__all__ = ["TRANSLATION_LOG_COLUMNS", "TokenData", "measure_cell", "retrain_cell", "token_data", "train_dense",
           "train_vocabulary_job"]
