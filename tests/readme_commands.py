"""The shell commands of README.md's bash blocks, and a runner that executes them.

Used by tests/test_readme.py. Parsing: every ```bash block (also indented ones inside list
items), `#` comments dropped, `&&` chains split, `NAME=value` prefixes and `export NAME=value`
lines kept as environment, `$(...)` substituted with the inner command's output, unmatched
globs left literal (as bash does).

Running (`python tests/readme_commands.py REPO COMMANDS.json RESULTS.json`): all commands in
one Python process, in REPO (a temporary copy of the repository), so Snakemake and the
library are imported once:

* `snakemake ...`: Snakemake's own command line (`snakemake.cli.main`) in this process; a dry
  run (`-n --quiet rules`) unless it uses presets/demo.yaml, whose grid the test has already
  computed in the copy (it then runs for real: the report, the gallery, nothing to train);
* `python -m threeregime.<module> ...`: the module's `__main__`, in this process;
* anything else is an error (a command the test does not know how to check).

The environment setup and the test-suite command (`python3 -m venv`, `pip install`,
`python -m pytest`) are not run here: test_readme.py checks that they are the commands
.ci/run executes on every CI run.
"""

from __future__ import annotations

import glob
import json
import os
import re
import runpy
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")


@dataclass
class Command:
    argv: list[str]
    env: dict = field(default_factory=dict)        # NAME=value prefixes and earlier exports
    substitutions: dict = field(default_factory=dict)  # placeholder -> inner Command (as a dict)
    line: str = ""


def bash_blocks(markdown: str) -> list[str]:
    """The bodies of the ```bash blocks, dedented."""
    out = []
    for m in re.finditer(r"^( *)```bash\n(.*?)^\1```", markdown, re.M | re.S):
        indent = len(m.group(1))
        out.append("\n".join(line[indent:] for line in m.group(2).splitlines()))
    return out


def _words(text: str, substitutions: dict) -> list[str]:
    def hide(m):
        key = f"__SUBSTITUTION_{len(substitutions)}__"
        substitutions[key] = asdict(parse_command(m.group(1), {}))
        return key

    return shlex.split(SUBSTITUTION.sub(hide, text), comments=True)


def parse_command(text: str, env: dict) -> Command:
    subs: dict = {}
    words = _words(text, subs)
    own = dict(env)
    while words and ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        own[name] = value
    return Command(words, own, subs, text.strip())


def block_commands(block: str) -> list[Command]:
    """The commands of one bash block, in order."""
    env: dict = {}
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        for part in re.split(r"\s&&\s", line):
            words = shlex.split(part, comments=True)
            if not words:
                continue
            if words[0] == "export":
                for w in words[1:]:
                    name, value = w.split("=", 1)
                    env[name] = value
                continue
            out.append(parse_command(part, env))
    return out


def readme_commands(markdown: str) -> list[Command]:
    return [c for b in bash_blocks(markdown) for c in block_commands(b)]


# --- running --------------------------------------------------------------------------------

def _expand(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        matches = sorted(glob.glob(a)) if any(ch in a for ch in "*?[") else []
        out += matches or [a]
    return out


def _call(fn) -> int:
    try:
        result = fn()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return int(result or 0)


def run_argv(argv: list[str], env: dict) -> int:
    """One command in this process; its output goes to file descriptors 1 and 2."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update({k: os.path.expandvars(v) for k, v in env.items() if k != "PATH"})
    try:
        if argv[0] == "snakemake":
            from snakemake.cli import main

            args = _expand(argv[1:])
            dry = "presets/demo.yaml" not in args
            return _call(lambda: main(args + (["-n", "--quiet", "rules"] if dry else [])))
        if argv[:2] == ["python", "-m"] and argv[2].startswith("threeregime."):
            def module():
                sys.argv = [argv[2], *_expand(argv[3:])]
                runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
            return _call(module)
        print(f"readme_commands: no way to run {argv[0]!r} here; teach tests/readme_commands.py", file=sys.stderr)
        return 127
    finally:
        for k, v in old.items():
            if k != "PATH":
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _captured(fn) -> tuple[int, str]:
    """Run fn with fds 1 and 2 sent to a temporary file; (its return value, the output)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            rc = fn()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        f.seek(0)
        return rc, f.read().decode(errors="replace")


def run_command(cmd: dict) -> dict:
    argv = list(cmd["argv"])
    for key, inner in cmd["substitutions"].items():
        rc, out = _captured(lambda: run_argv(inner["argv"], {**cmd["env"], **inner["env"]}))
        if rc != 0:
            return {"line": cmd["line"], "rc": rc, "output": f"$({' '.join(inner['argv'])}) failed:\n{out}"}
        words = out.split()
        argv = [w for a in argv for w in (words if a == key else [a])]
    start = time.perf_counter()
    rc, out = _captured(lambda: run_argv(argv, cmd["env"]))
    return {"line": cmd["line"], "argv": argv, "rc": rc, "output": out, "seconds": time.perf_counter() - start}


def main(repo: str, commands_json: str, results_json: str) -> None:
    os.chdir(repo)
    sys.path.insert(0, repo)
    with open(commands_json) as f:
        commands = json.load(f)
    results = [run_command(c) for c in commands]
    with open(results_json, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
