rule landscape_metrics:
    """LMC and CKA of every pair of a cell's retrained copies."""
    input:
        unpack(with_artifacts(f"{COPIES}/retrained.pt")),
    output:
        f"{COPIES}/landscape_{{land}}.json",
    params:
        landscape=lambda wc: INDEX.landscape(wc.land).as_dict(),
    resources:
        runtime=lambda wc: runtime_minutes(2 * len(INDEX.retrain(wc.retrain).seeds)),
    threads: ENGINE["threads"]
    conda:
        ENV
    log:
        f"{LOGS}/landscape/{{run}}/seed{{dseed}}/{{ckpt}}/{{prune}}/{{retrain}}/{{land}}.log",
    script:
        "../workflow_scripts/landscape_metrics.py"
