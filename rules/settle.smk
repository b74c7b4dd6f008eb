# More retrain seeds only where they decide (README "More seeds only where they decide"; the
# logic is threeregime/settle.py): each round is a checkpoint whose JSON names the cells that
# get a batch of extra copies next. A batch is an ordinary retraining (its own RetrainSpec and
# path, retrain_cell and landscape_metrics as always), so existing files are reused.
include: "settle_inputs.smk"


checkpoint settle_round:
    """One round of the settle option: every cell's regime with its copies so far, and the
    unsettled cells that get a batch of extra copies next."""
    input:
        unpack(settle_round_inputs),
    output:
        "results/studies/{study}/settle/round{round,[0-9]+}.json",
    params:
        # not read by the script (it resolves the study): recorded, so a changed setting redoes it
        batches=lambda wc: [list(b) for b in study(wc.study).settle_batches],
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
    conda:
        ENV
    log:
        f"{LOGS}/settle_round/{{study}}/round{{round}}.log",
    script:
        "../workflow_scripts/settle_round.py"


rule settled_table:
    """The study's cells with every extra copy, and how many pairs each has and why."""
    input:
        unpack(settled_table_inputs),
    output:
        table="results/studies/{study}/settled.parquet",
        csv=report("results/studies/{study}/settled.csv", caption="../report/settled.rst", category="{study}",
                   subcategory="Settled regimes"),
    params:
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
    conda:
        ENV
    log:
        f"{LOGS}/settled_table/{{study}}.log",
    script:
        "../workflow_scripts/settle_round.py"


rule settled_diagram:
    """The phase diagram of the settled table (unsettled cells hatched, as on every diagram)."""
    input:
        "results/studies/{study}/settled.parquet",
    output:
        pdf="results/studies/{study}/settled.pdf",
        png=report("results/studies/{study}/settled.png", caption="../report/settled.rst", category="{study}",
                   subcategory="Settled regimes"),
    params:
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
    conda:
        ENV
    log:
        f"{LOGS}/settled_diagram/{{study}}.log",
    script:
        "../workflow_scripts/phase_diagram.py"
