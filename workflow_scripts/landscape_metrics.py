"""Snakemake -> threeregime.pipeline.measure_cell."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.landscape import LandscapeSpec  # noqa: E402
from threeregime.pipeline import measure_cell  # noqa: E402
from threeregime.study import cell_meta, data_spec  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc, p = smk.wildcards, smk.params
cell = cell_meta(wc)
measure_cell(
    dict(zip(p.seeds, smk.input)), smk.output[0], data_spec(p.data), engine, LandscapeSpec(**p.landscape),
    meta={"kind": "landscape", **cell}, expect={"kind": "retrained", **cell}, log=log,
)
