"""Snakemake -> threeregime.pipeline.prune_checkpoint."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.pipeline import prune_checkpoint  # noqa: E402

smk = snakemake  # noqa: F821
wc = smk.wildcards
cell = {"model": wc.model, "trainer": wc.trainer, "seed": int(wc.dseed)}
prune_checkpoint(
    smk.input[0], smk.output[0], float(wc.density), wc.method,
    expect={"kind": "dense", **cell, "epoch": int(wc.epoch)},
    meta={"kind": "pruned", **cell, "epoch": int(wc.epoch), "method": wc.method, "density": float(wc.density)},
    log=JobLog(smk.log[0]),
)
