# Input functions of the settle option's rules (rules/settle.smk).
import json

from threeregime.settle import round_cells as settle_round_cells  # noqa: E402


def _settle_json(path):
    with open(path) as f:
        return json.load(f)


def _settle_study(name):
    s = study(name)
    if not s.settle_batches:
        raise WorkflowError(f"config error: studies.{name} has no settle option: add e.g. "
                            f"settle: {{rounds: 2}} to it (README \"More seeds only where they decide\")")
    return s


def _settle_files(s, state):
    cells = settle_round_cells(s, state)
    return {"logs": [f"{c.retrain_dir}/retrain_log.csv" for _, _, c in cells],
            "landscapes": [c.landscape_path for _, _, c in cells]}


def settle_round_inputs(wc):
    """Round r reads round r-1's JSON and every file of every cell so far (its own copies and
    the batches asked for up to now)."""
    s = _settle_study(wc.study)
    r = int(wc.round)
    if r == 0:
        return _settle_files(s, None)
    previous = checkpoints.settle_round.get(study=wc.study, round=str(r - 1)).output[0]
    return {"previous": previous, **_settle_files(s, _settle_json(previous))}


def settle_last_round(wc):
    """The first round whose JSON says nothing is left to add."""
    s = _settle_study(wc.study)
    for r in range(len(s.settle_batches) + 1):
        path = checkpoints.settle_round.get(study=wc.study, round=str(r)).output[0]
        if _settle_json(path)["done"]:
            return path
    raise WorkflowError(f"settling {wc.study} did not finish in {r + 1} rounds")


def settled_table_inputs(wc):
    last = settle_last_round(wc)
    state = _settle_json(last)
    # the last round measured every batch up to its own: nothing further was asked for
    return {"last": last, **_settle_files(_settle_study(wc.study), {**state, "next": []})}
