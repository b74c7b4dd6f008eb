import os
import sys

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from threeregime.configfiles import duplicate_keys, schema_problems  # noqa: E402
from threeregime.plan import plan_of  # noqa: E402
from threeregime.spec.common import ConfigError  # noqa: E402
from threeregime.spec.data import DataError  # noqa: E402
from threeregime.spec.identity import approx_epochs  # noqa: E402
from threeregime.spec.prune import DEFAULT_KEY_PATTERN as PRUNE_DEFAULT_KEY  # noqa: E402
from threeregime.spec.prune import KEY_PATTERN as PRUNE_KEY  # noqa: E402
from threeregime.spec.prune import SELECTED_KEY_PATTERN as PRUNE_SELECTED_KEY  # noqa: E402
from threeregime.spec.task import artifact_paths, task_of_run  # noqa: E402
from threeregime.study import check_data_sets  # noqa: E402


# The config files this run reads: the workflow's own, then those given with --configfile.
_problems = [p for f in [os.path.join(workflow.basedir, "config.yaml"), *workflow.config_settings.configfiles]
             for p in duplicate_keys(str(f))]
if _problems:
    raise WorkflowError("config error:\n  " + "\n  ".join(_problems))
# Our own message first (the key as written in YAML, a hint for numbers YAML reads as
# strings), then Snakemake's validation for anything it would add.
_problems = schema_problems(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))
if _problems:
    raise WorkflowError("config error:\n  " + "\n  ".join(_problems))
validate(config, schema="../schemas/config.schema.yaml")
from threeregime.casestudies import case_names_pattern, panel_info  # noqa: E402
from threeregime.datacheck import dry_run_data_notes  # noqa: E402
from threeregime.snakemake_cli import command_line, interrupt_at_once, restore_interrupt  # noqa: E402

# Snakemake's command line (targets, -n), or None in a job's own process, --lint, --unlock.
REQUEST = command_line()
if REQUEST is not None:
    # Ctrl-C stops planning and DAG building at once (onstart below gives Snakemake its own
    # handling back before jobs run).
    interrupt_at_once()
try:
    # The one route from a config to its studies (threeregime/plan.py): case studies expanded into
    # derived studies (keyed, indexed and shared like any other study's), every study resolved.
    PLAN = plan_of(config)
    # The targets asked for, checked now: an error raised while Snakemake builds the DAG comes
    # wrapped in an InputFunctionException and a traceback.
    NEEDED = PLAN.targets(REQUEST.targets, PLAN.config.get("figures", {}), config.get("default_studies", [])) \
        if REQUEST is not None else []
except ConfigError as e:
    raise WorkflowError(f"config error: {e}")
# Jobs that read one study's section from the config (tables, figures) see the derived ones too.
config["studies"] = PLAN.config["studies"]
STUDIES, BROKEN, CASES, CASES_BROKEN = PLAN.studies, PLAN.broken, PLAN.cases, PLAN.cases_broken
# Each target name is made by one rule: results/<name>.pdf is a case study's or a figure's
# (never both: threeregime.casestudies.expand_config), so which error a user sees never
# depends on the order Snakemake tries rules in.
CASE_PATTERN = case_names_pattern(set(CASES) | set(CASES_BROKEN))
FIGURE_PATTERN = case_names_pattern(config.get("figures", {}))
if REQUEST is not None:
    # Not an error until one of their targets is asked for (see threeregime.study.studies).
    unused = [n for n in PLAN.user_studies if n in BROKEN and n not in NEEDED]
    if unused:
        print(f"note: {len(unused)} studies cannot run with this config and are skipped unless asked for:\n"
              + "\n".join(f"  {n}: {BROKEN[n]}" for n in unused), file=sys.stderr)
    if REQUEST.dryrun:
        for line in dry_run_data_notes([PLAN.study(n).data for n in NEEDED]):
            print(line, file=sys.stderr)

INDEX = PLAN.index
FIGURES = config.get("figures", {})
ENV = "../envs/threeregime.yaml"  # relative to the rule files
ENGINE = config["engine"]
LOGS = "results/logs"

# Path pieces (see threeregime/study.py): runs and retrainings are "<readable>-<8 hex>".
RUN = "results/dense/{run}/seed{dseed}"
CELL = "results/cells/{run}/seed{dseed}/{ckpt}/{prune}"
COPIES = f"{CELL}/{{retrain}}"


wildcard_constraints:
    run=r"[A-Za-z0-9_.-]+-[0-9a-f]{8}",
    retrain=r"[A-Za-z0-9_.-]+-[0-9a-f]{8}",
    dseed=r"\d+",
    ckpt=r"epoch\d+|final",
    prune=PRUNE_KEY,
    land=r"p\d+_bn\d+_err\d+_cka\d+(_bn[a-z]+)?",
    study=r"[A-Za-z][A-Za-z0-9_-]*",
    corpus=r"[A-Za-z0-9.-]+",
    figure=r"[A-Za-z][A-Za-z0-9_-]*",


onstart:
    restore_interrupt()
    # Needs the data sets, so it runs when the workflow starts (before any job), not on -n:
    # only the data sets of jobs this run will execute are checked.
    jobs = [j.wildcards for j in workflow.dag.needrun_jobs()]
    runs = sorted({wc["run"] for wc in jobs if "run" in wc.keys()})
    batches = {}
    for wc in jobs:
        if "run" in wc.keys():
            run = INDEX.run(wc["run"])
            batches[f"train.batch_size of {wc['run']}"] = (run.data.key(), run.train.batch_size)
            if "retrain" in wc.keys():
                bs = INDEX.retrain(wc["retrain"]).train.batch_size
                batches[f"retrain.batch_size of {wc['retrain']}"] = (run.data.key(), bs)
    if ENGINE["device"] == "cuda" and workflow.local_exec and runs:
        import torch

        if not torch.cuda.is_available():
            raise WorkflowError("config error: engine.device is cuda, but this machine has no usable CUDA GPU "
                                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Set engine.device: "
                                "auto (or cpu), or run on a GPU machine (profiles/local, profiles/slurm).")
    try:
        check_data_sets([INDEX.data_of(r) for r in runs], batches)
    except (ConfigError, DataError) as e:
        raise WorkflowError(f"config error: {e}")


def runtime_minutes(epochs):
    """Cluster runtime request (minutes) for a job of `epochs` training epochs."""
    return max(10, int(60 * epochs * ENGINE["hours_per_epoch"]) + 10)


def study(name):
    """The study a target names, or a config error (before any job runs) saying why not."""
    try:
        return PLAN.study(name)
    except ConfigError as e:
        raise WorkflowError(f"config error: {e}")


def previous_checkpoint(wc):
    """A dense run is a chain of jobs, one per saved checkpoint, each continuing the last."""
    prev = INDEX.run(wc.run).previous(wc.ckpt)
    return [] if prev is None else [f"results/dense/{wc.run}/seed{wc.dseed}/{prev}.pt"]


def task_artifacts(wc):
    """The extra files the run's task reads (threeregime.spec.task: the translation vocabulary), by
    input name: what train_dense, retrain_cell and landscape_metrics take besides their checkpoint."""
    run = INDEX.run(wc.run)
    return artifact_paths(task_of_run(run), run.data)


def dense_inputs(wc):
    return {"previous": previous_checkpoint(wc), **task_artifacts(wc)}


def with_artifacts(path):
    """A rule's one checkpoint input (named `checkpoint`) and its task's artifacts."""
    return lambda wc: {"checkpoint": path.format(**dict(wc.items())), **task_artifacts(wc)}


def study_inputs(kind):
    def inputs(wc):
        return [c.landscape_path if kind == "landscape" else f"{c.retrain_dir}/retrain_log.csv"
                for _, _, c in study(wc.study).cells()]
    return inputs


def figure_inputs(wc):
    if wc.figure not in FIGURES:
        raise WorkflowError(f"no figure named {wc.figure!r} in config `figures`; figures: {sorted(FIGURES)}")
    spec = FIGURES[wc.figure]
    for name in [spec["study"]] if "study" in spec else spec["compare"]:
        study(name)  # refuses a study that cannot run, naming why
    if "study" in spec and spec.get("lines"):
        return {"cells": f"results/studies/{spec['study']}/cells.parquet"}
    if "study" in spec:
        return {"pdf": f"results/studies/{spec['study']}/phase.pdf", "png": f"results/studies/{spec['study']}/phase.png"}
    return {f"cells{i}": f"results/studies/{s}/cells.parquet" for i, s in enumerate(spec["compare"])}


def case_study(name):
    """The case study a target names, or a config error (before any job runs) saying why not."""
    try:
        return PLAN.case(name)
    except ConfigError as e:
        raise WorkflowError(f"config error: {e}")


def case_dense_index(name):
    """(panel, temperature, dense seed) of each dense checkpoint a case study reads: those of each
    panel's base grid, for an algorithm whose entry (threeregime.casestudies.ALGORITHMS) reads_dense."""
    c = case_study(name)
    if not c.entry.reads_dense:
        return []
    out = []
    for i, p in enumerate(c.panels):
        s = study(c.base_study(p))
        out += [(i, float(t), int(seed)) for t in s.temperatures for seed in s.dense_seeds]
    return out


def case_inputs(wc):
    """Each panel's study tables by role, and (reads_dense) the dense checkpoints of its candidates."""
    c = case_study(wc.case)
    files = {}
    for i, p in enumerate(c.panels):
        for role, s in p.studies.items():
            files[f"p{i}_{role}"] = f"results/studies/{s}/cells.parquet"
            files[f"p{i}_{role}_table"] = f"results/studies/{s}/table.parquet"
    dense = []
    for i, t, seed in case_dense_index(wc.case):
        s = study(c.base_study(c.panels[i]))
        dense.append(s.cell(t, s.loads[0], seed).dense_path)
    if dense:
        files["dense"] = dense
    return files


def case_panel_info(name):
    """What the case-study job needs of each panel's base grid (the entry's base_role):
    threeregime.casestudies.panel_info."""
    c = case_study(name)
    return [panel_info(study(c.base_study(p))) for p in c.panels]
