"""Snakemake -> threeregime.settle: one round of the settle option (rule settle_round), or the
settled table of the last round (rule settled_table)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.atomic import save_json  # noqa: E402
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.settle import advance, cost, measure, round_cells, settled_table  # noqa: E402
from threeregime.study import resolve_study  # noqa: E402
from threeregime.tables import write_csv  # noqa: E402

smk = snakemake  # noqa: F821
log = JobLog(smk.log[0])
study = resolve_study(smk.config, smk.wildcards.study)
if smk.rule == "settle_round":
    state = None
    if "previous" in smk.input.keys():
        with open(smk.input.previous) as f:
            state = json.load(f)
    summary = measure(study, round_cells(study, state), list(smk.input.logs), list(smk.input.landscapes))
    new = advance(study, state, summary.to_dict("records"))
    save_json(new, smk.output[0])
    log(f"round {new['round']}: {cost(new, study)}; next: "
        + ("nothing (done)" if new["done"] else "; ".join(f"({n['temperature']:g}, {n['load']:g}) {n['reason']}"
                                                        for n in new["next"])))
else:
    with open(smk.input.last) as f:
        state = json.load(f)
    files = round_cells(study, {**state, "next": []})
    table = settled_table(study, state, measure(study, files, list(smk.input.logs), list(smk.input.landscapes)),
                          smk.output.table)
    write_csv(table, smk.output.csv)
    log(f"{len(table)} cells after {state['round']} rounds: {cost(state, study)}")
