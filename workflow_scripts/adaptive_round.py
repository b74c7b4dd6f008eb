"""Snakemake -> threeregime.adaptive.advance: one round of a study's adaptive search."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.adaptive import advance, measure  # noqa: E402
from threeregime.atomic import save_json  # noqa: E402
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.study import resolve_study  # noqa: E402

smk = snakemake  # noqa: F821
log = JobLog(smk.log[0])
study = resolve_study(smk.config, smk.wildcards.study)
settings = dict(smk.params.settings)
state, measured = None, {}
if "previous" in smk.input.keys():
    with open(smk.input.previous) as f:
        state = json.load(f)
    measured = measure(study, state, list(smk.input.logs), list(smk.input.landscapes), settings["lmc_margin"],
                       settings["cka_margin"])
new = advance(state, measured, study.temperatures, study.loads, settings["per_round"], settings["pin"])
new.update(lmc_margin=settings["lmc_margin"], cka_margin=settings["cka_margin"])  # for the record
save_json(new, smk.output[0])
log(f"round {new['round']}: {len(new['computed'])} cells computed, "
    + ("done" if new["done"] else "next: " + "; ".join(f"({n['temperature']:g}, {n['load']:g}) {n['reason']}"
                                                       for n in new["next"])))
