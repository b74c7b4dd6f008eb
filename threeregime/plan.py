"""From a run's config to its studies: the one route every entry point takes.

The Snakefile, `python -m threeregime.progress`, `advise --config` and the benchmarks all call
`plan_of(config)` (or `load_plan(configfiles)`, which first reads and checks the files as
Snakemake would): case studies expanded into their derived studies, every study resolved and
checked, and the index of artifacts that maps a path's keys back to typed specs. Jobs do not
plan: their rule passes the typed spec they need (as `as_dict`, rebuilt with `from_dict`).

Imports no torch (tests/test_spec_layer.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .spec.common import ConfigError, deep_merge
from .study import Index, Study, studies, usable_study

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Plan:
    """Everything a config asks for, typed: studies (usable and broken, with why), case studies
    (usable and broken), and the artifact index."""

    config: dict
    studies: dict[str, Study]
    broken: dict[str, str]
    cases: dict = field(default_factory=dict)        # name -> casestudies.CaseStudy
    cases_broken: dict[str, str] = field(default_factory=dict)
    index: Index = field(default_factory=Index)
    derived: frozenset = frozenset()                 # names of the studies case studies derived

    @property
    def user_studies(self) -> list[str]:
        """The names of the studies the config writes (not those its case studies derive)."""
        return sorted(n for n in (*self.studies, *self.broken) if n not in self.derived)

    def study(self, name: str) -> Study:
        """The study a target names, or a ConfigError saying why it cannot run."""
        if name not in self.studies and name not in self.broken:
            raise ConfigError(f"no study named {name!r}; studies: {self.user_studies}")
        return usable_study(self.studies, self.broken, name)

    def case(self, name: str):
        """The case study a target names (and its derived studies usable), or a ConfigError."""
        if name in self.cases_broken:
            raise ConfigError(self.cases_broken[name])
        if name not in self.cases:
            raise ConfigError(f"no case study named {name!r}; case studies: "
                              f"{sorted(set(self.cases) | set(self.cases_broken))}")
        case = self.cases[name]
        for panel in case.panels:
            for role, s in panel.studies.items():
                if s in self.broken and s in self.derived:  # its error names a study the user never wrote
                    raise ConfigError(f"case_studies.{name}: the {role!r} study it derives from {panel.base!r} "
                                      f"cannot run: {self.broken[s]}")
                self.study(s)
        return case

    def targets(self, targets, figures: dict, default_studies) -> list[str]:
        """The studies the command line's targets need, or a ConfigError saying why one cannot be
        made (the README's targets: results/<figure or case study>.pdf/.png/.csv,
        results/studies/<study>/..., none for `default_studies`). Other paths are left to Snakemake."""
        needed = []
        for target in targets or ["all"]:
            path = os.path.normpath(target)
            if os.path.isabs(path):
                path = os.path.relpath(path)
            whole = re.fullmatch(r"results/([^/]+)\.(pdf|png|csv)", path)
            inside = re.match(r"results/studies/([^/]+)/", path)
            if target in ("all", "gallery"):
                names = list(default_studies)
            elif whole and (whole.group(1) in self.cases or whole.group(1) in self.cases_broken):
                names = self.case(whole.group(1)).study_names()
            elif whole and whole.group(1) in figures:
                spec = figures[whole.group(1)]
                names = [spec["study"]] if "study" in spec else list(spec["compare"])
            elif whole:
                raise ConfigError(f"{target}: no figure or case study named {whole.group(1)!r}; figures: "
                                  f"{sorted(figures)}; case studies: {sorted({*self.cases, *self.cases_broken})}")
            elif inside:
                names = [inside.group(1)]
            else:
                continue
            for n in names:
                self.study(n)
            needed += [n for n in names if n not in needed]
        return needed


def plan_of(config: dict) -> Plan:
    """The plan of a validated config (schema defaults filled in). The config itself is not
    changed: the derived studies of case studies live in `Plan.config`."""
    from .casestudies import DERIVED_PREFIX, expand_config

    for name in config.get("studies") or {}:
        if str(name).startswith(DERIVED_PREFIX):  # else a case study's derived study would replace it unseen
            raise ConfigError(f"studies.{name}: names starting with {DERIVED_PREFIX!r} are kept for the studies "
                              f"case studies derive ({DERIVED_PREFIX}<base>-<role>-<8 hex>); rename the study")
    cases, derived, cases_broken = expand_config(config)
    full = {**config, "studies": {**(config.get("studies") or {}), **derived}}
    ok, broken = studies(full)
    return Plan(full, ok, broken, cases, cases_broken, Index.of(ok), frozenset(derived))


def workflow_dir() -> Path:
    """The workflow whose config.yaml is read: the current folder when it holds the Snakefile
    (a run from the repository root, as the README's commands are), else this package's repository."""
    here = Path.cwd()
    return here if (here / "Snakefile").exists() and (here / "config.yaml").exists() else REPO


def read_config(configfiles: list[str], workflow: str | os.PathLike | None = None) -> dict:
    """The config Snakemake would use: the workflow's config.yaml, each --configfile merged over
    it in order, checked and completed (schema defaults) as the Snakefile does."""
    import yaml
    from snakemake.utils import validate

    from .configfiles import check_files, schema_problems

    workflow = Path(workflow or workflow_dir())
    base = workflow / "config.yaml"
    problems = check_files([str(base), *configfiles])
    config: dict = {}
    for path in [base, *configfiles]:
        with open(path) as f:
            config = deep_merge(config, yaml.safe_load(f) or {})
    schema = workflow / "schemas" / "config.schema.yaml"
    problems += schema_problems(config, str(schema))
    if problems:
        raise ConfigError("config error:\n  " + "\n  ".join(problems))
    validate(config, str(schema), set_default=True)
    return config


def load_plan(configfiles: list[str], workflow: str | os.PathLike | None = None) -> Plan:
    """read_config, then plan_of: a run's plan from its config files (progress, benchmarks)."""
    return plan_of(read_config(configfiles, workflow))
