"""What a study learns: the task registry (image classification, translation).

A study's `task:` (default `image_classification`) picks one entry of TASKS. The entry says
everything that differs between tasks, so planning, the rules and the downstream stages ask
it instead of assuming images:

  data          its data section: which keys it takes, how the section becomes the located
                spec the jobs read (DataSpec or CorpusSpec), and the identity class that is
                part of run keys (DataIdentity or CorpusIdentity; `identity_from_dict` tells
                them apart by their `name`)
  defaults      the sections (data, model, train, retrain, prune) a study of the task starts
                from instead of the config's `defaults` (which describe PreResNet-20 on
                CIFAR-10); seeds, landscape and regimes still come from `defaults`
  architectures the model.arch values it can train; prune_layers: what prune.layers defaults to
  jobs          the job functions the rules call ("module:function", imported where the job
                runs), and extra artifacts its jobs read (the translation vocabulary)
  optimizers    the train/retrain.optimizer values its training loop has (translation: Adam)
  metrics       the error LMC is measured on, the quality metric tables and figures report
                (column, label, which way is better), what CKA compares, and how evaluation
                decodes (the allowed and default `retrain.decode`)

Adding a task (say language modelling) is one `Task` entry: its data spec and identity in the
spec layer (as spec/corpus.py), its job functions with the file contracts of
threeregime/pipeline.py, its quality column in results_schema.py if it reports a new one, and
tests (tests/test_task_registry.py checks every entry; README "Adding a task").

Imports no torch: every runtime object is a "module:attribute" reference (spec.common.resolve).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .common import ConfigError, resolve
from .train import Ref

DEFAULT_TASK = "image_classification"
# The sections a task's own defaults replace (the config's `defaults` describe image studies).
TASK_SECTIONS = ("data", "model", "train", "retrain", "prune")


@dataclass(frozen=True)
class Metric:
    """A per-copy quality metric as tables and figures report it."""

    column: str                 # the column of table.parquet / cells.parquet
    label: str                  # axis / colour-bar label
    higher_is_better: bool
    scale: float = 1.0          # shown as value * scale (test error: a fraction, shown in %)
    unit: str = ""


@dataclass(frozen=True)
class Artifact:
    """An extra file a task's jobs read (besides the dense checkpoints): its input name in the
    rules, and its path from the run's data identity (keyed by what made it)."""

    name: str                   # the named input of train_dense / retrain_cell / landscape_metrics
    path: Ref                   # identity -> "results/..." (spec layer)
    description: str = ""


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    # --- data
    data_names: tuple[str, ...]          # data.name values of this task (() = every name no other task owns)
    data_keys: tuple[str, ...]           # the keys its data section takes
    data_spec: Ref                       # (data section, where) -> the located spec (spec layer)
    data_identity: Ref                   # the identity class (from_dict / as_dict / key)
    # --- model, pruning
    architectures: tuple[str, ...]
    prune_layers: tuple[str, ...]
    # --- jobs ("module:function", same file contracts as threeregime/pipeline.py)
    train_dense: Ref
    retrain_cell: Ref
    measure_cell: Ref
    artifacts: tuple[Artifact, ...] = ()
    # --- metrics
    lmc_error: str = ""
    quality: Metric = Metric("test_error", "Test error (%)", False, 100.0, "%")
    cka: str = ""
    decodes: str = ""                    # regex of the allowed retrain.decode values ("" = none)
    default_decode: str = ""
    # --- the sections a study of this task starts from (None: the config's defaults)
    defaults: dict | None = field(default=None, hash=False, compare=False)
    # --- train/retrain keys only this task takes (refused on other tasks)
    train_keys: tuple[str, ...] = ()
    # --- the optimizers its training loop has (train/retrain.optimizer; () = every TrainSpec optimizer)
    optimizers: tuple[str, ...] = ()

    def owns(self, data_name: str) -> bool:
        return data_name in self.data_names

    def identity_from_dict(self, d: dict):
        return resolve(self.data_identity).from_dict(d) if hasattr(resolve(self.data_identity), "from_dict") \
            else resolve(self.data_identity)(**d)

    def check_decode(self, decode: str, where: str) -> str:
        """`decode` as configured, checked; the default when it is None."""
        if decode is None:
            return self.default_decode
        if not self.decodes:
            raise ConfigError(f"{where}: {self.name} studies do not decode (retrain.decode is a translation "
                              f"setting: greedy or beam<k>); remove it")
        if not re.fullmatch(self.decodes, str(decode)):
            raise ConfigError(f"{where}: {decode!r} is not a decoding method of {self.name}; allowed: greedy or "
                              f"beam<k> with a beam size k >= 2 (e.g. beam4)")
        return str(decode)


# Transformer-base on WMT14 as in the paper's Appendix B.2 (Vaswani et al. 2017): Adam with the
# inverse square-root schedule and 4,000 warm-up steps for training and retraining; label
# smoothing 0.1 as usual for Transformer-base; 10 training epochs (each one a checkpoint, the
# temperature); the linear weights of attention and feed-forward blocks pruned (the embeddings
# are shared with the output projection, which is therefore no separate Linear and stays dense).
TRANSLATION_DEFAULTS = {
    # The corpus is the study's to name (data.name, and data.pair for WMT14: no default pair).
    "data": {"name": "wmt14", "root": "data", "download": False},
    "model": {"arch": "transformer", "depth": 6, "width": 1},
    # lr 7e-4: the peak of Vaswani et al.'s d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) at
    # d_model 512, warmup 4000 (512^-0.5 * 4000^-0.5 = 6.99e-4); batch_size counts sentence pairs.
    "train": {"optimizer": "adam", "lr": 0.0007, "weight_decay": 0, "momentum": 0.9, "rho": 0,
              "batch_size": 128, "epochs": 10, "iterations": 0, "milestones": [], "gamma": 0.1,
              "schedule": "inverse_sqrt", "warmup": 4000, "label_smoothing": 0.1, "checkpoint_every": 1},
    "retrain": {"optimizer": "adam", "lr": 0.0007, "weight_decay": 0, "momentum": 0.9, "rho": 0,
                "batch_size": 128, "epochs": 10, "iterations": 0, "milestones": [], "gamma": 0.1,
                "schedule": "inverse_sqrt", "warmup": 4000, "label_smoothing": 0.1},
    "prune": {"method": "uniform", "layers": ["linear"]},
}


CORPUS_KEYS = ("name", "pair", "train_pairs", "subsample_seed", "vocab_size", "max_len", "root", "download",
               "toy_train", "toy_valid", "toy_seed")


TASKS: dict[str, Task] = {t.name: t for t in (
    Task(
        "image_classification", "images -> one of num_classes classes (the paper's main experiments)",
        data_names=(),
        data_keys=("name", "root", "download", "crop_padding", "hflip", "image_size", "train_fraction"),
        data_spec="threeregime.study:data_spec",
        data_identity="threeregime.spec.data:DataIdentity",
        architectures=("preresnet", "vgg", "densenet", "factory"),
        prune_layers=("conv",),
        train_dense="threeregime.pipeline:train_dense",
        retrain_cell="threeregime.pipeline:retrain_cell",
        measure_cell="threeregime.pipeline:measure_cell",
        lmc_error="training error (misclassified training images) along the line between two copies, "
                  "BatchNorm re-estimated at each point",
        quality=Metric("test_error", "Test error (%)", False, 100.0, "%"),
        cka="the copies' softmax outputs (and logits) on a fixed sample of training images",
    ),
    Task(
        "translation", "sentence pairs -> target sentences (Appendix B.2, Figure 14: Transformer on WMT14)",
        data_names=("toy", "wmt14"),
        data_keys=CORPUS_KEYS,
        data_spec="threeregime.spec.task:corpus_spec",
        data_identity="threeregime.spec.corpus:CorpusIdentity",
        architectures=("transformer",),
        prune_layers=("linear",),
        train_dense="threeregime.seq2seq.pipeline:train_dense",
        retrain_cell="threeregime.seq2seq.pipeline:retrain_cell",
        measure_cell="threeregime.seq2seq.pipeline:measure_cell",
        artifacts=(Artifact("vocab", "threeregime.spec.corpus:vocabulary_path",
                            "the joint sentencepiece BPE vocabulary, trained once on the training subsample"),),
        lmc_error="teacher-forced token error on a fixed sample of training sentence pairs along the line between "
                  "two copies (LayerNorm: nothing to re-estimate)",
        quality=Metric("bleu", "BLEU", True, 1.0, ""),
        cka="the copies' output distributions (softmax over the vocabulary) at a fixed sample of target tokens",
        decodes=r"greedy|beam([2-9]|[1-9][0-9]+)",
        default_decode="greedy",
        defaults=TRANSLATION_DEFAULTS,
        optimizers=("adam",),
    ),
)}


def task_named(name, where: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"{where}: unknown task {name!r}; allowed: {list(TASKS)}")
    return TASKS[name]


def task_of_data_name(data_name: str) -> Task:
    """The task whose data `data_name` is (a name no task owns is image classification's)."""
    for t in TASKS.values():
        if t.owns(data_name):
            return t
    return TASKS[DEFAULT_TASK]


def identity_from_dict(d: dict):
    """A run's data identity from its as_dict (DenseRun.from_dict): the task owning its name builds it."""
    return task_of_data_name(d.get("name", "")).identity_from_dict(d)


def task_of_identity(identity) -> Task:
    """The task of a run's data identity."""
    return task_of_data_name(identity.name)


def task_of_run(run) -> Task:
    return task_of_identity(run.data)


def artifact_paths(task: Task, identity) -> dict[str, str]:
    """{input name: path} of the extra artifacts a task's jobs read for data `identity`."""
    return {a.name: resolve(a.path)(identity) for a in task.artifacts}


def corpus_spec(data: dict, where: str = "data"):
    """A translation study's data section as a CorpusSpec (spec/corpus.py checks the values)."""
    from .corpus import CorpusIdentity, CorpusSpec

    # whole numbers and every bound are checked by CorpusIdentity, naming data.<key>
    kw = {k: data[k] for k in CORPUS_KEYS if k in data and k not in ("root", "download")}
    if kw.get("name") == "wmt14" and "pair" not in kw:
        raise ConfigError("data.pair is missing: name the WMT14 language pair as source-target, e.g. pair: de-en "
                          "(German to English); WMT14 has cs-en, de-en, fr-en, hi-en, ru-en, either direction")
    try:
        identity = CorpusIdentity(**kw)
    except TypeError as e:
        raise ConfigError(f"data: {e}") from None
    return CorpusSpec(root=str(data.get("root", "data")), download=bool(data.get("download", False))).located(identity)


def wrong_task_keys(task: Task, section: str, keys, where: str) -> None:
    """Refuse keys of another task's data (crop_padding on a translation study, vocab_size on an
    image study) and train keys only another task takes, naming the key and the tasks."""
    if section == "data":
        for k in keys:
            if k not in task.data_keys:
                owners = [t.name for t in TASKS.values() if k in t.data_keys]
                article = "an" if task.name[0] in "aeiou" else "a"
                raise ConfigError(f"{where}.data.{k}: {article} {task.name} study's data has no {k!r}"
                                  + (f" (a key of {' and '.join(owners)} data)" if owners else "")
                                  + f"; its data keys: {list(task.data_keys)}. Remove it, or set the study's "
                                  f"task: {owners[0] if owners else '...'}")
    elif section in ("train", "retrain"):
        for k in keys:
            others = [t.name for t in TASKS.values() if k in t.train_keys and t is not task]
            if others and k not in task.train_keys:
                raise ConfigError(f"{where}.{section}.{k}: only {' and '.join(others)} studies take {k}; "
                                  f"this study's task is {task.name}: remove it")


ArtifactPath = Callable[[object], str]
