"""Snakemake -> threeregime.casedecisions.case_table and threeregime.caseplots for one case study
(its algorithm's entry in threeregime.casestudies.ALGORITHMS says what it reads, decides, draws)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
import pandas as pd  # noqa: E402

from threeregime.casestudies import CaseStudy  # noqa: E402
from threeregime.casedecisions import case_table, dense_test_error, summary_lines  # noqa: E402
from threeregime.caseplots import draw_case_study  # noqa: E402
from threeregime.atomic import save_text  # noqa: E402
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.spec.common import resolve  # noqa: E402

smk = snakemake  # noqa: F821
log = JobLog(smk.log[0])
case = CaseStudy.from_dict(smk.params.case)
panel_data = case.entry.panel_data and resolve(case.entry.panel_data)
dense = {}  # panel -> temperature -> [test error per dense seed] (the entry's reads_dense)
for (i, t, _seed), path in zip(smk.params.dense, smk.input.get("dense", [])):
    dense.setdefault(i, {}).setdefault(t, []).append(dense_test_error(path))
panels = []
for i, (panel, info) in enumerate(zip(case.panels, smk.params.panels)):
    data = {"epsilon": info["epsilon"], "candidates": info["candidates"], "quality": info.get("quality")}
    for role in panel.studies:
        data[role] = pd.read_parquet(smk.input[f"p{i}_{role}"])
    if panel_data:
        data.update(panel_data(lambda role, i=i: pd.read_parquet(smk.input[f"p{i}_{role}_table"]), dense.get(i, {})))
    panels.append(data)
table = case_table(case, panels)
save_text(table.to_csv(index=False), smk.output.table)
draw_case_study(case, table, panels, smk.params.panels, smk.output.pdf, smk.output.png)
for line in summary_lines(case, table):
    log(line)
