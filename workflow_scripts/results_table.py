"""Snakemake -> threeregime.tables.build_tables."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.tables import build_tables  # noqa: E402

smk = snakemake  # noqa: F821
cells = [
    {"model": c["model"], "trainer": c["trainer"], "method": c["method"], "temperature": int(c["epoch"]),
     "density": float(c["density"]), "dense_seed": int(c["dseed"]), "log": log_path, "landscape": land}
    for c, log_path, land in zip(smk.params.cells, smk.input.logs, smk.input.landscapes)
]
r = smk.params.regimes
table, summary = build_tables(cells, smk.output.table, smk.output.cells, r["lmc_epsilon"], r["cka_threshold"])
JobLog(smk.log[0])(f"{len(table)} rows, {len(summary)} cells; regimes: {summary.regime.value_counts().to_dict()}")
