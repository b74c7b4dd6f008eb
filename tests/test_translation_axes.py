"""Key-path axes over a translation study's data (threeregime.study): data.train_pairs, the
amount of training data, is a load axis like data.train_fraction of an image study; the data
keys of the other task are refused naming the task's own."""

import pytest

from test_translation_workflow import TOY
from test_workflow import job_counts, smk, write_config

PAIRS = {**TOY, "load": {"axis": "data.train_pairs", "values": [100, 300]}}  # of toy_train 300


def _plan(study):
    from threeregime.plan import plan_of, read_config

    return plan_of({**read_config([]), "default_studies": ["t"], "studies": {"t": study}, "figures": {},
                    "case_studies": {}})


def test_train_pairs_axis_makes_one_corpus_per_value():
    plan = _plan(PAIRS)
    s = plan.study("t")
    keys = {(t, load): c.run.data.key() for t, load, c in s.cells()}
    assert keys == {(t, n): f"toy-train300-valid20-seed0-n{n}-v64-l16" for t in (1, 2) for n in (100, 300)}
    # two dense runs (one per corpus), each located where the study's data lives, with its own
    # subsample: what its jobs load
    runs = {c.run.key: c.run.data.train_pairs for _, _, c in s.cells()}
    assert sorted(runs.values()) == [100, 300]
    for key, pairs in runs.items():
        spec = plan.index.data_of(key)
        assert (spec.train_pairs, spec.root, spec.identity.key()) == (pairs, "data", keys[(1, pairs)])


def test_train_pairs_axis_plans_a_vocabulary_and_a_dense_run_per_value(tmp_path):
    cfg = write_config(tmp_path, {"default_studies": ["t"], "studies": {"t": PAIRS}, "engine": {"device": "cpu"}})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "results/studies/t/phase.pdf", "--configfile", cfg).stdout)
    # 2 corpora, each its vocabulary and one dense run of 2 one-epoch segments (epochs 1 and 2:
    # the temperatures); 2 x 2 cells, each pruned, retrained and measured once
    assert {k: counts.get(k) for k in ("vocabulary", "train_dense", "retrain_cell", "landscape_metrics")} == \
        {"vocabulary": 2, "train_dense": 4, "retrain_cell": 4, "landscape_metrics": 4}


@pytest.mark.parametrize("study, message", [
    ({**TOY, "load": {"axis": "data.train_pairs", "values": [100, 3000]}},
     "data.train_pairs: 3000 is more than the 300 generated training pairs (data.toy_train)"),
    ({**TOY, "load": {"axis": "data.train_fraction", "values": [0.5, 1]}},
     "'data.train_fraction' is not the key path of a scalar hyperparameter of translation studies; key paths: "),
    ({**TOY, "load": {"axis": "data.toy_seed", "values": [1, 2]}}, "'data.toy_seed' is not the key path"),
    ({"temperature": {"axis": "epochs", "values": [160]}, "load": {"axis": "data.train_pairs", "values": [1, 2]}},
     "'data.train_pairs' is not the key path of a scalar hyperparameter of image_classification studies"),
])
def test_data_axes_of_the_other_task_are_refused_while_planning(study, message):
    broken = _plan(study).broken["t"]
    assert message in broken, broken
    if "of translation studies" in message:
        assert "'data.train_pairs'" in broken and "'data.train_fraction'" not in broken.split("key paths: ")[1]
