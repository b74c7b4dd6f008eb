"""Studies: named temperature x load grids, resolved from the config into typed cells.

A study (config `studies.<name>`) overrides parts of the shared `defaults` and names one
temperature axis and one load axis with their values. Each (temperature, load, dense seed)
cell resolves to a `CellSpec`: the typed hyperparameters of the dense run, its checkpoint,
the pruning, the retraining and the landscape measurement. Artifacts are keyed by those
hyperparameters, never by the study's name, so two studies needing the same dense run or
the same cell share its files (paths and keys: threeregime/spec/identity.py).

Adding a temperature or load axis is one `Axis` entry in AXES plus its tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Callable

from .configfiles import load_schema, number_hint
from .regimes import Regimes
from .spec.common import ConfigError, deep_merge, fmt, whole
from .spec.data import IMAGEFOLDER, DataIdentity, DataSpec, check_image_folder
from .spec.identity import CellSpec, DenseRun, RetrainSpec, study_dir
from .spec.landscape import LandscapeSpec
from .spec.model import ModelSpec, factory_source
from .spec.prune import DEFAULT_LAYERS, METHODS, PruneSpec
from .spec.task import DEFAULT_TASK, TASK_SECTIONS, TASKS, Task, task_named, task_of_data_name
from .spec.train import TrainSpec

SECTIONS = ("data", "model", "train", "prune", "retrain", "landscape", "seeds", "regimes")
TRAIN_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "rho", "batch_size", "epochs", "iterations",
              "milestones", "gamma", "schedule", "warmup", "label_smoothing")
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_-]*"


# --- axes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    """A temperature or load axis: how one of its values changes a cell, and how it is shown."""

    name: str
    kind: str                                  # "temperature" | "load"
    label: str                                 # axis label of the phase diagram
    apply: Callable[["CellSpec", float], "CellSpec"]
    integer: bool = False
    hotter: str = "low"                        # temperatures: which end is the higher temperature
    tick: Callable[[float], str] = fmt
    check: Callable[[float], str | None] = lambda v: None  # an error text for a value, or None


def _epochs(cell: CellSpec, v) -> CellSpec:
    return replace(cell, ckpt=f"epoch{int(v)}")


def _batch(cell: CellSpec, v) -> CellSpec:
    return replace(cell, run=replace(cell.run, train=replace(cell.run.train, batch_size=int(v))),
                   ckpt="final" if cell.run.train.iterations else cell.run.final())


def _sam_rho(cell: CellSpec, v) -> CellSpec:
    # rho = 0 is plain SGD: that cell shares the SGD run of the same schedule.
    t = cell.run.train
    t = replace(t, optimizer="sam", rho=float(v)) if v else replace(t, optimizer="sgd", rho=0.0)
    run = replace(cell.run, train=t)
    return replace(cell, run=run, ckpt=run.final())


def _density(cell: CellSpec, v) -> CellSpec:
    return replace(cell, prune=replace(cell.prune, density=float(v)))


def _width(cell: CellSpec, v) -> CellSpec:
    return replace(cell, run=replace(cell.run, model=replace(cell.run.model, width=float(v))))


def _depth(cell: CellSpec, v) -> CellSpec:
    return replace(cell, run=replace(cell.run, model=replace(cell.run.model, depth=int(v))))


def _positive(v):
    return None if v > 0 else "must be > 0"


AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("epochs", "temperature", "Temperature (training epochs)", _epochs, integer=True, check=_positive),
    Axis("batch_size", "temperature", "Temperature (batch size)", _batch, integer=True, check=_positive),
    Axis("sam_rho", "temperature", "Temperature (SAM ρ)", _sam_rho, hotter="high",
         check=lambda v: None if v >= 0 else "must be >= 0"),
    Axis("density", "load", "Load (density, %)", _density, tick=lambda v: fmt(v * 100),
         check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
    Axis("width", "load", "Load (width ×)", _width, check=_positive),
    # Which depths exist is the architecture's (models.ARCHITECTURES), checked per cell in _check_study.
    Axis("depth", "load", "Load (depth)", _depth, integer=True, check=_positive),
)}


# --- axes by key path -----------------------------------------------------------------------------
# Any scalar hyperparameter is an axis, named by its key path in the config: `train.lr`,
# `retrain.weight_decay`, `model.width`, `model.kwargs.<name>`, `data.train_fraction`,
# `prune.density`; `data.*` are the numeric fields of the study's task's data identity
# (image: data.train_fraction, data.image_size; translation: data.train_pairs, ...). A value changes that one field of a cell's spec, so each value is its own
# dense run (or pruned model, for prune.* and retrain.*), keyed like any other; only the named
# `epochs` axis reads several checkpoints of one run.

def _with_run(cell: CellSpec, run: DenseRun) -> CellSpec:
    # A cell at its run's last checkpoint stays at the last one of the changed run (train.epochs
    # changes it); a cell the epochs axis put at an earlier checkpoint keeps it.
    return replace(cell, run=run, ckpt=run.final() if cell.ckpt == cell.run.final() else cell.ckpt)


# section -> (its spec class, the spec of a cell, a cell with that spec changed)
KEY_PATH_SECTIONS: dict[str, tuple[type, Callable, Callable]] = {
    "train": (TrainSpec, lambda c: c.run.train, lambda c, t: _with_run(c, replace(c.run, train=t))),
    "retrain": (TrainSpec, lambda c: c.retrain.train, lambda c, t: replace(c, retrain=replace(c.retrain, train=t))),
    "model": (ModelSpec, lambda c: c.run.model, lambda c, m: _with_run(c, replace(c.run, model=m))),
    "data": (DataIdentity, lambda c: c.run.data, lambda c, d: _with_run(c, replace(c.run, data=d))),
    "prune": (PruneSpec, lambda c: c.prune, lambda c, p: replace(c, prune=p)),
}
# Not axes: the data's shape (filled in by the job), and the augmentation, which the data key
# in a run's path does not name (jobs find where their data lives by that key); the toy
# corpus's generation (its language and validation set: data.train_pairs is its amount of data).
NOT_HYPERPARAMETERS = {"model.in_channels", "model.num_classes", "data.crop_padding", "data.toy_train",
                       "data.toy_valid", "data.toy_seed"}
HOTTER = {"higher": "high", "lower": "low"}  # a study's `hotter:` -> Axis.hotter


def _section_fields(section: str, task: Task | None) -> dict:
    """The fields of a key-path section's spec, by name: for `data`, the task's data identity
    (DataIdentity, CorpusIdentity), or every task's when none is given (an axis read back by
    name from a table)."""
    from .spec.common import resolve

    if section != "data":
        return {f.name: f for f in fields(KEY_PATH_SECTIONS[section][0])}
    out = {}
    for t in [task] if task is not None else TASKS.values():
        out.update({f.name: f for f in fields(resolve(t.data_identity)) if f.name not in out})
    return out


def key_paths(task: Task | None = None) -> list[str]:
    """Every key path that can be an axis of a study of `task` (default: of any task): the
    numeric fields of the specs (not booleans)."""
    out = []
    for section in KEY_PATH_SECTIONS:
        for f in _section_fields(section, task).values():
            path = f"{section}.{f.name}"
            if isinstance(f.default, (int, float)) and not isinstance(f.default, bool) \
                    and path not in NOT_HYPERPARAMETERS:
                out.append(path)
    if "kwargs" in {f.name for f in fields(ModelSpec)}:
        out.append("model.kwargs.<name>")
    return out


@lru_cache(maxsize=None)
def _schema_limits(section: str, name: str) -> dict:
    """The numeric limits (minimum, maximum, ...) the config schema gives `section.name`."""
    defs = load_schema()["$defs"]
    prop = defs.get("train" if section == "retrain" else section, {}).get("properties", {}).get(name, {})
    return {k: v for k, v in prop.items() if k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")}


def _within(limits: dict):
    def check(v):
        for k, bound, ok in (("minimum", ">=", lambda a, b: a >= b), ("maximum", "<=", lambda a, b: a <= b),
                             ("exclusiveMinimum", ">", lambda a, b: a > b),
                             ("exclusiveMaximum", "<", lambda a, b: a < b)):
            if k in limits and not ok(v, limits[k]):
                return f"must be {bound} {limits[k]}"
        return None
    return check


def key_path_axis(path: str, kind: str, where: str, task: Task | None = None) -> Axis:
    """The axis over the hyperparameter at `path` (e.g. 'train.lr') of a study of `task`, or a
    ConfigError naming `where` and listing the key paths that exist."""
    section, _, name = path.partition(".")
    named = sorted(a for a, x in AXES.items() if x.kind == kind)
    if section not in KEY_PATH_SECTIONS or not name:
        raise ConfigError(f"{where}: {path!r} is neither a {kind} axis {named} nor the key path of a scalar "
                          f"hyperparameter; key paths: {key_paths(task)}")
    cls, get, put = KEY_PATH_SECTIONS[section]
    if section == "model" and name.startswith("kwargs."):
        if "kwargs" not in {f.name for f in fields(cls)} or not name[len("kwargs."):]:
            raise ConfigError(f"{where}: {path!r}: model.kwargs.<name> is an argument of a model factory "
                              f"(model.factory); key paths: {key_paths(task)}")
        arg = name[len("kwargs."):]

        def apply(cell, v):
            # A factory's argument: whole numbers are ints (2 and 2.0 are one run), others floats.
            m = get(cell)
            v = int(v) if float(v).is_integer() else float(v)
            return put(cell, replace(m, kwargs={**(m.kwargs or {}), arg: v}))
        return Axis(path, kind, f"{kind.capitalize()} ({path})", apply)
    f = _section_fields(section, task).get(name)
    if f is None or path not in key_paths(task):
        of = f" of {task.name} studies" if task is not None and section == "data" else ""
        raise ConfigError(f"{where}: {path!r} is not the key path of a scalar hyperparameter{of}; key paths: "
                          f"{key_paths(task)} (or a named {kind} axis: {named})")
    integer = isinstance(f.default, int)
    apply = lambda cell, v: put(cell, replace(get(cell), **{name: int(v) if integer else float(v)}))
    return Axis(path, kind, f"{kind.capitalize()} ({path})", apply, integer=integer,
                check=_within(_schema_limits(section, name)))


def study_axis(spec: dict, kind: str, where: str, task: Task | None = None) -> Axis:
    """A study's temperature or load axis from its config (`axis`, and `label`, `hotter`): a
    named axis of AXES or a key path (key_path_axis). A key-path temperature says which way is
    hotter (`hotter: higher | lower`, read by the case studies and the phase diagram)."""
    name = spec.get("axis")
    if name in AXES:
        axis = AXES[name]
        if axis.kind != kind:
            allowed = sorted(a for a, x in AXES.items() if x.kind == kind)
            raise ConfigError(f"{where}.axis: {name!r} is not a {kind} axis; allowed: {allowed} or the key "
                              f"path of a scalar hyperparameter (e.g. train.lr)")
    elif isinstance(name, str) and "." in name:
        axis = key_path_axis(name, kind, f"{where}.axis", task)
    else:
        allowed = sorted(a for a, x in AXES.items() if x.kind == kind)
        raise ConfigError(f"{where}.axis: {name!r} is not a {kind} axis; allowed: {allowed} or the key path of a "
                          f"scalar hyperparameter: {key_paths(task)}")
    hotter = spec.get("hotter")
    if hotter is not None:
        if kind != "temperature":
            raise ConfigError(f"{where}.hotter: only a temperature axis has a hotter end; remove it from the load")
        if hotter not in HOTTER:
            raise ConfigError(f"{where}.hotter: {hotter!r}; allowed: {sorted(HOTTER)}")
        if name in AXES and HOTTER[hotter] != axis.hotter:
            raise ConfigError(f"{where}.hotter: the {name} axis is hotter at {axis.hotter}er values; remove hotter")
        axis = replace(axis, hotter=HOTTER[hotter])
    elif kind == "temperature" and name not in AXES:
        raise ConfigError(f"{where}.hotter is missing: say which values of {name} are the higher temperature, "
                          f"hotter: higher (a larger train.lr is hotter) or hotter: lower (a smaller "
                          f"train.batch_size is hotter)")
    if spec.get("label"):
        axis = replace(axis, label=str(spec["label"]))
    return axis


def axis_named(name: str, kind: str) -> Axis:
    """The axis a table or a case study records by name (a named axis or a key path)."""
    if name in AXES:
        return AXES[name]
    return replace(key_path_axis(name, kind, f"{kind} axis"), hotter="low")


# --- a study --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Study:
    name: str
    temperature: Axis
    temperatures: tuple
    load: Axis
    loads: tuple
    dense_seeds: tuple[int, ...]
    base: CellSpec
    regimes: Regimes = field(default_factory=Regimes)
    data: DataSpec = field(default_factory=DataSpec)   # with root and download, for the jobs (CorpusSpec: translation)
    settle_batches: tuple = ()  # retrain seed batches the settle option may add (threeregime/settle.py)
    task: str = DEFAULT_TASK    # a key of threeregime.spec.task.TASKS

    @property
    def entry(self) -> Task:
        """The study's task entry (data, jobs, metrics: threeregime.spec.task)."""
        return task_named(self.task, f"studies.{self.name}.task")

    def cell(self, temperature, load, seed) -> CellSpec:
        c = self.load.apply(self.temperature.apply(replace(self.base, seed=int(seed)), temperature), load)
        return c

    def cells(self) -> list[tuple[float, float, CellSpec]]:
        """(temperature, load, cell) for every cell and dense seed of the grid."""
        return [(t, l, self.cell(t, l, s)) for t in self.temperatures for l in self.loads for s in self.dense_seeds]

    def batch_cell(self, cell: CellSpec, batch: int) -> CellSpec:
        """`cell` retrained with the settle option's batch `batch` (1, 2, ...) of seeds: the same
        pruned weights, its own retraining key and path."""
        return replace(cell, retrain=replace(cell.retrain, seeds=self.settle_batches[batch - 1]))

    @property
    def dir(self) -> str:
        return study_dir(self.name)

    @property
    def optimizers(self) -> str:
        """'dense optimizer → retrain optimizer', e.g. 'Adam → SGD' (Figure 13's lines)."""
        names = {"sgd": "SGD", "adam": "Adam", "sam": "SAM"}
        d, r = self.base.run.train.optimizer, self.base.retrain.train.optimizer
        return f"{names.get(d, d)} → {names.get(r, r)}"


def axis_style(axis: Axis):
    """How plots draw an axis (plots is imported here only, so jobs without plots skip matplotlib)."""
    from .plots import AxisStyle

    return AxisStyle(label=axis.label, tick=axis.tick, hotter=axis.hotter)


def train_spec(section: dict, key: str) -> TrainSpec:
    try:
        kw = {k: section[k] for k in TRAIN_KEYS if k in section}
        for k in ("batch_size", "epochs", "iterations", "warmup"):
            if k in kw:
                kw[k] = whole(kw[k], f"{key}.{k}")
        for k in ("lr", "momentum", "weight_decay", "rho", "gamma", "label_smoothing"):  # 0 and 0.0: one key
            if k in kw:
                if isinstance(kw[k], str):
                    raise ConfigError(f"{key}.{k}: {kw[k]!r} is not a number{number_hint(kw[k])}")
                kw[k] = float(kw[k])
        if "milestones" in kw:
            kw["milestones"] = tuple(whole(m, f"{key}.milestones") for m in kw["milestones"])
        return TrainSpec(**kw)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            if str(e).startswith(key):
                raise
            raise ConfigError(f"{key}.{e}") from None  # TrainSpec's own checks name the field first
        raise ConfigError(f"{key}: {e}") from None


def data_spec(data: dict) -> DataSpec:
    """The data section as a DataSpec (an imagefolder's image_size defaults to 32: DataSpec)."""
    size = data.get("image_size", 0)
    return DataSpec(data["name"], data.get("root", "data"), bool(data.get("download", False)),
                    whole(data.get("crop_padding", 4), "data.crop_padding"), bool(data.get("hflip", True)),
                    whole(size, "data.image_size"), float(data.get("train_fraction", 1)))


def model_spec(model: dict) -> ModelSpec:
    """A study's network: arch, depth, width, or a factory with its kwargs (arch, depth and
    width then unused). The data shape is left to the job (ModelSpec.for_data)."""
    try:
        if model.get("factory"):
            return ModelSpec("factory", 0, 1.0, None, None, str(model["factory"]), dict(model.get("kwargs") or {}),
                             factory_source(model["factory"]))
        return ModelSpec(model.get("arch", "preresnet"), whole(model.get("depth", 20), "model.depth"),
                         float(model.get("width", 1)), None, None)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None


def prune_spec(prune: dict, where: str, default_layers: tuple = DEFAULT_LAYERS) -> PruneSpec:
    try:
        return PruneSpec(prune.get("method", "uniform"), float(prune.get("density", 0.05)),
                         tuple(prune.get("layers", default_layers)), tuple(prune.get("exclude", ())))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def regimes_spec(section: dict, where: str) -> Regimes:
    try:
        return Regimes.from_dict(section)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}.{e}") from None


def study_task(config: dict, name: str) -> Task:
    """The task entry of study `name` (`task:`, default image_classification)."""
    return task_named(config["studies"][name].get("task", DEFAULT_TASK), f"studies.{name}.task")


def study_sections(config: dict, name: str) -> dict:
    """A study's sections (data, model, train, ...): the shared defaults merged with its overrides.
    A task with its own defaults (threeregime.spec.task: translation) starts its data, model,
    train, retrain and prune sections from those instead (`defaults` describe image studies)."""
    raw = config["studies"][name]
    base = config.get("defaults", {})
    task = study_task(config, name)
    if task.defaults is not None:
        base = deep_merge({k: v for k, v in base.items() if k not in TASK_SECTIONS}, task.defaults)
    return deep_merge(base, {k: v for k, v in raw.items() if k in SECTIONS})


def located_data_spec(task: Task, data: dict, where: str = "data"):
    """A study's merged data section as the spec its jobs load (DataSpec, CorpusSpec), by its task."""
    from .spec.common import resolve

    return resolve(task.data_spec)(data) if task.data_spec == "threeregime.study:data_spec" \
        else resolve(task.data_spec)(data, where)


def data_locations(config: dict) -> dict[str, DataSpec]:
    """Where each data set lives (root, download), by DataIdentity key: the first study (in
    config order) using it decides. Cheap (no study is resolved): what a job reads instead of
    planning again. What the data set is, augmentation included, the job takes from its own run
    (pipeline: DataSpec.located), since studies may augment one data set differently."""
    out: dict[str, DataSpec] = {}
    for name in config.get("studies", {}):
        raw = config["studies"][name]
        try:
            task = study_task(config, name)
            data = study_sections(config, name)["data"]
            changes = []  # an axis over a data key: one data set per value (per pair of values)
            for kind in ("temperature", "load"):
                path = str((raw.get(kind) or {}).get("axis", ""))
                changes.append([{path[len("data."):]: v} for v in raw[kind]["values"]]
                               if path.startswith("data.") else [{}])
            specs = [located_data_spec(task, {**data, **a, **b}) for a in changes[0] for b in changes[1]]
        except (ConfigError, KeyError, TypeError, ValueError):
            continue  # a broken study: it makes no artifact
        for spec in specs:
            out.setdefault(spec.identity.key(), spec)
    return out


def resolve_study(config: dict, name: str) -> Study:
    """The typed study `name` of a validated config (defaults merged with the study's overrides)."""
    if name not in config.get("studies", {}):
        raise ConfigError(f"no study named {name!r}; studies in the config: {sorted(config.get('studies', {}))}")
    raw = config["studies"][name]
    where = f"studies.{name}"
    sec = study_sections(config, name)
    task = study_task(config, name)
    axes = {}
    for kind in ("temperature", "load"):
        spec = raw.get(kind)
        if not spec:
            raise ConfigError(f"{where}.{kind} is missing: name an axis and its values, "
                              f"e.g. {kind}: {{axis: {'epochs' if kind == 'temperature' else 'density'}, "
                              f"values: [...]}}")
        axis = study_axis(spec, kind, f"{where}.{kind}", task)
        values = []
        for v in spec.get("values", []):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                hint = number_hint(v) if isinstance(v, str) else ""
                raise ConfigError(f"{where}.{kind}.values: {v!r} is not a number{hint}")
            v = whole(v, f"{where}.{kind}.values") if axis.integer else float(v)
            problem = axis.check(v)
            if problem:
                raise ConfigError(f"{where}.{kind}.values: {axis.name} {v!r} {problem}")
            values.append(v)
        if not values:
            raise ConfigError(f"{where}.{kind}.values is empty")
        ticks = [fmt(v) for v in values]
        if len(set(ticks)) != len(ticks):
            raise ConfigError(f"{where}.{kind}.values has duplicate values (as written in paths): {values}")
        axes[kind] = (axis, tuple(values))

    train = sec["train"]
    _check_task_sections(task, sec, where)
    try:
        data = located_data_spec(task, sec["data"])
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}") from None
    if data.name == IMAGEFOLDER:  # its layout is checked now, by listing the folders
        check_image_folder(data.root, f"{where}.data.root")
    try:
        model = model_spec(sec["model"])
    except ConfigError as e:
        raise ConfigError(f"{where}.{e}" if str(e).startswith("model.") else f"{where}.model: {e}") from None
    run = DenseRun(data.identity, model, train_spec(train, f"{where}.train"),
                   whole(train.get("checkpoint_every", 10), f"{where}.train.checkpoint_every"))
    _check_schedule(run, where)
    seeds = sec["seeds"]
    decode = task.check_decode(sec["retrain"].get("decode"), f"{where}.retrain.decode")
    retrain = RetrainSpec(train_spec(sec["retrain"], f"{where}.retrain"),
                          tuple(sorted(whole(s, f"{where}.seeds.retrain") for s in seeds["retrain"])),
                          "" if decode == task.default_decode else decode)
    prune = prune_spec(sec["prune"], f"{where}.prune", task.prune_layers)
    try:
        land = LandscapeSpec(**sec["landscape"])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}.landscape: {e}") from None
    base = CellSpec(run, 0, run.final(), prune, retrain, land)
    study = Study(name, axes["temperature"][0], axes["temperature"][1], axes["load"][0], axes["load"][1],
                  tuple(whole(s, f"{where}.seeds.dense") for s in seeds["dense"]), base,
                  regimes_spec(sec.get("regimes"), where), data, task=task.name)
    if raw.get("settle") is not None:
        from .settle import batches

        study = replace(study, settle_batches=batches(raw["settle"], retrain.seeds, where))
    _check_study(study, where)
    return study


def _check_task_sections(task: Task, sec: dict, where: str) -> None:
    """Keys of another task refused with the key and the task named (crop_padding on a
    translation study, vocab_size on an image study), and an architecture the task cannot train."""
    from .spec.task import wrong_task_keys

    wrong_task_keys(task, "data", sec.get("data", {}), where)
    owner = task_of_data_name(str(sec.get("data", {}).get("name", "")))
    if owner.data_names and owner is not task:
        raise ConfigError(f"{where}.data.name: {sec['data']['name']!r} is {owner.name} data; set the study's "
                          f"task: {owner.name}, or name a data set of task {task.name}")
    for section in ("train", "retrain"):
        wrong_task_keys(task, section, sec.get(section, {}), where)
    if "decode" in sec.get("train", {}):
        raise ConfigError(f"{where}.train.decode: decode is read from retrain (how the retrained copies' BLEU "
                          f"is decoded); move it to retrain.decode")
    model = sec.get("model", {})
    arch = "factory" if model.get("factory") else model.get("arch", "preresnet")
    if arch not in task.architectures:
        raise ConfigError(f"{where}.model.arch: {arch!r} is not a network of task {task.name}; allowed: "
                          f"{list(task.architectures)}" + (" (model.factory builds image classifiers)"
                                                            if arch == "factory" else ""))


def _check_schedule(run: DenseRun, where: str) -> None:
    """An epoch schedule is saved every checkpoint_every epochs, the last checkpoint being the
    trained model: checkpoint_every must divide the epochs (checked before any value of an epochs
    temperature, whose allowed values it decides)."""
    if run.train.iterations or run.train.epochs % run.checkpoint_every == 0:
        return
    divisors = [d for d in range(1, run.train.epochs + 1) if run.train.epochs % d == 0]
    raise ConfigError(f"{where}.train.checkpoint_every: {run.checkpoint_every} does not divide train.epochs = "
                      f"{run.train.epochs} (each checkpoint is a job, the last one the trained model); "
                      f"allowed: {divisors}, or change train.epochs")


def _check_study(study: Study, where: str) -> None:
    """Cross-field checks the JSON schema cannot express."""
    for kind, vals in (("dense", study.dense_seeds), ("retrain", study.base.retrain.seeds)):
        if len(set(vals)) != len(vals):
            raise ConfigError(f"{where}.seeds.{kind} has duplicate values: {list(vals)}")
    if len(study.base.retrain.seeds) < 2:
        raise ConfigError(f"{where}.seeds.retrain needs at least 2 seeds to form pairs, "
                          f"got {list(study.base.retrain.seeds)}")
    allowed = study.entry.optimizers
    if allowed:
        if "sam_rho" in (study.temperature.name, study.load.name) and "sam" not in allowed:
            raise ConfigError(f"{where}: the sam_rho axis trains with SAM (and SGD at ρ = 0); {study.task} studies "
                              f"train with {' or '.join(allowed)} only: choose another axis")
        for section, t in (("train", study.base.run.train), ("retrain", study.base.retrain.train)):
            if t.optimizer not in allowed:
                raise ConfigError(f"{where}.{section}.optimizer: {study.task} studies train with "
                                  f"{' or '.join(allowed)} only, got {t.optimizer!r}: remove it or set "
                                  f"{section}.optimizer: {allowed[0]}")
    optimizer = study.base.run.train.optimizer
    if study.temperature.name == "sam_rho" and optimizer not in ("sgd", "sam"):
        raise ConfigError(f"{where}.temperature.axis: sam_rho trains the dense models with SAM at ρ > 0 and with "
                          f"plain SGD at ρ = 0 (train's lr, momentum and schedule), but train.optimizer is "
                          f"{optimizer!r}; set train.optimizer: sgd (or sam), or choose another temperature axis")
    if study.base.run.model.factory:
        for axis in (study.temperature, study.load):
            if axis.name in ("width", "depth"):
                raise ConfigError(f"{where}: the {axis.name} axis changes a built-in network (model.arch); "
                                  f"for model.factory vary its argument instead, e.g. "
                                  f"{axis.kind}: {{axis: model.kwargs.{axis.name}, values: [...]}}")
    else:
        for axis in (study.temperature, study.load):
            if axis.name.startswith("model.kwargs."):
                raise ConfigError(f"{where}.{axis.kind}.axis: model.kwargs.<name> is an argument of a model factory "
                                  f"(model.factory), and {study.base.run.model.arch} is a built-in network: set "
                                  f"model.factory, or vary one of its fields (model.width, model.depth)")
    if study.base.prune.method not in METHODS:
        raise ConfigError(f"{where}.prune.method: unknown pruning method {study.base.prune.method!r}; "
                          f"allowed: {list(METHODS)}")
    for t in study.temperatures:
        for l in study.loads:
            for axis, partial in ((study.temperature, lambda: study.temperature.apply(study.base, t)),
                                  (study.load, lambda: study.cell(t, l, study.dense_seeds[0]))):
                try:
                    cell = partial()
                except ValueError as e:  # e.g. a depth its architecture does not have
                    raise ConfigError(f"{where}.{axis.name}: {e}") from None
            run = cell.run
            _check_schedule(run, where)
            if study.temperature.name == "epochs":
                if run.train.iterations:
                    raise ConfigError(f"{where}: the epochs temperature needs an epoch schedule "
                                      f"(train.iterations: 0), got train.iterations = {run.train.iterations}")
                if cell.ckpt not in run.checkpoints():
                    saved = [int(c[5:]) for c in run.checkpoints()]
                    raise ConfigError(f"{where}.temperature.values: epoch {int(t)} is not a saved checkpoint; "
                                      f"allowed: {saved} (every train.checkpoint_every = "
                                      f"{run.checkpoint_every} epochs of train.epochs = {run.train.epochs})")


def studies(config: dict) -> tuple[dict[str, Study], dict[str, str]]:
    """Every study of the config, resolved and checked: (usable studies, {name: error} of the
    others). A study with an error stops the workflow only when one of its targets is asked
    for (so a preset that changes the defaults for its own studies does not have to repair
    every reference study); names, figures and path collisions are checked for all."""
    names = list(config.get("studies", {}))
    for n in names:
        if not re.fullmatch(NAME_PATTERN, str(n)):
            raise ConfigError(f"study name {n!r} must match {NAME_PATTERN} (letters, digits, _ and -; "
                              f"it names the folder results/studies/<name>)")
    ok, broken = {}, {}
    for n in names:
        try:
            ok[n] = resolve_study(config, n)
        except ConfigError as e:
            broken[n] = str(e)
    for n in config.get("default_studies", []):
        if n not in names:
            raise ConfigError(f"default_studies: no study named {n!r}; studies: {sorted(names)}")
    for fig, spec in config.get("figures", {}).items():
        if not re.fullmatch(NAME_PATTERN, str(fig)):
            raise ConfigError(f"figures: name {fig!r} must match {NAME_PATTERN}")
        for n in ([spec["study"]] if "study" in spec else spec.get("compare", [])):
            if n not in names:
                raise ConfigError(f"figures.{fig}: no study named {n!r}; studies: {sorted(names)}")
    _check_collisions(ok)
    return ok, broken


def usable_study(all_studies: dict[str, Study], broken: dict[str, str], name: str) -> Study:
    """The study a target asks for, or a ConfigError saying why it cannot be drawn."""
    if name in broken:
        raise ConfigError(broken[name])
    if name not in all_studies:
        raise ConfigError(f"no study named {name!r}; studies: {sorted(set(all_studies) | set(broken))}")
    return all_studies[name]


def _check_collisions(all_studies: dict[str, Study]) -> None:
    """Two different specs must never share a path (e.g. densities equal to 6 digits)."""
    seen: dict[str, tuple] = {}
    for s in all_studies.values():
        for t, l, c in s.cells():
            # the frozen specs themselves are the identity (equal fields, equal settings): comparing
            # them costs a fraction of serialising every cell's settings
            for path, ident in ((c.dense_path, c.run), (c.cell_dir, (c.run, c.prune))):
                if seen.setdefault(path, (ident, s.name))[0] != ident:
                    raise ConfigError(f"studies.{s.name}: two different settings map to the same path {path} "
                                      f"(also used by study {seen[path][1]}): values that differ below the "
                                      f"precision of paths ({fmt(l)}, {fmt(t)}); make them differ more")


# --- the index of artifacts a workflow run knows -------------------------------------------------

@dataclass
class Index:
    """Every dense run, retraining and landscape setting the configured studies need, by key,
    so rules map a path's wildcards back to typed hyperparameters."""

    runs: dict[str, DenseRun] = field(default_factory=dict)
    retrains: dict[str, RetrainSpec] = field(default_factory=dict)
    landscapes: dict[str, LandscapeSpec] = field(default_factory=dict)
    prunes: dict[str, PruneSpec] = field(default_factory=dict)
    data: dict[str, DataSpec] = field(default_factory=dict)  # by DataIdentity key: where it lives

    @staticmethod
    def of(all_studies: dict[str, Study]) -> "Index":
        ix = Index()
        for s in all_studies.values():
            for _, _, c in s.cells():
                ix.runs[c.run.key] = c.run
                ix.retrains[c.retrain.key] = c.retrain
                for b in range(1, len(s.settle_batches) + 1):
                    extra = s.batch_cell(c, b).retrain
                    ix.retrains[extra.key] = extra
                ix.landscapes[c.landscape.key] = c.landscape
                ix.prunes[c.prune.key] = c.prune
                ix.data.setdefault(c.run.data.key(), s.data.located(c.run.data))
        return ix

    def run(self, key: str) -> DenseRun:
        if key not in self.runs:
            raise ConfigError(f"no configured study needs the dense run {key!r}: it is not in the config "
                              f"(request a study's target, or add the study that makes it)")
        return self.runs[key]

    def retrain(self, key: str) -> RetrainSpec:
        if key not in self.retrains:
            raise ConfigError(f"no configured study retrains with {key!r}")
        return self.retrains[key]

    def landscape(self, key: str) -> LandscapeSpec:
        if key not in self.landscapes:
            raise ConfigError(f"no configured study measures the landscape as {key!r}")
        return self.landscapes[key]

    def prune(self, key: str) -> PruneSpec:
        if key not in self.prunes:
            raise ConfigError(f"no configured study prunes as {key!r}")
        return self.prunes[key]

    def data_of(self, run_key: str) -> DataSpec:
        return self.data[self.run(run_key).data.key()]


def check_data_sets(data_specs: list[DataSpec], batch_sizes: dict[str, int]) -> None:
    """Checks that need the data set (run when the workflow starts, not on a dry run)."""
    from .data import training_set_size

    from .spec.corpus import corpus_problem
    from .spec.data import DataError

    sizes = {}  # by DataIdentity key: data.train_fraction makes another training set
    for spec in data_specs:
        if not isinstance(spec, DataSpec):  # a translation corpus: there, or to be downloaded
            problem = corpus_problem(spec)
            if problem:
                raise DataError(problem)
            continue
        sizes[spec.identity.key()] = training_set_size(spec)
    for what, (key, bs) in batch_sizes.items():
        if key in sizes and bs > sizes[key]:
            raise ConfigError(f"{what} = {bs} is larger than the training set ({sizes[key]} images)")
