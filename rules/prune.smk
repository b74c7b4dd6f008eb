rule prune:
    """Magnitude-prune the convolution weights of one dense checkpoint to one density."""
    input:
        f"{RUN}/{{ckpt}}.pt",
    output:
        f"{CELL}/pruned.pt",
    conda:
        ENV
    log:
        f"{LOGS}/prune/{{run}}/seed{{dseed}}/{{ckpt}}/{{prune}}.log",
    script:
        "../workflow_scripts/prune.py"
