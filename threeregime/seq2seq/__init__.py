"""The translation task (issue 24): sequence-to-sequence training, pruning and landscape metrics.

  corpus      the generated toy language pair and WMT14 (Hugging Face datasets, save_to_disk layout)
  vocab       the joint sentencepiece BPE vocabulary artifact (pad 0, unk 1, bos 2, eos 3)
  tokens      the corpus as token ids (long training pairs dropped, validation truncated), batches
  transformer the encoder-decoder Transformer (nn.Linear projections, tied embeddings, post-LN)
  decode      greedy and beam search
  bleu        corpus BLEU with sacrebleu and its signature
  train       the training loop (Adam 0.9/0.98/1e-9, label smoothing, masks, resume, BLEU)
  landscape   LMC on the teacher-forced token error, CKA of the output distributions
  pipeline    the job-level functions (vocabulary, dense segment, retrain cell, measure cell)
datasets, sentencepiece and sacrebleu are imported inside the functions that use them.
"""
