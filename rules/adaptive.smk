# Adaptive search (README "Adaptive search"; the logic is threeregime/adaptive.py): each round is
# a checkpoint whose JSON names the cells the next round reads. Those cells are the full grid's
# own files (CellSpec paths), so they are ordinary cached artifacts: a later full grid computes
# only the cells the search skipped.
import json

from threeregime.adaptive import per_round_of, round_cells  # noqa: E402

ADAPTIVE = "results/studies/{study}/adaptive"


def _json(path):
    with open(path) as f:
        return json.load(f)


def adaptive_round_inputs(wc):
    """Round r reads round r-1's JSON and the metrics of the cells it asked for."""
    r = int(wc.round)
    if r == 0:
        return {}
    previous = checkpoints.adaptive_round.get(study=wc.study, round=str(r - 1)).output[0]
    cells = round_cells(study(wc.study), _json(previous))
    return {"previous": previous, "logs": [f"{c.retrain_dir}/retrain_log.csv" for c in cells],
            "landscapes": [c.landscape_path for c in cells]}


def adaptive_last_round(wc):
    """The first round whose JSON says the search is done (each round asks for >= 1 new cell)."""
    s = study(wc.study)
    for r in range(len(s.temperatures) * len(s.loads) + 2):
        path = checkpoints.adaptive_round.get(study=wc.study, round=str(r)).output[0]
        if _json(path)["done"]:
            return path
    raise WorkflowError(f"adaptive search of {wc.study} did not finish in {r + 1} rounds")


checkpoint adaptive_round:
    """One round of a study's adaptive search: the cells computed so far, what they imply, and
    the cells to compute next."""
    input:
        unpack(adaptive_round_inputs),
    output:
        ADAPTIVE + "/round{round,\\d+}.json",
    params:
        grid=lambda wc: [list(study(wc.study).temperatures), list(study(wc.study).loads)],
        regimes=lambda wc: study(wc.study).regimes,
        per_round=lambda wc: per_round_of(config, wc.study),
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
        csv="results/studies/{study}/adaptive.csv",
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
        png="results/studies/{study}/adaptive.png",
    params:
        regimes=lambda wc: study(wc.study).regimes,
    conda:
        ENV
    log:
        f"{LOGS}/adaptive_diagram/{{study}}.log",
    script:
        "../workflow_scripts/adaptive_diagram.py"
