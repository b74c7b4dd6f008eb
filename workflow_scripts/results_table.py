"""Snakemake -> threeregime.tables.build_tables for one study."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.regimes import Regimes  # noqa: E402
from threeregime.study import resolve_study  # noqa: E402
from threeregime.report import write_study_config  # noqa: E402
from threeregime.tables import build_tables, cell_key, write_csv, write_html  # noqa: E402

smk = snakemake  # noqa: F821
study = resolve_study(smk.config, smk.wildcards.study)
cells = [
    {**cell_key(study, t, l, c), "log": log_path, "landscape": land}
    for (t, l, c), log_path, land in zip(study.cells(), smk.input.logs, smk.input.landscapes)
]
table, summary = build_tables(cells, smk.output.table, smk.output.cells, Regimes.from_dict(smk.params.regimes))
write_csv(table, smk.output.table_csv)
write_csv(summary, smk.output.cells_csv)
write_html(summary, smk.output.cells_html, f"{study.name}: one row per cell")
write_study_config(smk.config, study.name, smk.output.config)
JobLog(smk.log[0])(f"{len(table)} rows, {len(summary)} cells; regimes: {summary.regime.value_counts().to_dict()}")
