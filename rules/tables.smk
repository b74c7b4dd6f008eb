rule study_table:
    """One row per copy and per pair of every cell of a study, and a per-cell summary with regimes."""
    input:
        logs=study_inputs("log"),
        landscapes=study_inputs("landscape"),
    output:
        table="results/studies/{study}/table.parquet",
        cells="results/studies/{study}/cells.parquet",
        # exports for people and the report (README "Results schema")
        table_csv=report("results/studies/{study}/table.csv", caption="../report/table.rst",
                         category="{study}", subcategory="Tables"),
        cells_csv=report("results/studies/{study}/cells.csv", caption="../report/cells.rst",
                         category="{study}", subcategory="Tables"),
        cells_html=report("results/studies/{study}/cells.html", caption="../report/cells.rst",
                          category="{study}", subcategory="Tables"),
        config=report("results/studies/{study}/study.yaml", caption="../report/study_config.rst",
                      category="{study}", subcategory="Configuration"),
    params:
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
        # not read by the script: recorded by Snakemake, so a changed grid redoes the table
        grid=lambda wc: [(t, l, c.seed) for t, l, c in study(wc.study).cells()],
    conda:
        ENV
    log:
        f"{LOGS}/study_table/{{study}}.log",
    script:
        "../workflow_scripts/results_table.py"
