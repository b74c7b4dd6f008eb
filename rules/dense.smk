rule train_dense:
    """One segment of a dense run: from the previous checkpoint (or the seed's init) to this one."""
    input:
        unpack(dense_inputs),
    output:
        f"{RUN}/{{ckpt}}.pt",
    params:
        run=lambda wc: INDEX.run(wc.run).as_dict(),
    resources:
        runtime=lambda wc: runtime_minutes(INDEX.run(wc.run).segment_epochs(wc.ckpt)),
    threads: ENGINE["dense_threads"]
    conda:
        ENV
    log:
        f"{LOGS}/train_dense/{{run}}/seed{{dseed}}/{{ckpt}}.log",
    script:
        "../workflow_scripts/train_dense.py"
