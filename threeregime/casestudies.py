"""The paper's case studies (Section 4): which way to move the temperature (Algorithm 1), which
dense model to prune without a grid search (Algorithms 2 and 2.1), and SAM's ρ chosen by CKA
(Figures 5, 6): the registry of case-study algorithms (`ALGORITHMS`) and the config half.

A case study (config `case_studies.<name>`, the name being the figure it draws, e.g.
`figure3`) names an algorithm, base studies and its inputs. Each panel becomes one or more
*derived studies*: the base study restricted or changed as the algorithm needs (only T0 and
T0 + ΔT; the α-epoch retraining; SAM at ρ instead of SGD). A derived study is an ordinary
study, named `case-<base>-<role>-<8 hex of its settings>`, so its artifacts are keyed by their
hyperparameters like every other: whatever the grids already computed is reused, and the
α-epoch runs are shared by Algorithms 2 and 2.1 (same settings, same name, same files).
`expand_config` adds them to the config's `studies`.

One entry of `ALGORITHMS` says everything about an algorithm: its parameters, the roles of a
panel and how each role's study is derived from the base study, whether it reads dense
checkpoints, its decision function (threeregime.casedecisions), its summary and its drawing
(threeregime.caseplots). Decisions and drawings are "module:attribute" references resolved
on first use, so planning (the Snakefile, threeregime.plan) imports neither pandas,
matplotlib nor torch (tests/test_casestudies.py). Adding an algorithm is one entry here, its
name in the schema's `algorithm` enum and its tests.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Callable, Union

from .configfiles import number_hint
from .spec.common import ConfigError, deep_merge, digest, fmt
from .spec.task import DEFAULT_TASK, task_named
from .study import Axis, study_axis

Ref = Union[str, Callable]  # "package.module:attribute", resolved with threeregime.spec.common.resolve

SELECT_BY = ("test_error", "cka")


@dataclass(frozen=True)
class Panel:
    """One column of a case study's figure: a base study and the derived studies it reads."""

    base: str
    title: str
    studies: dict  # role -> study name (the roles of its algorithm's entry)
    t0: float | None = None  # temperature: the initial temperature and one grid step hotter
    t1: float | None = None


@dataclass(frozen=True)
class CaseStudy:
    name: str
    algorithm: str
    panels: tuple[Panel, ...]
    params: dict = field(default_factory=dict)  # the entry's parameters: alpha, select_by, rho, ...

    @property
    def entry(self) -> "CaseAlgorithm":
        return ALGORITHMS[self.algorithm]

    def study_names(self) -> list[str]:
        return [s for p in self.panels for s in p.studies.values()]

    def base_study(self, panel: Panel) -> str:
        """The study of the panel's base grid (its ε, axes, candidates and dense checkpoints)."""
        return panel.studies[self.entry.base_role]

    @staticmethod
    def from_dict(d: dict) -> "CaseStudy":
        return CaseStudy(d["name"], d["algorithm"], tuple(Panel(**p) for p in d["panels"]), dict(d["params"]))

    def as_dict(self) -> dict:
        return {"name": self.name, "algorithm": self.algorithm, "params": dict(self.params),
                "panels": [{"base": p.base, "title": p.title, "studies": dict(p.studies), "t0": p.t0, "t1": p.t1}
                           for p in self.panels]}


# --- the registry --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """A parameter of a case study (a key of `case_studies.<name>`). `read(value, key)` converts
    the value as written (or raises a ConfigError); then the value must be one of `choices`
    ("<key>: <value>; allowed: [...]") or pass `valid` ("<key> <rule>, got <value>")."""

    name: str
    default: object
    read: Callable[[object, str], object] = lambda v, key: v
    choices: tuple = ()
    valid: Callable[[object], bool] | None = None
    rule: str = ""

    def check(self, value, key: str) -> None:
        if self.choices and value not in self.choices:
            raise ConfigError(f"{key}: {value!r}; allowed: {list(self.choices)}")
        if self.valid is not None and not self.valid(value):
            raise ConfigError(f"{key} {self.rule}, got {value}")


@dataclass(frozen=True)
class PanelContext:
    """What an entry's `derive` gets for one panel: `spec` its config (`panels[i]`), `raw` the
    base study's config (with the panel's `load` swapped in), its axes and the parsed params;
    `where` and `pw` name the case study and the panel in errors."""

    where: str
    pw: str
    spec: dict
    base: str
    raw: dict
    t_axis: Axis
    l_axis: Axis
    params: dict


@dataclass(frozen=True)
class Derived:
    """What `derive` returns for one panel: the raw study config of each role, and (temperature)
    T0 and T0 + ΔT."""

    roles: dict
    t0: float | None = None
    t1: float | None = None


@dataclass(frozen=True)
class CaseAlgorithm:
    """An entry of ALGORITHMS.

    params: its parameters (parsed, defaulted and checked from the config, in this order);
    roles: the roles of each panel, each a study derived by `derive(PanelContext) -> Derived`
      (which also refuses a base study the algorithm cannot use, with a ConfigError);
    base_role: the role whose study is the panel's base grid (ε, axes, candidates, dense models);
    reads_dense: whether the job reads the base grid's dense checkpoints (their test errors);
    panel_data: what the job adds to a panel's data beyond the cells of each role, or None:
      f(table, dense_errors) -> dict, `table(role)` a role's table.parquet, `dense_errors`
      {temperature: [test error per dense seed]};
    decide: the decision function, called as decide(*decide_args(params, panel, data)) with a
      panel's data ({role: cells, 'epsilon', 'candidates', ...panel_data}); its table, one row
      per load (or cell), becomes the panel's rows of the case study's table;
    summary: f(case, table) -> lines saying what the case study found;
    draw: the figure, draw(table, info, pdf_path, png_path, title, **draw_kwargs(panels));
    title: the figure's title after the case study's name, from the params."""

    params: tuple[Param, ...]
    roles: tuple[str, ...]
    derive: Callable[[PanelContext], Derived]
    decide: Ref
    decide_args: Callable[[dict, Panel, dict], tuple]
    summary: Ref
    draw: Ref
    title: Callable[[dict], str]
    base_role: str = "grid"
    reads_dense: bool = False
    panel_data: Ref | None = None
    draw_kwargs: Callable[[list], dict] = lambda panels: {}
    description: str = ""

    def parse(self, spec: dict, where: str) -> dict:
        """The parameters of a case study's config `spec`, or a ConfigError naming the key."""
        params = {p.name: p.read(spec.get(p.name, p.default), f"{where}.{p.name}") for p in self.params}
        for p in self.params:
            p.check(params[p.name], f"{where}.{p.name}")
        return params


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        hint = number_hint(v) if isinstance(v, str) else ""
        raise ConfigError(f"{where}: {v!r} is not a number{hint}")
    return float(v)


def _integer(v, where: str) -> int:
    return int(v)


def hotter_step(values, t0: float, steps: int, hotter: str, where: str) -> float:
    """The temperature `steps` grid steps hotter than t0 among `values` (the base study's grid):
    epochs 160 -> 150, batch size 128 -> 92 (hotter = 'low'); SAM ρ 0.4 -> 0.5 (hotter = 'high')."""
    grid = sorted(set(float(v) for v in values), reverse=(hotter == "low"))  # coolest first
    if float(t0) not in grid:
        raise ConfigError(f"{where}.t0: {fmt(t0)} is not a temperature of the base study; "
                          f"its values: {[fmt(v) for v in sorted(grid)]}")
    i = grid.index(float(t0)) + steps
    if i >= len(grid):
        raise ConfigError(f"{where}.t0: no temperature {steps} grid step(s) hotter than {fmt(t0)} in the base "
                          f"study (values {[fmt(v) for v in sorted(grid)]}); choose a cooler t0 or add a value")
    return grid[i]


def _derive_temperature(c: PanelContext) -> Derived:
    """Algorithm 1: the base grid at T0 and one (or `steps`) grid step(s) hotter only."""
    if "t0" not in c.spec:
        raise ConfigError(f"{c.pw}.t0 is missing: the initial temperature T0 (e.g. 160 epochs, batch 128)")
    t0 = _number(c.spec["t0"], f"{c.pw}.t0")
    steps = int(c.spec.get("steps", 1))
    if steps < 1:
        raise ConfigError(f"{c.pw}.steps must be >= 1 grid step, got {steps}")
    t1 = hotter_step(c.raw["temperature"]["values"], t0, steps, c.t_axis.hotter, c.pw)
    # T0 and T0 + ΔT in the base study's order (so a base grid of just these two is reused whole)
    kept = [v for v in c.raw["temperature"]["values"] if float(v) in (t0, t1)]
    return Derived({"grid": {**c.raw, "temperature": {**c.raw["temperature"], "values": kept}}}, t0, t1)


def _derive_selection(c: PanelContext) -> Derived:
    """Algorithms 2 and 2.1: the base grid, and its first α retraining epochs."""
    return Derived({"grid": c.raw,
                    # The first α epochs of retraining at its initial learning rate (the paper's α = 2
                    # lies before the first milestone of any reference schedule).
                    "alpha": deep_merge(c.raw, {"retrain": {"epochs": c.params["alpha"], "iterations": 0,
                                                            "milestones": []}})})


def _derive_sam_vs_sgd(c: PanelContext) -> Derived:
    """Figure 5: the SGD base study at one density, and the same trained with SAM at ρ."""
    if c.t_axis.name == "sam_rho":
        raise ConfigError(f"{c.pw}.study: {c.base!r} varies SAM's ρ itself; compare SGD and SAM on an epochs "
                          f"or batch_size study")
    task = task_named(c.raw.get("task", DEFAULT_TASK), f"studies.{c.base}.task")
    # the optimizer the base study trains with: its own, else its task's default (image: the
    # config's defaults, SGD; translation: Adam)
    defaults = (task.defaults or {}).get("train", {"optimizer": "sgd"})
    opt = deep_merge(defaults, c.raw.get("train", {})).get("optimizer")
    if opt != "sgd":
        raise ConfigError(f"{c.pw}.study: {c.base!r} trains its dense models with {opt!r}; the comparison "
                          f"needs an SGD study")
    density = {"axis": "density", "values": [c.params["density"]]}
    sgd = c.raw if c.raw["load"] == density else {**c.raw, "load": density}
    return Derived({"sgd": sgd, "sam": deep_merge(sgd, {"train": {"optimizer": "sam", "rho": c.params["rho"]}})})


def _derive_sam_rho(c: PanelContext) -> Derived:
    """Figure 6: the base study over SAM's ρ itself, which must hold the small and the large ρ."""
    if c.t_axis.name != "sam_rho":
        raise ConfigError(f"{c.pw}.study: {c.base!r} has temperature axis {c.t_axis.name!r}; tuning ρ by CKA "
                          f"needs a study over sam_rho (e.g. sam_rho_density)")
    vals = [float(v) for v in c.raw["temperature"]["values"]]
    for key in ("small_rho", "large_rho"):
        if c.params[key] not in vals:
            raise ConfigError(f"{c.where}.{key}: ρ = {fmt(c.params[key])} is not a value of {c.base!r} "
                              f"({[fmt(v) for v in vals]})")
    return Derived({"grid": c.raw})


def _selection_title(params: dict) -> str:
    algorithm = "Algorithm 2 (LMC + test error" if params.get("select_by") == "test_error" else \
        "Algorithm 2.1 (LMC + CKA"
    return f"{algorithm} after α = {params.get('alpha')} retraining epochs)"


ALGORITHMS: dict[str, CaseAlgorithm] = {
    "temperature": CaseAlgorithm(
        params=(),
        roles=("grid",),
        derive=_derive_temperature,
        decide="threeregime.casedecisions:temperature_decisions",
        decide_args=lambda params, panel, data: (data["grid"], panel.t0, panel.t1, data["epsilon"],
                                                 data.get("quality")),
        summary="threeregime.casedecisions:temperature_summary",
        draw="threeregime.caseplots:temperature_figure",
        title=lambda params: "Algorithm 1\n(Regime I: LMC < ε, boxed → raise the temperature)",
        description="Algorithm 1 (Figures 3, 15): raise the temperature from T0 where LMC at T0 < ε; judged by "
                    "the test error (a translation study: BLEU) reached at T0 and T0 + ΔT"),
    "selection": CaseAlgorithm(
        params=(Param("alpha", 2, _integer, valid=lambda a: a >= 1, rule="must be >= 1 retraining epoch"),
                Param("select_by", "test_error", choices=SELECT_BY)),
        roles=("grid", "alpha"),
        derive=_derive_selection,
        reads_dense=True,
        panel_data="threeregime.casedecisions:selection_panel_data",
        decide="threeregime.casedecisions:select_models",
        decide_args=lambda params, panel, data: (data["candidates"], data["dense_error"], data["alpha"],
                                                 data["grid"], data["epsilon"], params["select_by"],
                                                 data["alpha_epochs"], data["full_epochs"]),
        summary="threeregime.casedecisions:selection_summary",
        draw="threeregime.caseplots:selection_figure",
        title=_selection_title,
        description="Algorithms 2, 2.1 (Figures 4, 16): which dense model to prune, by LMC and the test "
                    "error (2) or CKA (2.1) after α retraining epochs"),
    "sam_vs_sgd": CaseAlgorithm(
        params=(Param("rho", 0.6, _number, valid=lambda r: r > 0, rule="must be > 0 (SAM's ρ; 0 is plain SGD)"),
                Param("density", 0.07, _number, valid=lambda d: 0 < d <= 1, rule="must be in (0, 1]")),
        roles=("sgd", "sam"),
        base_role="sgd",
        derive=_derive_sam_vs_sgd,
        decide="threeregime.casedecisions:sgd_vs_sam",
        decide_args=lambda params, panel, data: (data["sgd"], data["sam"], params["rho"]),
        summary="threeregime.casedecisions:sam_vs_sgd_summary",
        draw="threeregime.caseplots:sam_vs_sgd_figure",
        title=lambda params: "dense SGD vs SAM, pruned and retrained",
        description="Figure 5: dense training with SGD vs SAM at ρ, pruned to one density and retrained"),
    "sam_rho": CaseAlgorithm(
        params=(Param("small_rho", 0.1, _number), Param("large_rho", 0.8, _number)),
        roles=("grid",),
        derive=_derive_sam_rho,
        decide="threeregime.casedecisions:sam_rho_by_cka",
        decide_args=lambda params, panel, data: (data["grid"], params["small_rho"], params["large_rho"]),
        summary="threeregime.casedecisions:sam_rho_summary",
        draw="threeregime.caseplots:sam_rho_figure",
        draw_kwargs=lambda panels: {"cells": panels[0]["grid"]},
        title=lambda params: "SAM's ρ chosen by CKA",
        description="Figure 6: SAM's ρ with the highest CKA per density"),
}


# --- config -> derived studies -------------------------------------------------------------------

DERIVED_PREFIX = "case-"  # derived studies' names start with it; users' may not (threeregime.plan)


def _derived_name(base: str, role: str, raw: dict) -> str:
    return f"{DERIVED_PREFIX}{base}-{role}-{digest(raw)}"


def _with_load(raw: dict, load: dict | None) -> dict:
    return deep_merge(raw, {}) if not load else {**copy.deepcopy(raw), "load": copy.deepcopy(load)}


def expand_config(config: dict) -> tuple[dict[str, CaseStudy], dict[str, dict], dict[str, str]]:
    """The config's case studies: (usable case studies, {derived study name: raw study config},
    {case study: error} of those whose base study is missing or wrong for the algorithm).

    Like studies, a case study with an error stops the workflow only when its target is asked
    for; a structural error (a name clash with `figures`) is raised at once."""
    cases, derived, broken = {}, {}, {}
    all_studies = config.get("studies", {}) or {}
    figures = config.get("figures", {}) or {}
    for name, spec in (config.get("case_studies", {}) or {}).items():
        if name in figures:
            raise ConfigError(f"case_studies.{name}: the name is also a figure in `figures`; both would write "
                              f"results/{name}.pdf. Rename one.")
        try:
            case, more = _case_study(name, spec, all_studies)
        except ConfigError as e:
            broken[name] = str(e)
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # a base study the schema let through
            broken[name] = f"case_studies.{name}: its base study cannot be read ({type(e).__name__}: {e})"
            continue
        cases[name] = case
        derived.update(more)
    return cases, derived, broken


def _case_study(name: str, spec: dict, all_studies: dict) -> tuple[CaseStudy, dict[str, dict]]:
    where = f"case_studies.{name}"
    algorithm = spec.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"{where}.algorithm: {algorithm!r}; allowed: {list(ALGORITHMS)}")
    entry = ALGORITHMS[algorithm]
    params = entry.parse(spec, where)
    panels, derived = [], {}
    for i, p in enumerate(spec.get("panels") or []):
        pw = f"{where}.panels[{i}]"
        base = p.get("study")
        if base not in all_studies:
            raise ConfigError(f"{pw}.study: no study named {base!r}; studies: {sorted(all_studies)}")
        raw = _with_load(all_studies[base], p.get("load"))
        try:
            task = task_named(raw.get("task", DEFAULT_TASK), f"studies.{base}.task")
            t_axis = study_axis(raw["temperature"], "temperature", f"studies.{base}.temperature", task)
            l_axis = study_axis(raw["load"], "load", f"studies.{base}.load", task)
        except ConfigError as e:
            raise ConfigError(f"{pw}: the base study {base!r} has an unknown axis ({e})") from None
        title = p.get("title") or f"T_{t_axis.name} × L_{l_axis.name}"
        d = entry.derive(PanelContext(where, pw, p, base, raw, t_axis, l_axis, params))
        if tuple(d.roles) != entry.roles:  # a bug in the entry, not a config error
            raise AssertionError(f"case-study algorithm {algorithm!r} derived roles {list(d.roles)}, "
                                 f"declares {list(entry.roles)}")
        names = {}
        for role, r in d.roles.items():
            if r == all_studies[base]:
                names[role] = base  # the base study itself: nothing to derive
            else:
                names[role] = _derived_name(base, role, r)
                derived[names[role]] = r
        panels.append(Panel(base, title, names, d.t0, d.t1))
    if not panels:
        raise ConfigError(f"{where}.panels is empty: name at least one base study")
    return CaseStudy(name, algorithm, tuple(panels), params), derived


def panel_info(study) -> dict:
    """What the case-study job needs of a panel's base grid (its entry's base_role study): ε,
    the axes, the candidates in order, and, where the task reports another quality metric than
    the test error (translation: BLEU), that metric: Algorithm 1 judges its decisions on it.
    (An image study's info has no quality key, so its case studies' params stay as they were.)"""
    info = {"epsilon": study.regimes.lmc_epsilon, "confidence": study.regimes.confidence,
            "temperature_axis": study.temperature.name, "load_axis": study.load.name,
            "candidates": [float(t) for t in study.temperatures]}
    q = study.entry.quality
    if q.column != "test_error":
        info["quality"] = {"column": q.column, "label": q.label, "higher_is_better": q.higher_is_better,
                           "scale": q.scale}
    return info


def case_names_pattern(cases) -> str:
    """The wildcard constraint of the case-study rule: exactly the configured names."""
    return "|".join(re.escape(n) for n in sorted(cases)) or "(?!)"
