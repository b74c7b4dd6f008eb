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

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from .regimes import Regimes
from .spec.common import ConfigError, deep_merge, fmt, whole
from .spec.data import DataSpec
from .spec.identity import CellSpec, DenseRun, RetrainSpec, study_dir
from .spec.landscape import LandscapeSpec
from .spec.model import ModelSpec
from .spec.prune import METHODS, PruneSpec
from .spec.train import TrainSpec

SECTIONS = ("data", "model", "train", "prune", "retrain", "landscape", "seeds", "regimes")
TRAIN_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "rho", "batch_size", "epochs", "iterations",
              "milestones", "gamma")
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
    data: DataSpec = field(default_factory=DataSpec)   # with root and download, for the jobs
    settle_batches: tuple = ()  # retrain seed batches the settle option may add (threeregime/settle.py)

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
        for k in ("batch_size", "epochs", "iterations"):
            if k in kw:
                kw[k] = whole(kw[k], f"{key}.{k}")
        for k in ("lr", "momentum", "weight_decay", "rho", "gamma"):  # 0 and 0.0 must make one key
            if k in kw:
                if isinstance(kw[k], str):
                    raise ConfigError(f"{key}.{k}: {kw[k]!r} is not a number (YAML reads 1e-3 as a string: "
                                      f"write 1.0e-3)")
                kw[k] = float(kw[k])
        if "milestones" in kw:
            kw["milestones"] = tuple(whole(m, f"{key}.milestones") for m in kw["milestones"])
        return TrainSpec(**kw)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{key}: {e}") from None


def data_spec(data: dict) -> DataSpec:
    return DataSpec(data["name"], data.get("root", "data"), bool(data.get("download", False)),
                    whole(data.get("crop_padding", 4), "data.crop_padding"), bool(data.get("hflip", True)))


def model_spec(model: dict) -> ModelSpec:
    """A study's network: arch, depth, width. The data shape is left to the job (ModelSpec.for_data)."""
    try:
        return ModelSpec(model.get("arch", "preresnet"), whole(model.get("depth", 20), "model.depth"),
                         float(model.get("width", 1)), None, None)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(str(e)) from None


def regimes_spec(section: dict, where: str) -> Regimes:
    try:
        return Regimes.from_dict(section)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}.{e}") from None


def study_sections(config: dict, name: str) -> dict:
    """A study's sections (data, model, train, ...): the shared defaults merged with its overrides."""
    raw = config["studies"][name]
    return deep_merge(config.get("defaults", {}), {k: v for k, v in raw.items() if k in SECTIONS})


def data_locations(config: dict) -> dict[str, DataSpec]:
    """Where each data set lives, by DataIdentity key: the first study (in config order) using
    it decides. Cheap (no study is resolved): what a job reads instead of planning again."""
    out: dict[str, DataSpec] = {}
    for name in config.get("studies", {}):
        try:
            spec = data_spec(study_sections(config, name)["data"])
        except (ConfigError, KeyError, TypeError):
            continue  # a broken study: it makes no artifact
        out.setdefault(spec.identity.key(), spec)
    return out


def resolve_study(config: dict, name: str) -> Study:
    """The typed study `name` of a validated config (defaults merged with the study's overrides)."""
    if name not in config.get("studies", {}):
        raise ConfigError(f"no study named {name!r}; studies in the config: {sorted(config.get('studies', {}))}")
    raw = config["studies"][name]
    where = f"studies.{name}"
    sec = study_sections(config, name)
    axes = {}
    for kind in ("temperature", "load"):
        spec = raw.get(kind)
        if not spec:
            raise ConfigError(f"{where}.{kind} is missing: name an axis and its values, "
                              f"e.g. {kind}: {{axis: {'epochs' if kind == 'temperature' else 'density'}, "
                              f"values: [...]}}")
        axis = AXES.get(spec.get("axis"))
        allowed = sorted(a for a, x in AXES.items() if x.kind == kind)
        if axis is None or axis.kind != kind:
            raise ConfigError(f"{where}.{kind}.axis: {spec.get('axis')!r} is not a {kind} axis; allowed: {allowed}")
        values = []
        for v in spec.get("values", []):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                hint = " (YAML reads 1e-3 as a string: write 1.0e-3)" if isinstance(v, str) else ""
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
    data = data_spec(sec["data"])
    run = DenseRun(data.identity, model_spec(sec["model"]), train_spec(train, f"{where}.train"),
                   whole(train.get("checkpoint_every", 10), f"{where}.train.checkpoint_every"))
    seeds = sec["seeds"]
    retrain = RetrainSpec(train_spec(sec["retrain"], f"{where}.retrain"),
                          tuple(sorted(whole(s, f"{where}.seeds.retrain") for s in seeds["retrain"])))
    prune = PruneSpec(sec["prune"].get("method", "uniform"), float(sec["prune"].get("density", 0.05)))
    try:
        land = LandscapeSpec(**sec["landscape"])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}.landscape: {e}") from None
    base = CellSpec(run, 0, run.final(), prune, retrain, land)
    study = Study(name, axes["temperature"][0], axes["temperature"][1], axes["load"][0], axes["load"][1],
                  tuple(whole(s, f"{where}.seeds.dense") for s in seeds["dense"]), base,
                  regimes_spec(sec.get("regimes"), where), data)
    if raw.get("settle") is not None:
        from .settle import batches

        study = replace(study, settle_batches=batches(raw["settle"], retrain.seeds, where))
    _check_study(study, where)
    return study


def _check_study(study: Study, where: str) -> None:
    """Cross-field checks the JSON schema cannot express."""
    for kind, vals in (("dense", study.dense_seeds), ("retrain", study.base.retrain.seeds)):
        if len(set(vals)) != len(vals):
            raise ConfigError(f"{where}.seeds.{kind} has duplicate values: {list(vals)}")
    if len(study.base.retrain.seeds) < 2:
        raise ConfigError(f"{where}.seeds.retrain needs at least 2 seeds to form pairs, "
                          f"got {list(study.base.retrain.seeds)}")
    if study.base.prune.method not in METHODS:
        raise ConfigError(f"{where}.prune.method: unknown pruning method {study.base.prune.method!r}; "
                          f"allowed: {list(METHODS)}")
    for t in study.temperatures:
        for l in study.loads:
            try:
                cell = study.cell(t, l, study.dense_seeds[0])
            except ValueError as e:  # e.g. a depth its architecture does not have
                raise ConfigError(f"{where}.{study.load.name}: {e}") from None
            run = cell.run
            if study.temperature.name == "epochs":
                if run.train.iterations:
                    raise ConfigError(f"{where}: the epochs temperature needs an epoch schedule "
                                      f"(train.iterations: 0), got train.iterations = {run.train.iterations}")
                if cell.ckpt not in run.checkpoints():
                    saved = [int(c[5:]) for c in run.checkpoints()]
                    raise ConfigError(f"{where}.temperature.values: epoch {int(t)} is not a saved checkpoint; "
                                      f"allowed: {saved} (every train.checkpoint_every = "
                                      f"{run.checkpoint_every} epochs of train.epochs = {run.train.epochs})")
            if not run.train.iterations and run.train.epochs % run.checkpoint_every:
                raise ConfigError(f"{where}.train.epochs ({run.train.epochs}) must be divisible by "
                                  f"train.checkpoint_every ({run.checkpoint_every}): each checkpoint is a job")


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
            for path, ident in ((c.dense_path, c.run.as_dict()), (c.cell_dir, (c.run.as_dict(), asdict(c.prune)))):
                ident = json.dumps(ident, sort_keys=True, default=str)
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
                ix.data.setdefault(c.run.data.key(), s.data)
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

    def data_of(self, run_key: str) -> DataSpec:
        return self.data[self.run(run_key).data.key()]


def check_data_sets(data_specs: list[DataSpec], batch_sizes: dict[str, int]) -> None:
    """Checks that need the data set (run when the workflow starts, not on a dry run)."""
    from .data import training_set_size

    sizes = {}
    for spec in data_specs:
        sizes[spec.name] = training_set_size(spec)
    for what, (name, bs) in batch_sizes.items():
        if name in sizes and bs > sizes[name]:
            raise ConfigError(f"{what} = {bs} is larger than the training set ({sizes[name]} images)")
