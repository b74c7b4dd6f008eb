"""Corpus BLEU with sacrebleu on detokenized text (its default 13a tokenization, exp smoothing),
with sacrebleu's signature so a score says how it was computed."""

from __future__ import annotations


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """(BLEU in 0..100, sacrebleu's signature) of detokenized hypotheses against one reference each."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metric = BLEU()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())
