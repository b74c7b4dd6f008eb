"""A paper figure named in config `figures`: a copy of a study's phase diagram, or lines
comparing studies (Figure 13: test error against dense training epochs per optimizer pair)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
import pandas as pd  # noqa: E402

from threeregime.atomic import save_bytes  # noqa: E402
from threeregime.plots import optimizer_lines, quality_lines  # noqa: E402
from threeregime.study import axis_style, resolve_study  # noqa: E402

smk = snakemake  # noqa: F821
spec = smk.params.spec
if "study" in spec and spec.get("lines"):  # Figure 14: the quality metric against the temperature
    study = resolve_study(smk.config, spec["study"])
    quality_lines(pd.read_parquet(smk.input.cells), smk.output.pdf, smk.output.png, study.regimes,
                  study.entry.quality, axis_style(study.temperature), axis_style(study.load),
                  title=f"{smk.wildcards.figure}: {study.name}, {study.entry.quality.label.split(' (')[0]} after "
                        f"retraining against {study.temperature.label.lower()}")
elif "study" in spec:
    for src, dst in ((smk.input.pdf, smk.output.pdf), (smk.input.png, smk.output.png)):
        save_bytes(Path(src).read_bytes(), dst)
else:
    frames = []
    for i, name in enumerate(spec["compare"]):
        study = resolve_study(smk.config, name)
        df = pd.read_parquet(smk.input[f"cells{i}"])
        df["combination"] = study.optimizers
        frames.append(df)
    optimizer_lines(pd.concat(frames, ignore_index=True), smk.output.pdf, smk.output.png,
                    title=f"{smk.wildcards.figure}: test error after retraining (dense optimizer → retrain optimizer)")
