"""Snakemake -> threeregime.plots.figure2."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
import pandas as pd  # noqa: E402

from threeregime.plots import figure2  # noqa: E402

smk = snakemake  # noqa: F821
r = smk.params.regimes
figure2(pd.read_parquet(smk.input[0]), smk.output.pdf, smk.output.png, r["lmc_epsilon"], r["cka_threshold"],
        title=smk.params.study)
