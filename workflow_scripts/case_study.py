"""Snakemake -> threeregime.casestudies.case_table and threeregime.caseplots for one case study."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
import pandas as pd  # noqa: E402

from threeregime.casestudies import CaseStudy, case_table, dense_test_error, retrain_epochs, summary_lines  # noqa: E402
from threeregime.caseplots import draw_case_study  # noqa: E402
from threeregime.atomic import save_text  # noqa: E402
from threeregime.jobs import JobLog  # noqa: E402

smk = snakemake  # noqa: F821
log = JobLog(smk.log[0])
case = CaseStudy.from_dict(smk.params.case)
dense = {}  # panel -> temperature -> [test error per dense seed]
for (i, t, _seed), path in zip(smk.params.dense, smk.input.get("dense", [])):
    dense.setdefault(i, {}).setdefault(t, []).append(dense_test_error(path))
panels = []
for i, (panel, info) in enumerate(zip(case.panels, smk.params.panels)):
    data = {"epsilon": info["epsilon"], "candidates": info["candidates"]}
    for role in panel.studies:
        data[role] = pd.read_parquet(smk.input[f"p{i}_{role}"])
    if case.algorithm == "selection":
        data["dense_error"] = {t: sum(v) / len(v) for t, v in dense[i].items()}
        data["alpha_epochs"] = retrain_epochs(pd.read_parquet(smk.input[f"p{i}_alpha_table"]))
        data["full_epochs"] = retrain_epochs(pd.read_parquet(smk.input[f"p{i}_grid_table"]))
    panels.append(data)
table = case_table(case, panels)
save_text(table.to_csv(index=False), smk.output.table)
draw_case_study(case, table, panels, smk.params.panels, smk.output.pdf, smk.output.png)
for line in summary_lines(case, table):
    log(line)
