rule prune:
    """Magnitude-prune the convolution weights of one dense checkpoint to one density."""
    input:
        PATHS.dense("{model}", "{trainer}", "{dseed}", "{epoch}"),
    output:
        f"{CELL}/pruned.pt",
    conda:
        ENV
    log:
        f"{LOGS}/prune/{{model}}/{{trainer}}/{{method}}/density{{density}}/epoch{{epoch}}/seed{{dseed}}.log",
    script:
        "../workflow_scripts/prune.py"
