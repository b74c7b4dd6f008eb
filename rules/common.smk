import sys

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from threeregime.data import DataError  # noqa: E402
from threeregime.study import (  # noqa: E402
    ConfigError,
    Paths,
    check_config,
    check_data_config,
    checkpoint_epochs,
    fmt,
    model_key,
    trainer_key,
)


validate(config, schema="../schemas/config.schema.yaml")
try:
    check_config(config)
except ConfigError as e:
    raise WorkflowError(f"config error: {e}")


onstart:
    # Needs the data set, so it runs when the workflow starts (before any job), not on -n.
    try:
        check_data_config(config)
    except (ConfigError, DataError) as e:
        raise WorkflowError(f"config error: {e}")


STUDY = config["study"]
PATHS = Paths(f"results/{STUDY}")
MODEL = model_key(config["model"])
TRAINER = trainer_key(config["train"])
METHOD = config["prune"]["method"]
GRID = config["grid"]
RETRAIN_SEEDS = sorted(GRID["retrain_seeds"])

# The cell folder pattern: results/<study>/cells/<model>/<trainer>/<method>/density<d>/epoch<e>/seed<s>
CELL = PATHS.cell("{model}", "{trainer}", "{method}", "{density}", "{epoch}", "{dseed}")


wildcard_constraints:
    model=r"[a-z]+\d+_w[0-9.]+",
    trainer=r"[a-z]+_bs\d+",
    method=r"uniform|global",
    density=r"[0-9.]+",
    epoch=r"\d+",
    dseed=r"\d+",


def grid_cells():
    """Every (temperature, load, dense seed) cell of the configured grid."""
    return [
        dict(model=MODEL, trainer=TRAINER, method=METHOD, density=fmt(d), epoch=e, dseed=s)
        for e in GRID["epochs"]
        for d in GRID["densities"]
        for s in GRID["dense_seeds"]
    ]


def runtime_minutes(epochs):
    """Cluster runtime request (minutes) for a job of `epochs` training epochs."""
    return max(10, int(60 * epochs * config["engine"]["hours_per_epoch"]) + 10)


ENV = "../envs/threeregime.yaml"  # relative to the rule files
ENGINE = config["engine"]
LOGS = f"{PATHS.root}/logs"
