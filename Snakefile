# threeregime: dense training -> pruning -> paired retraining -> LMC/CKA -> tables -> figures.
# Usage: snakemake --cores all results/figure2.pdf   (see README.md)
configfile: "config.yaml"


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
