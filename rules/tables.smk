rule study_table:
    """One row per copy and per pair of every cell of a study, and a per-cell summary with regimes."""
    input:
        logs=study_inputs("log"),
        landscapes=study_inputs("landscape"),
    output:
        table="results/studies/{study}/table.parquet",
        cells="results/studies/{study}/cells.parquet",
    params:
        regimes=lambda wc: study(wc.study).regimes,
        grid=lambda wc: [(t, l, c.seed) for t, l, c in study(wc.study).cells()],
    conda:
        ENV
    log:
        f"{LOGS}/study_table/{{study}}.log",
    script:
        "../workflow_scripts/results_table.py"
