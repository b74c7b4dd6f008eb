# threeregime: dense training -> pruning -> paired retraining -> LMC/CKA -> tables -> figures.
# Usage: snakemake --cores all results/figure2.pdf   (see README.md)
# config.yaml holds the paper's reference studies; presets and --configfile override parts of it.
import os


configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/vocabulary.smk"
include: "rules/dense.smk"
include: "rules/prune.smk"
include: "rules/retrain.smk"
include: "rules/landscape.smk"
include: "rules/tables.smk"
include: "rules/figures.smk"
include: "rules/report.smk"
include: "rules/casestudies.smk"
include: "rules/adaptive.smk"
include: "rules/settle.smk"


rule all:
    """The phase diagrams of the studies in `default_studies`."""
    default_target: True
    input:
        lambda wc: [f"results/studies/{study(s).name}/phase.pdf" for s in config.get("default_studies", [])],
