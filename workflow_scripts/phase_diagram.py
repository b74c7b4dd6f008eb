"""Snakemake -> a study's phase diagram: threeregime.plots.phase_diagram (rule phase_diagram, from
cells.parquet) or threeregime.adaptive_plots.adaptive_diagram (rule adaptive_diagram, from
adaptive.parquet); both take the same arguments."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
import pandas as pd  # noqa: E402

from threeregime.adaptive_plots import adaptive_diagram  # noqa: E402
from threeregime.plots import phase_diagram  # noqa: E402
from threeregime.regimes import Regimes  # noqa: E402
from threeregime.study import axis_style, resolve_study  # noqa: E402

smk = snakemake  # noqa: F821
draw = adaptive_diagram if smk.rule == "adaptive_diagram" else phase_diagram
study = resolve_study(smk.config, smk.wildcards.study)
extra = {} if smk.rule == "adaptive_diagram" else {"quality": study.entry.quality}  # test error, BLEU
draw(pd.read_parquet(smk.input[0]), smk.output.pdf, smk.output.png, Regimes.from_dict(smk.params.regimes),
     temperature=axis_style(study.temperature), load=axis_style(study.load), title=study.name, **extra)
