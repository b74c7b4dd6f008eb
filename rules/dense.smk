rule train_dense:
    """One full-schedule dense run per seed; each saved checkpoint is a temperature."""
    output:
        [
            PATHS.dense("{model}", "{trainer}", "{dseed}", e)
            for e in checkpoint_epochs(config["train"])
        ],
    params:
        data=config["data"],
        model=config["model"],
        train=config["train"],
        partial=lambda wc: PATHS.dense_partial(wc.model, wc.trainer, wc.dseed),
    resources:
        runtime=runtime_minutes(config["train"]["epochs"]),
    threads: ENGINE["dense_threads"]
    conda:
        ENV
    log:
        f"{LOGS}/train_dense/{{model}}/{{trainer}}/seed{{dseed}}.log",
    script:
        "../workflow_scripts/train_dense.py"
