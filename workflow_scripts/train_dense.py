"""Snakemake -> threeregime.pipeline.train_dense."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821
from threeregime.jobs import start_job  # noqa: E402
from threeregime.pipeline import train_dense  # noqa: E402
from threeregime.study import checkpoint_epochs, data_spec, parse_model_key, parse_trainer_key, train_spec  # noqa: E402

smk = snakemake  # noqa: F821
log, engine = start_job(smk)
wc, p = smk.wildcards, smk.params
train = parse_trainer_key(wc.trainer, p.train)
train_dense(
    data_spec(p.data), parse_model_key(wc.model, p.model), train_spec(train), int(wc.dseed),
    outputs=dict(zip(checkpoint_epochs(train), smk.output)), partial_dir=p.partial, engine=engine,
    meta={"kind": "dense", "model": wc.model, "trainer": wc.trainer, "seed": int(wc.dseed), "data": p.data["name"]},
    log=log,
)
