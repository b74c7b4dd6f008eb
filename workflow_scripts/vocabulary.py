"""Snakemake -> threeregime.seq2seq.pipeline.train_vocabulary_job (one corpus's vocabulary)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import JobLog  # noqa: E402
from threeregime.seq2seq.pipeline import train_vocabulary_job  # noqa: E402
from threeregime.study import data_locations  # noqa: E402

smk = snakemake  # noqa: F821
corpora = data_locations(smk.config)
if smk.wildcards.corpus not in corpora:
    raise SystemExit(f"no configured translation study reads the corpus {smk.wildcards.corpus!r}")
train_vocabulary_job(corpora[smk.wildcards.corpus], smk.output[0], JobLog(smk.log[0]))
