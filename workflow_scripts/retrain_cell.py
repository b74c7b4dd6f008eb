"""Snakemake -> the run's task's retrain_cell (threeregime.pipeline.retrain_cell for images)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.spec.common import resolve  # noqa: E402
from threeregime.spec.identity import DenseRun, RetrainSpec  # noqa: E402
from threeregime.spec.task import task_of_data_name  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc = smk.wildcards
spec = RetrainSpec.from_dict(smk.params.retrain)
data = data_locations(smk.config)[DenseRun.data_key_of(wc.run)]
task = task_of_data_name(data.name)
cell = {"run": wc.run, "seed": int(wc.dseed), "ckpt": wc.ckpt, "prune": wc.prune}
extra = {"decode": spec.decode or task.default_decode} if task.decodes else {}
resolve(task.retrain_cell)(
    smk.input.checkpoint, smk.output.copies, smk.output.log, data, *[smk.input[a.name] for a in task.artifacts],
    spec.train, list(spec.seeds), engine, resume_dir=os.path.join(os.path.dirname(smk.output.log), ".resume"),
    meta={"kind": "retrained", **cell, "retrain": wc.retrain}, expect={"kind": "pruned", **cell}, log=log,
    on_divergence=smk.config["on_divergence"], **extra,
)
