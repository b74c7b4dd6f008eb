rule retrain_cell:
    """Retrain one copy per retrain seed from the same pruned weights (one fused job)."""
    input:
        f"{CELL}/pruned.pt",
    output:
        checkpoints=[f"{CELL}/retrain{r}.pt" for r in RETRAIN_SEEDS],
        log=f"{CELL}/retrain_log.csv",
    params:
        data=config["data"],
        retrain=config["retrain"],
        seeds=RETRAIN_SEEDS,
    resources:
        runtime=runtime_minutes(config["retrain"]["epochs"] * len(RETRAIN_SEEDS)),
    threads: ENGINE["threads"]
    conda:
        ENV
    log:
        f"{LOGS}/retrain/{{model}}/{{trainer}}/{{method}}/density{{density}}/epoch{{epoch}}/seed{{dseed}}.log",
    script:
        "../workflow_scripts/retrain_cell.py"
