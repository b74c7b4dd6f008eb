rule prune:
    """Magnitude-prune the chosen weights (prune.layers / prune.exclude) of one dense checkpoint."""
    input:
        f"{RUN}/{{ckpt}}.pt",
    output:
        f"{CELL}/pruned.pt",
    params:
        prune=lambda wc: INDEX.prune(wc.prune).as_dict(),
    conda:
        ENV
    log:
        f"{LOGS}/prune/{{run}}/seed{{dseed}}/{{ckpt}}/{{prune}}.log",
    script:
        "../workflow_scripts/prune.py"
