"""Checks of the YAML config files a run reads that Snakemake's loader does not make.

PyYAML keeps the last of two equal keys in a mapping without a word, so a section written
twice silently loses the first one; this finds them, with file and line.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
import re

import yaml


class _DuplicateKeyLoader(yaml.SafeLoader):
    """A SafeLoader that records keys written twice in one mapping."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[tuple[str, int, int]] = []

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    self.duplicates.append((str(key), seen[key], key_node.start_mark.line + 1))
                else:
                    seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the normal constructor reports it
                pass
        return super().construct_mapping(node, deep=deep)


def duplicate_keys(path: str) -> list[str]:
    """'file:line: key written twice' for each key repeated inside one mapping of a YAML file."""
    with open(path) as f:
        loader = _DuplicateKeyLoader(f)
        try:
            loader.get_single_data()
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            return [f"{where}: YAML syntax error: {getattr(e, 'problem', e)}"]
        finally:
            loader.dispose()
    return [f"{path}:{second}: key {key!r} is written twice in one section (also on line {first}); "
            f"YAML keeps only the last one: merge the two" for key, first, second in loader.duplicates]


def check_files(paths: list[str]) -> list[str]:
    """Every problem of the given config files: YAML syntax errors (file:line:column) and keys
    written twice; missing files are named too."""
    problems = []
    for path in paths:
        try:
            problems += duplicate_keys(path)
        except OSError as e:
            problems.append(f"{path}: cannot be read ({e.strerror})")
    return problems


def main(argv=None) -> int:
    """`python -m threeregime.configfiles FILE...`: where a config file's YAML is broken.

    Snakemake reads --configfile files before the workflow starts and reports a syntax error
    only as "Config file is not valid JSON or YAML", without file or line; this says where.
    """
    import sys

    paths = list(sys.argv[1:] if argv is None else argv) or ["config.yaml"]
    problems = check_files(paths)
    for p in problems:
        print(p)
    if not problems:
        print(f"{', '.join(paths)}: valid YAML, no key written twice")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())


# The workflow's config schema (rules/common.smk validates against it; study.py reads key paths' bounds).
SCHEMA_PATH = str(Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml")


@lru_cache(maxsize=None)
def load_schema(schema_path: str = SCHEMA_PATH) -> dict:
    """The schema as a dict, read once per process (callers must not change it)."""
    with open(schema_path) as f:
        return yaml.safe_load(f)


def schema_problems(config: dict, schema_path: str) -> list[str]:
    """The config's violations of the JSON schema, one line each, naming the key as written
    in YAML (`defaults.train.lr`), what is allowed (each alternative, for keys with several)
    and, for a number YAML read as a string, how to write it; then every number that is not
    finite (`.nan`, `.inf` pass every bound of a schema)."""
    import jsonschema

    schema = load_schema(schema_path)
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if err.validator in ("anyOf", "oneOf"):
            alternatives = "; or ".join(describe(s) for s in err.validator_value)
            if err.validator == "oneOf" and not err.context:  # it matches more than one
                msg = f"{key}: {_short(err.instance)} matches more than one form; write exactly one of: {alternatives}"
            else:
                msg = f"{key}: {_short(err.instance)} is not allowed; write one of: {alternatives}"
        else:
            msg = f"{key}: {err.message}"
        if isinstance(err.instance, str) and err.validator in ("type", "anyOf", "oneOf"):
            msg += number_hint(err.instance)
        problems.append(msg)
    return problems + non_finite(config)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(schema: dict) -> str:
    """One alternative of an anyOf/oneOf in words: 'true or false', 'one of [...]', '0',
    'a number >= 2', 'a mapping with the key study'."""
    parts = []
    if "const" in schema:
        parts.append(json_literal(schema["const"]))
    if "enum" in schema:
        parts.append(f"one of {[json_literal(v) for v in schema['enum']]}".replace("'", ""))
    kind = schema.get("type")
    if kind == "boolean":
        parts.append("true or false")
    elif kind:
        parts.append({"integer": "a whole number", "number": "a number", "string": "a string", "array": "a list",
                      "object": "a mapping"}.get(kind, f"a {kind}"))
    bounds = [f"{op} {schema[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                 ("maximum", "<="), ("exclusiveMaximum", "<")) if k in schema]
    if bounds:
        parts.append(("a number " if not kind else "") + " and ".join(bounds))
    if "required" in schema:
        keys = " and ".join(schema["required"])
        parts.append(f"a mapping with the key{'s' if len(schema['required']) > 1 else ''} {keys}")
    return " ".join(parts) if parts else json_literal(schema)


def json_literal(value) -> str:
    """A value as written in YAML: true/false, numbers and strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def number_hint(text: str) -> str:
    """Why a number came out as a string, and how to write it: YAML 1.1 reads `1e-3` (no decimal
    point, or an unsigned exponent) as a string; a number in quotes is a string on purpose."""
    try:
        value = float(text)
    except ValueError:
        return ""
    if not math.isfinite(value):
        return ""
    loaded = yaml.safe_load(text)
    if isinstance(loaded, (int, float)) and not isinstance(loaded, bool):
        return f" (in quotes YAML reads a string: write {text} without quotes)"
    plain = repr(value)
    written = yaml_float(text)
    also = f" or {plain}" if "e" not in plain and plain != written else ""
    return f" (YAML reads {text} as a string: write it as {written}{also})"


def yaml_float(text: str) -> str:
    """A number written as YAML 1.1 reads it as a float: a decimal point in the mantissa and a
    signed exponent (1e-3 -> 1.0e-3, 5E4 -> 5.0E+4); other forms as they are."""
    m = re.fullmatch(r"([+-]?[0-9]*\.?[0-9]*)([eE])([+-]?)([0-9]+)", text.strip())
    if not m:
        return text
    mantissa, e, sign, digits = m.groups()
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}{e}{sign or '+'}{digits}"


def non_finite(config, where: str = "") -> list[str]:
    """'<key>: nan is not a finite number ...' for every NaN or infinity in the config: no schema
    bound refuses them (NaN compares false with every bound), and no key means one."""
    if isinstance(config, dict):
        return [p for k, v in config.items() for p in non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(config, list):
        return [p for i, v in enumerate(config) for p in non_finite(v, f"{where}[{i}]")]
    if isinstance(config, float) and not math.isfinite(config):
        return [f"{where}: {config} is not a finite number (YAML reads .nan, .inf and -.inf as NaN and "
                f"infinity); write a finite number"]
    return []
