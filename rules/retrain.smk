rule retrain_cell:
    """Retrain one copy per retrain seed from the same pruned weights (one fused job)."""
    input:
        unpack(with_artifacts(f"{CELL}/pruned.pt")),
    output:
        copies=f"{COPIES}/retrained.pt",
        log=f"{COPIES}/retrain_log.csv",
    params:
        retrain=lambda wc: INDEX.retrain(wc.retrain).as_dict(),
    resources:
        runtime=lambda wc: runtime_minutes(
            approx_epochs(INDEX.retrain(wc.retrain).train) * len(INDEX.retrain(wc.retrain).seeds)
        ),
    threads: ENGINE["threads"]
    conda:
        ENV
    log:
        f"{LOGS}/retrain/{{run}}/seed{{dseed}}/{{ckpt}}/{{prune}}/{{retrain}}.log",
    script:
        "../workflow_scripts/retrain_cell.py"
