"""Snakemake -> threeregime.pipeline.train_dense (one segment of a dense run)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.pipeline import train_dense  # noqa: E402
from threeregime.spec.identity import DenseRun  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc = smk.wildcards
run = DenseRun.from_dict(smk.params.run)
out = smk.output[0]
train_dense(data_locations(smk.config)[run.data.key()], run, int(wc.dseed), wc.ckpt,
            smk.input[0] if smk.input else None, out,
            resume_path=os.path.join(os.path.dirname(out), ".partial", f"{wc.ckpt}.resume.pt"), engine=engine, log=log)
