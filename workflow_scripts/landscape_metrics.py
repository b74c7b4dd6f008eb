"""Snakemake -> threeregime.pipeline.measure_cell."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.pipeline import measure_cell  # noqa: E402
from threeregime.spec.identity import DenseRun  # noqa: E402
from threeregime.spec.landscape import LandscapeSpec  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc = smk.wildcards
cell = {"run": wc.run, "seed": int(wc.dseed), "ckpt": wc.ckpt, "prune": wc.prune, "retrain": wc.retrain}
measure_cell(smk.input[0], smk.output[0], data_locations(smk.config)[DenseRun.data_key_of(wc.run)], engine,
             LandscapeSpec(**smk.params.landscape), meta={"kind": "landscape", **cell, "landscape": wc.land},
             expect={"kind": "retrained", **cell}, log=log)
