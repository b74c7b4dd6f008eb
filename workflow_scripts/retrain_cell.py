"""Snakemake -> threeregime.pipeline.retrain_cell."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.pipeline import retrain_cell  # noqa: E402
from threeregime.spec.identity import DenseRun, RetrainSpec  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc = smk.wildcards
spec = RetrainSpec.from_dict(smk.params.retrain)
cell = {"run": wc.run, "seed": int(wc.dseed), "ckpt": wc.ckpt, "prune": wc.prune}
retrain_cell(
    smk.input[0], smk.output.copies, smk.output.log, data_locations(smk.config)[DenseRun.data_key_of(wc.run)], spec.train,
    list(spec.seeds), engine, resume_dir=os.path.join(os.path.dirname(smk.output.log), ".resume"),
    meta={"kind": "retrained", **cell, "retrain": wc.retrain}, expect={"kind": "pruned", **cell}, log=log,
    on_divergence=smk.config["on_divergence"],
)
