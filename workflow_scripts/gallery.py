"""Snakemake -> threeregime.report.copy_gallery (README's demo figures)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.report import copy_gallery  # noqa: E402

smk = snakemake  # noqa: F821
written = copy_gallery(dict(smk.input.items()), smk.params.folder)
JobLog(smk.log[0])("gallery: " + ", ".join(written))
