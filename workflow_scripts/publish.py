"""Copy the configured study's figure to results/ (atomically)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.checkpoints import save_bytes  # noqa: E402

smk = snakemake  # noqa: F821
for src, dst in zip(smk.input, smk.output):
    save_bytes(Path(src).read_bytes(), dst)
