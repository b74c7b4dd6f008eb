"""The task registry (threeregime/spec/task.py): every entry is complete and agrees with the
schema, the results schema and the architectures; a study's task picks its data, defaults,
pruned layers, decode and metrics; adding a task is one entry."""

import importlib
from dataclasses import replace

import pytest

from threeregime import results_schema
from threeregime.configfiles import load_schema
from threeregime.plan import plan_of, read_config
from threeregime.spec import task as task_mod
from threeregime.spec.common import ConfigError, deep_merge, resolve
from threeregime.spec.corpus import CorpusIdentity, CorpusSpec, vocabulary_path
from threeregime.spec.data import DataIdentity
from threeregime.spec.identity import DenseRun, RetrainSpec
from threeregime.spec.model import ARCHITECTURES
from threeregime.spec.prune import LAYER_TYPES
from threeregime.spec.task import TASKS, identity_from_dict, task_of_data_name

TOY_STUDY = {
    "task": "translation", "temperature": {"axis": "epochs", "values": [1, 2]},
    "load": {"axis": "density", "values": [0.1, 0.5]},
    "data": {"name": "toy", "vocab_size": 64, "max_len": 16},
    "model": {"arch": "transformer", "depth": 1, "width": 0.125},
    "train": {"epochs": 2, "warmup": 10}, "retrain": {"epochs": 2, "warmup": 10},
}


@pytest.fixture(scope="module")
def base_config():
    return read_config([])


def plan_one(base, study, name="t"):
    cfg = {**base, "studies": {name: study}, "default_studies": [name], "figures": {}, "case_studies": {}}
    p = plan_of(cfg)
    if name in p.broken:
        raise ConfigError(p.broken[name])
    return p.studies[name]


def _module_exists(ref: str) -> bool:
    return importlib.util.find_spec(ref.partition(":")[0]) is not None


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_entry_is_complete(name):
    t = TASKS[name]
    assert t.name == name
    schema = load_schema()["$defs"]
    # its data keys are the schema's, its architectures exist, its layers can be pruned
    assert set(t.data_keys) <= set(schema["data"]["properties"])
    assert set(t.architectures) <= set(ARCHITECTURES) | {"factory"}
    assert set(t.prune_layers) <= set(LAYER_TYPES)
    # its quality column is in both results tables
    for table in (results_schema.TABLE, results_schema.CELLS):
        assert t.quality.column in {c.name for c in table}
    # every reference names a module:attribute that exists (the spec-layer ones resolve here)
    for ref in (t.data_spec, t.data_identity, t.train_dense, t.retrain_cell, t.measure_cell,
                *[a.path for a in t.artifacts]):
        assert isinstance(ref, str) and ":" in ref and _module_exists(ref), ref
    assert callable(resolve(t.data_spec)) and hasattr(resolve(t.data_identity), "as_dict")
    if t.decodes:
        assert t.check_decode(None, "x") == t.default_decode
    if t.defaults is not None:
        assert set(t.defaults) <= set(task_mod.TASK_SECTIONS)


def test_task_enum_of_the_schema_is_the_registry():
    study = load_schema()["properties"]["studies"]["additionalProperties"]["properties"]
    assert study["task"]["enum"] == list(TASKS)


def test_job_functions_resolve():
    for t in TASKS.values():
        for ref in (t.train_dense, t.retrain_cell, t.measure_cell):
            assert callable(resolve(ref)), ref


def test_data_identity_round_trips_through_the_task_owning_its_name():
    image = DataIdentity("cifar100")
    corpus = CorpusIdentity("wmt14", "de-en", 1280000, 0, 32000, 256)
    assert identity_from_dict(image.as_dict()) == image
    assert identity_from_dict(corpus.as_dict()) == corpus
    assert task_of_data_name("toy").name == task_of_data_name("wmt14").name == "translation"
    assert task_of_data_name("npz").name == "image_classification"
    # data keys never contain "_": a run key's data key is read back from its first field
    assert "_" not in corpus.key() and corpus.key() == "wmt14deen-n1280000-v32000-l256"
    assert vocabulary_path(corpus) == "results/vocab/wmt14deen-n1280000-v32000-l256/sentencepiece.model"


def test_a_translation_study_takes_its_tasks_defaults_not_the_image_defaults(base_config):
    s = plan_one(base_config, TOY_STUDY)
    assert s.task == "translation" and isinstance(s.data, CorpusSpec)
    run, retrain, prune = s.base.run, s.base.retrain, s.base.prune
    # Adam, inverse_sqrt with label smoothing 0.1, no milestones (the image defaults' [80, 120] are not merged)
    assert (run.train.optimizer, run.train.schedule, run.train.label_smoothing, run.train.milestones) == \
        ("adam", "inverse_sqrt", 0.1, ())
    assert run.checkpoint_every == 1 and run.checkpoints() == ["epoch1", "epoch2"]
    assert prune.layers == ("linear",)
    assert run.key.startswith("toy-train4000-valid200-seed0-nall-v64-l16_transformer1w0.125_adam_bs128_e2-")
    # the dense run's spec travels to its job and back
    assert DenseRun.from_dict(run.as_dict()) == run
    assert RetrainSpec.from_dict(retrain.as_dict()) == retrain


def test_decode_is_in_the_retrain_key_only_when_not_the_default(base_config):
    greedy = plan_one(base_config, deep_merge(TOY_STUDY, {"retrain": {"decode": "greedy"}})).base.retrain
    implicit = plan_one(base_config, TOY_STUDY).base.retrain
    beam = plan_one(base_config, deep_merge(TOY_STUDY, {"retrain": {"decode": "beam4"}})).base.retrain
    assert greedy.key == implicit.key and "decode" not in greedy.as_dict()
    assert beam.key != greedy.key and beam.as_dict()["decode"] == "beam4" and beam.decode == "beam4"
    assert RetrainSpec.from_dict(beam.as_dict()) == beam


@pytest.mark.parametrize("over, message", [
    ({"data": {"crop_padding": 4}}, "studies.t.data.crop_padding: a translation study's data has no 'crop_padding'"),
    ({"data": {"name": "wmt14"}}, "studies.t.data.pair is missing"),
    ({"data": {"name": "wmt14", "pair": "de-fr"}}, "WMT14 has no language pair 'de-fr'"),
    ({"data": {"vocab_size": 10}}, "data.vocab_size must be at least 32"),
    ({"data": {"max_len": 4}}, "data.max_len must be at least 8"),
    ({"data": {"train_pairs": 5000}}, "data.train_pairs: 5000 is more than the 4000 generated"),
    ({"model": {"arch": "preresnet", "depth": 20}}, "'preresnet' is not a network of task translation"),
    ({"retrain": {"decode": "beam1"}}, "'beam1' is not a decoding method of translation"),
    ({"train": {"decode": "beam4"}}, "move it to retrain.decode"),
    ({"train": {"warmup": 0}}, "studies.t.train.warmup must be > 0 with schedule inverse_sqrt"),
    ({"task": "language_modelling"}, "unknown task 'language_modelling'"),
])
def test_bad_translation_input_is_refused_while_planning(base_config, over, message):
    with pytest.raises(ConfigError, match=None) as e:
        plan_one(base_config, deep_merge(TOY_STUDY, over))
    assert message in str(e.value)


@pytest.mark.parametrize("over, message", [
    ({"data": {"vocab_size": 100}}, "studies.i.data.vocab_size: an image_classification study's data has no "
                                    "'vocab_size' (a key of translation data)"),
    ({"retrain": {"decode": "greedy"}}, "image_classification studies do not decode"),
    ({"model": {"arch": "transformer", "depth": 6}}, "'transformer' is not a network of task image_classification"),
    ({"data": {"name": "toy"}}, "studies.i.data.name: 'toy' is translation data; set the study's task: translation"),
])
def test_translation_keys_are_refused_on_an_image_study(base_config, over, message):
    study = deep_merge({"temperature": {"axis": "epochs", "values": [10]}, "load": {"axis": "density", "values": [0.1]}},
                       over)
    with pytest.raises(ConfigError) as e:
        plan_one(base_config, study, "i")
    assert message in str(e.value)


def test_adding_a_task_is_one_entry(base_config, monkeypatch):
    """A new task (here: a stand-in for language modelling on the toy corpus's target side, with
    its own quality metric) is one registry entry: studies of it plan, with its defaults."""
    entry = replace(TASKS["translation"], name="language_modelling", data_names=("toy",),
                    quality=task_mod.Metric("bleu", "Perplexity", False),
                    defaults=deep_merge(TASKS["translation"].defaults, {"prune": {"layers": ["linear", "conv"]}}))
    monkeypatch.delitem(TASKS, "translation")  # the toy corpus becomes the new task's data
    monkeypatch.setitem(TASKS, "language_modelling", entry)
    s = plan_one(base_config, {**TOY_STUDY, "task": "language_modelling"})
    assert s.entry is entry and s.base.prune.layers == ("linear", "conv") and s.task == "language_modelling"
