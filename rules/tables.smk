rule results_table:
    """One row per copy and per pair of every cell, and a per-cell summary with regimes."""
    input:
        logs=[f"{CELL}/retrain_log.csv".format(**c) for c in grid_cells()],
        landscapes=[f"{CELL}/landscape.json".format(**c) for c in grid_cells()],
    output:
        table=PATHS.table(),
        cells=PATHS.cells_summary(),
    params:
        cells=grid_cells(),
        regimes=config["regimes"],
    conda:
        ENV
    log:
        f"{LOGS}/results_table.log",
    script:
        "../workflow_scripts/results_table.py"
