"""Wall time of the offline demo on this machine (README "Quick start" quotes it).

    python benchmarks/demo_time.py [--cores 2] [--keep DIR]

Runs `snakemake --cores N --configfile presets/demo.yaml` in a fresh working folder (nothing
cached), then prints the machine, the wall time, the number of jobs and each study's regime
counts. Record the output in benchmarks/README.md ("Demo wall time").
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cores", default="2")
    p.add_argument("--keep", default=None, help="run in this (empty) folder and keep it")
    a = p.parse_args()
    work = Path(a.keep or tempfile.mkdtemp(prefix="threeregime-demo-"))
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake if snakemake.exists() else "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
           "--cores", a.cores, "--configfile", str(REPO / "presets" / "demo.yaml")]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
        return r.returncode
    jobs = re.findall(r"(\d+) of (\d+) steps \(100%\) done", r.stdout + r.stderr)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, --cores {a.cores}")
    print(f"demo: {int(seconds // 60)} min {seconds % 60:.0f} s wall, {jobs[-1][1] if jobs else '?'} jobs")
    for cells in sorted(work.glob("results/studies/*/cells.parquet")):
        counts = pd.read_parquet(cells).regime.value_counts().sort_index().to_dict()
        print(f"  {cells.parent.name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
