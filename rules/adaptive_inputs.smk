# Input functions of the adaptive search's rules (rules/adaptive.smk).
import json

from threeregime.adaptive import round_cells, settings_of  # noqa: E402


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
