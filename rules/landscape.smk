rule landscape_metrics:
    """LMC and CKA of every pair of a cell's retrained copies."""
    input:
        [f"{CELL}/retrain{r}.pt" for r in RETRAIN_SEEDS],
    output:
        f"{CELL}/landscape.json",
    params:
        data=config["data"],
        landscape=config["landscape"],
        seeds=RETRAIN_SEEDS,
    resources:
        runtime=runtime_minutes(2 * len(RETRAIN_SEEDS)),
    threads: ENGINE["threads"]
    conda:
        ENV
    log:
        f"{LOGS}/landscape/{{model}}/{{trainer}}/{{method}}/density{{density}}/epoch{{epoch}}/seed{{dseed}}.log",
    script:
        "../workflow_scripts/landscape_metrics.py"
