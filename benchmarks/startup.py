"""Where a workflow run's time goes outside the work itself, for one or more checkouts side by side.

    python benchmarks/startup.py --checkout before=/tmp/before --checkout after=. [--demo] [--repeat 2]

For each checkout (a folder holding a Snakefile; the same Python runs them all):
  * dry runs: `snakemake -n` with nothing done, once per reference figure and case study of the
    checkout's config.yaml and once with no target (the default studies), wall and CPU seconds;
    the checkouts alternate target by target, so background load hits both alike;
  * with --demo: the offline demo (`--configfile presets/demo.yaml`, nothing cached), its wall
    time and the mean wall time of each rule's jobs, from Snakemake's own job start and
    "Finished jobid" lines (1-second resolution; 32 prune jobs in the demo).
Prints one table per measurement and the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_time import cpu_model  # noqa: E402


def snakemake_cmd(checkout: Path, work: Path, *args: str) -> list[str]:
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe if exe.exists() else "snakemake"), "-s", str(checkout / "Snakefile"), "-d", str(work), *args]


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r


def reference_targets(checkout: Path) -> list[str]:
    with open(checkout / "config.yaml") as f:
        config = yaml.safe_load(f)
    names = sorted(config.get("figures", {})) + sorted(config.get("case_studies", {}))
    return ["(default)"] + [f"results/{n}.pdf" for n in names]


def dry_runs(checkouts: dict[str, Path], repeat: int) -> None:
    targets = reference_targets(next(iter(checkouts.values())))
    rows = defaultdict(lambda: defaultdict(list))
    for _ in range(repeat):
        for target in targets:
            for name, path in checkouts.items():
                with tempfile.TemporaryDirectory() as work:
                    args = ["-n", "--cores", "1"] + ([] if target == "(default)" else [target])
                    wall, cpu, r = timed(snakemake_cmd(path, Path(work), *args))
                    if r.returncode:
                        sys.exit(f"{name}: snakemake -n {target} failed:\n{r.stderr[-2000:]}")
                    rows[target][name].append((wall, cpu))
    names = list(checkouts)
    print(f"snakemake -n, nothing done (best of {repeat}; wall / CPU seconds):")
    print(f"  {'target':32s}" + "".join(f"{n:>20s}" for n in names))
    total = defaultdict(lambda: [0.0, 0.0])
    for target in targets:
        line = f"  {target:32s}"
        for n in names:
            wall, cpu = min(rows[target][n])
            total[n][0] += wall
            total[n][1] += cpu
            line += f"{wall:10.2f} / {cpu:6.2f}"
        print(line)
    print(f"  {'all ' + str(len(targets)) + ' dry runs':32s}" + "".join(f"{total[n][0]:10.1f} / {total[n][1]:6.1f}"
                                                                       for n in names))


STAMP = r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]"


def job_durations(log: str) -> dict[str, list[float]]:
    """Seconds per job by rule, from Snakemake's log: each job's start stamp to its Finished line."""
    started, rule_of, out = {}, {}, defaultdict(list)
    for m in re.finditer(STAMP + r"\n(?:local)?(?:rule|checkpoint) (\w+):\n(?:.*\n)*?\s+jobid: (\d+)", log):
        started[m.group(3)] = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        rule_of[m.group(3)] = m.group(2)
    for m in re.finditer(STAMP + r"\nFinished jobid: (\d+) \(Rule: (\w+)\)", log):
        jid = m.group(2)
        if jid in started:
            end = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            out[m.group(3)].append((end - started[jid]).total_seconds())
    return out


def demo(checkouts: dict[str, Path], cores: str) -> None:
    print(f"offline demo (presets/demo.yaml, --cores {cores}, nothing cached):")
    per_rule = {}
    for name, path in checkouts.items():
        with tempfile.TemporaryDirectory() as work:
            wall, cpu, r = timed(snakemake_cmd(path, Path(work), "--cores", cores, "--configfile",
                                               str(path / "presets" / "demo.yaml")))
            if r.returncode:
                sys.exit(f"{name}: demo failed:\n{r.stderr[-3000:]}")
            per_rule[name] = job_durations(r.stderr)
            jobs = sum(len(v) for v in per_rule[name].values())
            print(f"  {name}: {int(wall // 60)} min {wall % 60:.0f} s wall, {cpu:.0f} CPU s, {jobs} jobs timed")
    rules = sorted({r for d in per_rule.values() for r in d})
    print(f"  mean job wall time by rule (s):\n    {'rule':20s}" + "".join(f"{n:>12s}" for n in per_rule))
    for rule in rules:
        cells = []
        for n in per_rule:
            v = per_rule[n].get(rule, [])
            cells.append(f"{sum(v) / len(v):9.2f} x{len(v):<2d}" if v else f"{'-':>12s}")
        print(f"    {rule:20s}" + "".join(cells))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkout", action="append", required=True, help="NAME=PATH of a folder with a Snakefile")
    p.add_argument("--repeat", type=int, default=1, help="dry runs per target and checkout (the best is shown)")
    p.add_argument("--demo", action="store_true", help="also run the offline demo once per checkout")
    p.add_argument("--no-dry-runs", action="store_true")
    p.add_argument("--cores", default="2")
    a = p.parse_args()
    checkouts = {}
    for item in a.checkout:
        name, _, path = item.partition("=")
        checkouts[name] = Path(path or name).resolve()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; python {sys.version.split()[0]}")
    if not a.no_dry_runs:
        dry_runs(checkouts, a.repeat)
    if a.demo:
        demo(checkouts, a.cores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
