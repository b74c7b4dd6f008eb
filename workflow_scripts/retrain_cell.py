"""Snakemake -> threeregime.pipeline.retrain_cell."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.pipeline import retrain_cell  # noqa: E402
from threeregime.study import cell_meta, data_spec, train_spec  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc, p = smk.wildcards, smk.params
cell = cell_meta(wc)
retrain_cell(
    smk.input[0], dict(zip(p.seeds, smk.output.checkpoints)), smk.output.log, data_spec(p.data),
    train_spec(p.retrain), engine, resume_dir=os.path.join(os.path.dirname(smk.output.log), ".resume"),
    meta={"kind": "retrained", **cell}, expect={"kind": "pruned", **cell}, log=log,
    on_divergence=smk.config["on_divergence"],
)
