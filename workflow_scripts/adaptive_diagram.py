"""Snakemake -> threeregime.adaptive_plots.adaptive_diagram for one study."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
import pandas as pd  # noqa: E402

from threeregime.adaptive_plots import adaptive_diagram  # noqa: E402
from threeregime.study import axis_style, resolve_study  # noqa: E402

smk = snakemake  # noqa: F821
study = resolve_study(smk.config, smk.wildcards.study)
r = smk.params.regimes
adaptive_diagram(pd.read_parquet(smk.input[0]), smk.output.pdf, smk.output.png, r["lmc_epsilon"], r["cka_threshold"],
                 temperature=axis_style(study.temperature), load=axis_style(study.load), title=study.name)
