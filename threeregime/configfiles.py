"""Checks of the YAML config files a run reads that Snakemake's loader does not make.

PyYAML keeps the last of two equal keys in a mapping without a word, so a section written
twice silently loses the first one; this finds them, with file and line.
"""

from __future__ import annotations

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


def schema_problems(config: dict, schema_path: str) -> list[str]:
    """The config's violations of the JSON schema, one line each, naming the key as written
    in YAML (`defaults.train.lr`) and, for a number written so that YAML reads a string
    (`1e-3`), how to write it."""
    import jsonschema

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        # anyOf/oneOf: the most specific reason
        err = jsonschema.exceptions.best_match([err]) if err.context else err
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        msg = f"{key}: {err.message}"
        if isinstance(err.instance, str) and err.validator in ("type", "anyOf", "oneOf"):
            try:
                float(err.instance)
                msg += (f" (YAML reads {err.instance} as a string: write it with a decimal point and a signed "
                        f"exponent, e.g. 1.0e-3, or as 0.001)")
            except ValueError:
                pass
        problems.append(msg)
    return problems
