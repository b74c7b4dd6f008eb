rule vocabulary:
    """A translation corpus's joint subword vocabulary (sentencepiece BPE), trained once on its
    training subsample; keyed by the corpus identity, read by every translation job on it."""
    output:
        "results/vocab/{corpus}/sentencepiece.model",
    conda:
        ENV
    log:
        f"{LOGS}/vocabulary/{{corpus}}.log",
    script:
        "../workflow_scripts/vocabulary.py"
