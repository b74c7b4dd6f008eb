"""No config can make the workflow write outside results/ (issue 14).

Every value that reaches a path is either refused (study names) or turned into a key (data
files, hyperparameters); where data lives is never part of a path. A dry run
lists every output and log file of the planned DAG without running anything.
"""

import os

from test_workflow import TINY_STUDY, smk, write_config


def planned_files(tmp_path, cfg, *targets) -> list[str]:
    out = smk("-n", "-d", str(tmp_path), *targets, "--configfile", write_config(tmp_path, cfg)).stdout
    files = []
    for line in out.splitlines():
        key, _, rest = line.strip().partition(": ")
        if key in ("output", "log"):
            files += [f.strip().split(" (")[0] for f in rest.split(", ") if f.strip()]
    return files


def outside_results(files: list[str]) -> list[str]:
    return [f for f in files if os.path.isabs(f) or os.path.normpath(f).split(os.sep)[0] != "results"
            or ".." in f.split("/")]


def test_every_planned_file_is_under_results(tmp_path):
    """Data files named with `..` and absolute paths, and study names with every allowed
    character: one dry run plans them all, and every output and log is under results/.
    (Study names that could leave results/ are refused: tests/test_study.py, test_workflow.py.)"""
    cases = {"dotted-name_1": {"name": "digits", "root": ""},
             "npzup": {"name": "npz", "root": "../../../../elsewhere/../x.npz"},
             "npzabs": {"name": "npz", "root": "/tmp/../tmp/abs data.npz"}}
    studies = {name: {**TINY_STUDY, "data": {**TINY_STUDY["data"], **data},
                      "temperature": {"axis": "epochs", "values": [2]}, "load": {"axis": "density", "values": [0.5]}}
               for name, data in cases.items()}
    cfg = {"default_studies": list(cases), "studies": studies, "engine": {"device": "cpu"}}
    files = planned_files(tmp_path, cfg)
    for name in cases:                                   # each study's whole chain was planned
        assert f"results/studies/{name}/phase.pdf" in files
    assert sum("retrained.pt" in f for f in files) == 3  # one cell per study (other data, other key)
    assert any(f.startswith("results/logs/") for f in files)
    assert outside_results(files) == []
