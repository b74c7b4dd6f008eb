"""Snakemake -> the run's task's measure_cell (threeregime.pipeline.measure_cell for images)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.spec.common import resolve  # noqa: E402
from threeregime.spec.identity import DenseRun  # noqa: E402
from threeregime.spec.landscape import LandscapeSpec  # noqa: E402
from threeregime.spec.task import task_of_data_name  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc = smk.wildcards
data = data_locations(smk.config)[DenseRun.data_key_of(wc.run)]
task = task_of_data_name(data.name)
cell = {"run": wc.run, "seed": int(wc.dseed), "ckpt": wc.ckpt, "prune": wc.prune, "retrain": wc.retrain}
resolve(task.measure_cell)(
    smk.input.checkpoint, smk.output[0], data, *[smk.input[a.name] for a in task.artifacts], engine,
    LandscapeSpec(**smk.params.landscape), meta={"kind": "landscape", **cell, "landscape": wc.land},
    expect={"kind": "retrained", **cell}, log=log)
