"""Snakemake -> the run's task's train_dense (threeregime.pipeline.train_dense for images; one
segment of a dense run), with the task's extra artifacts (a translation vocabulary) after the data."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.spec.common import resolve  # noqa: E402
from threeregime.spec.identity import DenseRun  # noqa: E402
from threeregime.spec.task import task_of_run  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc = smk.wildcards
run = DenseRun.from_dict(smk.params.run)
task = task_of_run(run)
out = smk.output[0]
previous = list(smk.input.previous)
resolve(task.train_dense)(
    data_locations(smk.config)[run.data.key()], *[smk.input[a.name] for a in task.artifacts], run, int(wc.dseed),
    wc.ckpt, previous[0] if previous else None, out,
    resume_path=os.path.join(os.path.dirname(out), ".partial", f"{wc.ckpt}.resume.pt"), engine=engine, log=log)
