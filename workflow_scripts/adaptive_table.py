"""Snakemake -> threeregime.adaptive.cell_table: the last round's cells, computed and inferred."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.adaptive import cell_table  # noqa: E402
from threeregime.atomic import save_text  # noqa: E402
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.study import resolve_study  # noqa: E402
from threeregime.tables import write_parquet  # noqa: E402

smk = snakemake  # noqa: F821
study = resolve_study(smk.config, smk.wildcards.study)
with open(smk.input[0]) as f:
    state = json.load(f)
table = cell_table(state, study.name, study.temperature.name, study.load.name)
write_parquet(table, smk.output.table)
save_text(table.to_csv(index=False), smk.output.csv)
JobLog(smk.log[0])(f"{int(table.computed.sum())} of {len(table)} cells computed in {state['round']} rounds; "
                   f"regimes: {table.regime.value_counts().to_dict()}")
