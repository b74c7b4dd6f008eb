"""Snakemake -> threeregime.plots.lmc_curves for one cell."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.plots import lmc_curves  # noqa: E402

smk = snakemake  # noqa: F821
land = json.loads(Path(smk.input[0]).read_text())
pairs = [{**p, "ts": land.get("ts", [])} for p in land["pairs"] if "train_error_curve" in p]
m = land["meta"]
lmc_curves(pairs, smk.output.pdf, smk.output.png,
           title=f"LMC curves: {m['prune']} of {m['ckpt']}, dense seed {m['seed']}\n{m['run']}")
