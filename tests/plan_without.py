"""Run snakemake with some top-level packages made unimportable:

    python tests/plan_without.py torch,matplotlib <snakemake arguments...>

Planning the DAG must not need them (tests/test_spec_layer.py): any import of one of them,
however indirect, fails with "planning must not import <name>"."""

import sys


class _Refuse:
    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ImportError(f"planning must not import {name}")
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _Refuse(sys.argv[1].split(",")))
    from snakemake.cli import main

    main(sys.argv[2:])
