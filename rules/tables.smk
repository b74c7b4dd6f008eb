def study_inputs(kind):
    def inputs(wc):
        return [c.landscape_path if kind == "landscape" else f"{c.retrain_dir}/retrain_log.csv"
                for _, _, c in study(wc.study).cells()]
    return inputs


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
