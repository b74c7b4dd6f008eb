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
