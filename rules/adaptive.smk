# Adaptive search (README "Adaptive search"; the logic is threeregime/adaptive.py): each round is
# a checkpoint whose JSON names the cells the next round reads. Those cells are the full grid's
# own files (CellSpec paths), so they are ordinary cached artifacts: a later full grid computes
# only the cells the search skipped.
include: "adaptive_inputs.smk"


checkpoint adaptive_round:
    """One round of a study's adaptive search: the cells computed so far, what they imply, and
    the cells to compute next."""
    input:
        unpack(adaptive_round_inputs),
    output:
        "results/studies/{study}/adaptive/round{round,[0-9]+}.json",
    params:
        # grid and regimes are not read by the script (it resolves the study): recorded by
        # Snakemake, a changed grid or threshold redoes the round although its inputs are the same
        grid=lambda wc: [list(study(wc.study).temperatures), list(study(wc.study).loads)],
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
        settings=lambda wc: settings_of(config, wc.study),
    conda:
        ENV
    log:
        f"{LOGS}/adaptive_round/{{study}}/round{{round}}.log",
    script:
        "../workflow_scripts/adaptive_round.py"


rule adaptive_table:
    """Every cell of the study's grid: computed (values, round, why) or skipped (inferred regime, why)."""
    input:
        adaptive_last_round,
    output:
        table="results/studies/{study}/adaptive.parquet",
        csv=report("results/studies/{study}/adaptive.csv", caption="../report/adaptive.rst", category="{study}",
                   subcategory="Adaptive search"),
    conda:
        ENV
    log:
        f"{LOGS}/adaptive_table/{{study}}.log",
    script:
        "../workflow_scripts/adaptive_table.py"


rule adaptive_diagram:
    """The adaptive phase diagram: computed cells coloured, skipped cells hatched in their inferred regime."""
    input:
        "results/studies/{study}/adaptive.parquet",
    output:
        pdf="results/studies/{study}/adaptive.pdf",
        png=report("results/studies/{study}/adaptive.png", caption="../report/adaptive.rst", category="{study}",
                   subcategory="Adaptive search"),
    params:
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
    conda:
        ENV
    log:
        f"{LOGS}/adaptive_diagram/{{study}}.log",
    script:
        "../workflow_scripts/phase_diagram.py"
