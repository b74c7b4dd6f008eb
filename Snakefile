# threeregime: dense training -> pruning -> paired retraining -> LMC/CKA -> tables -> figures.
# Usage: snakemake --cores all results/figure2.pdf   (see README.md)
# Defaults: the paper's reference study; presets and --configfile/--config override parts of it.
import os


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/dense.smk"
include: "rules/prune.smk"
include: "rules/retrain.smk"
include: "rules/landscape.smk"
include: "rules/tables.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        "results/figure2.pdf",
