"""Snakemake -> threeregime.pipeline.prune_checkpoint."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.pipeline import prune_checkpoint  # noqa: E402
from threeregime.spec.prune import PruneSpec, parse_prune_key  # noqa: E402

smk = snakemake  # noqa: F821
wc = smk.wildcards
# rule prune_selected passes its choice of weights; rule prune's default choice is in the key
selected = getattr(smk.params, "prune", None)
prune = PruneSpec.from_dict(selected) if selected else parse_prune_key(wc.prune)
dense = {"kind": "dense", "run": wc.run, "seed": int(wc.dseed), "ckpt": wc.ckpt}
prune_checkpoint(smk.input[0], smk.output[0], prune.density, prune.method, expect=dense,
                 meta={**dense, "kind": "pruned", "prune": wc.prune}, log=JobLog(smk.log[0]), layers=prune.layers,
                 exclude=prune.exclude)
