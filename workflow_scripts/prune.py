"""Snakemake -> threeregime.pipeline.prune_checkpoint."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.pipeline import prune_checkpoint  # noqa: E402
from threeregime.study import cell_meta  # noqa: E402

smk = snakemake  # noqa: F821
wc = smk.wildcards
cell = cell_meta(wc)
prune_checkpoint(
    smk.input[0], smk.output[0], cell["density"], cell["method"],
    expect={"kind": "dense", **{k: cell[k] for k in ("model", "trainer", "seed", "epoch")}},
    meta={"kind": "pruned", **cell},
    log=JobLog(smk.log[0]),
)
