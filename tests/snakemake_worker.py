"""Snakemake dry runs for the tests, in one long-lived process.

A `snakemake` process spends seconds importing Snakemake and its plugins before it reads the
Snakefile; the suite's dry runs (bad configs refused, the reference plans, the job counts after a
finished grid) would pay that each time. This process imports Snakemake once and then runs each
command it is sent through Snakemake's own command line (`snakemake.cli.main`, as
tests/readme_commands.py does), with the command's working directory and its stdout and stderr
captured apart: the Snakefile is parsed and the DAG built anew for every command, as in a fresh
process. Only dry runs come here (tests/test_workflow.py `smk`); real runs, `--lint`, runs under
another hash seed or environment, and the Ctrl-C test keep their own processes.

Protocol: one JSON object a line on stdin, {"argv": [...], "cwd": "..."}; one a line back on the
stdout this process started with, {"rc": int, "stdout": str, "stderr": str}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def run(argv: list[str], cwd: str) -> dict:
    from snakemake.cli import main

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    here = os.getcwd()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            os.chdir(cwd)
            try:
                main(argv)
                rc = 0
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # reported like a crashed process, the worker goes on
                import traceback

                traceback.print_exc()
                rc = 1 if not isinstance(e, KeyboardInterrupt) else 130
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(here)
        out.seek(0)
        err.seek(0)
        return {"rc": rc, "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace")}


def serve() -> None:
    replies = os.fdopen(os.dup(1), "w")
    import snakemake.cli  # noqa: F401  (imported once, before the first command)

    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        replies.write(json.dumps(run(cmd["argv"], cmd["cwd"])) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
