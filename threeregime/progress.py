"""How far each study's grid is, and its phase diagram so far, without Snakemake.

    python -m threeregime.progress [--configfile FILE ...] [--study NAME ...]

reads the same config as `snakemake --configfile FILE ...` and, per study, counts its cells
(one per temperature, load and dense seed) by state:

  done         its landscape metrics exist
  running      one of its jobs (pruning, retraining, metrics) is in progress: Snakemake has
               marked the job's output incomplete and holds its lock on this folder (on a
               cluster: submitted, queued or running)
  interrupted  marked incomplete, but no Snakemake holds the folder: a killed run left it
               (rerun with --rerun-incomplete; after a kill -9 also `snakemake --unlock`)
  missing      not started

and the stages behind them (dense checkpoints, pruned, retrained, measured). It draws
results/progress/<study>.pdf and .png: the phase diagram of the finished grid points
(all dense seeds done), running ones hatched orange, the others hatched grey.

It only reads files: it starts no job, takes no lock and changes no file Snakemake tracks,
so it is safe while a run is going on. `--where T L` prints a cell's files instead (for
`snakemake --forcerun`).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .plan import load_plan
from .settle import progress_lines as settle_progress_lines
from .spec.common import ConfigError, fmt
from .study import Study

STATES = ("done", "running", "interrupted", "missing")
# A cell's files, by what `--where ... --file` calls them.
CELL_FILES = ("dense", "pruned", "retrained", "log", "landscape", "lmc_curves")


def snakemake_incomplete(workdir: str | os.PathLike = ".") -> set[str]:
    """Paths Snakemake has marked incomplete (a job writing them started and has not finished).

    Snakemake 9's file persistence keeps one marker per output under .snakemake/incomplete/,
    named by the URL-safe base64 of the path, split into folders ('@'-prefixed) when longer
    than a file name may be.
    """
    root = Path(workdir) / ".snakemake" / "incomplete"
    out = set()
    for folder, _, names in os.walk(root):
        parts = [p.lstrip("@") for p in Path(folder).relative_to(root).parts]
        for name in names:
            if name == "migration_underway":
                continue
            try:
                out.add(base64.urlsafe_b64decode("".join(parts) + name).decode())
            except (ValueError, UnicodeDecodeError):
                continue  # not a marker
    return out


def snakemake_running(workdir: str | os.PathLike = ".") -> bool:
    """Whether a Snakemake process holds this folder (its lock files exist)."""
    return any((Path(workdir) / ".snakemake" / "locks").glob("*.lock"))


@dataclass
class StudyProgress:
    study: Study
    cells: dict = field(default_factory=dict)     # (temperature, load, seed) -> state
    stages: dict = field(default_factory=dict)    # stage -> (present, needed, running)

    def counts(self) -> dict[str, int]:
        return {s: sum(v == s for v in self.cells.values()) for s in STATES}

    def grid_state(self, temperature, load) -> str:
        """A grid point is done when all its dense seeds are; running when any seed runs."""
        states = [self.cells[(temperature, load, s)] for s in self.study.dense_seeds]
        if all(s == "done" for s in states):
            return "done"
        for s in ("running", "interrupted"):
            if s in states:
                return s
        return "missing"

    def lines(self) -> list[str]:
        s = self.study
        c = self.counts()
        n = len(self.cells)
        seeds = len(s.dense_seeds)
        head = (f"{s.name}: {s.temperature.name} x {s.load.name}, {len(s.temperatures)} x {len(s.loads)} cells"
                + (f" x {seeds} dense seeds" if seeds > 1 else ""))
        states = ", ".join(f"{c[k]} {k}" for k in STATES[1:] if c[k] or k != "interrupted")
        stages = ", ".join(f"{k} {have}/{need}" + (f" ({run} running)" if run else "")
                           for k, (have, need, run) in self.stages.items())
        return [head, f"  cells: {c['done']}/{n} done, {states}", f"  files: {stages}"]


def study_progress(study: Study, workdir: str | os.PathLike = ".", incomplete: set[str] | None = None,
                   locked: bool | None = None) -> StudyProgress:
    """The state of every cell of `study` in `workdir` (files relative to it, as Snakemake's)."""
    wd = Path(workdir)
    incomplete = snakemake_incomplete(wd) if incomplete is None else incomplete
    locked = snakemake_running(wd) if locked is None else locked
    exists = lambda p: (wd / p).exists()  # noqa: E731
    out = StudyProgress(study)
    need: dict[str, set] = {k: set() for k in ("dense", "pruned", "retrained", "measured")}
    for t, l, cell in study.cells():
        files = cell_files(cell)
        need["dense"].add(files["dense"])
        need["pruned"].add(files["pruned"])
        need["retrained"].add(files["retrained"])
        need["measured"].add(files["landscape"])
        own = [files[k] for k in ("pruned", "retrained", "log", "landscape")]
        if exists(files["landscape"]):
            state = "done"
        elif any(p in incomplete for p in own):
            state = "running" if locked else "interrupted"
        else:
            state = "missing"
        out.cells[(t, l, cell.seed)] = state
    out.stages = {k: (sum(exists(p) for p in paths), len(paths),
                      sum(p in incomplete for p in paths) if locked else 0) for k, paths in need.items()}
    return out


def cell_files(cell) -> dict[str, str]:
    """The files one cell (one dense seed) is made of, as Snakemake names them."""
    return {"dense": cell.dense_path, "pruned": f"{cell.cell_dir}/pruned.pt",
            "retrained": f"{cell.retrain_dir}/retrained.pt", "log": f"{cell.retrain_dir}/retrain_log.csv",
            "landscape": cell.landscape_path,
            "lmc_curves": f"{cell.retrain_dir}/lmc_curves_{cell.landscape.key}.png"}


def partial_summary(progress: StudyProgress, workdir: str | os.PathLike = "."):
    """cells.parquet's rows for the finished grid points, and NaN rows for the others."""
    import numpy as np
    import pandas as pd

    from .tables import cell_key, cell_rows, summarize

    s = progress.study
    wd = Path(workdir)
    rows = []
    for t, l, cell in s.cells():
        if progress.grid_state(t, l) != "done":
            continue
        files = cell_files(cell)
        rows += cell_rows(cell_key(s, t, l, cell), str(wd / files["log"]), str(wd / files["landscape"]))
    done = summarize(pd.DataFrame(rows), s.regimes) if rows else pd.DataFrame()
    have = set(zip(done.get("temperature", []), done.get("load", [])))
    blank = [{"temperature": float(t), "load": float(l), "test_error": np.nan, "bleu": np.nan, "lmc": np.nan,
              "cka": np.nan,
              "regime": "missing"} for t in s.temperatures for l in s.loads if (float(t), float(l)) not in have]
    return pd.concat([done, pd.DataFrame(blank)], ignore_index=True)


def draw(progress: StudyProgress, out_dir: str | os.PathLike, workdir: str | os.PathLike = ".") -> str:
    """results/progress/<study>.pdf and .png: the phase diagram so far. Returns the PNG's path."""
    from .plots import phase_diagram
    from .study import axis_style

    s = progress.study
    summary = partial_summary(progress, workdir)
    grid = {(t, l): progress.grid_state(t, l) for t in s.temperatures for l in s.loads}
    done = sum(v == "done" for v in grid.values())
    running = [k for k, v in grid.items() if v == "running"]
    title = (f"{s.name} so far: {done} of {len(grid)} cells done, {len(running)} running "
             f"({time.strftime('%Y-%m-%d %H:%M')})")
    pdf, png = (str(Path(out_dir) / f"{s.name}.{ext}") for ext in ("pdf", "png"))
    phase_diagram(summary, pdf, png, s.regimes,
                  temperature=axis_style(s.temperature), load=axis_style(s.load), title=title, running=running,
                  missing_label="not computed yet", quality=s.entry.quality)
    return png


def _value(text: str, axis) -> float:
    v = float(text)
    return int(v) if axis.integer else v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m threeregime.progress", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", nargs="+", default=[], help="the --configfile files of the snakemake run")
    p.add_argument("--study", nargs="+", default=None, help="studies (default: default_studies)")
    p.add_argument("--directory", "-d", default=".", help="the workflow's working folder (default: here)")
    p.add_argument("--out", default=None, help="folder for the figures (default: <directory>/results/progress)")
    p.add_argument("--no-figures", action="store_true", help="counts only")
    p.add_argument("--where", nargs=2, metavar=("TEMPERATURE", "LOAD"),
                   help="print the files of this cell of the (one) --study instead")
    p.add_argument("--seed", type=int, default=None, help="with --where: this dense seed only")
    p.add_argument("--file", choices=CELL_FILES, default=None, help="with --where: only this file")
    a = p.parse_args(argv)
    try:
        plan = load_plan(a.configfile)
        names = a.study or list(plan.config.get("default_studies", []))
        chosen = [plan.study(n) for n in names]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.where:
        if len(chosen) != 1:
            print("error: --where needs exactly one --study", file=sys.stderr)
            return 2
        s = chosen[0]
        t, l = _value(a.where[0], s.temperature), _value(a.where[1], s.load)
        if t not in s.temperatures or l not in s.loads:
            print(f"error: study {s.name} has no cell ({s.temperature.name} {fmt(t)}, {s.load.name} {fmt(l)}); "
                  f"{s.temperature.name}: {[fmt(v) for v in s.temperatures]}, {s.load.name}: "
                  f"{[fmt(v) for v in s.loads]}", file=sys.stderr)
            return 2
        for seed in [a.seed] if a.seed is not None else s.dense_seeds:
            files = cell_files(s.cell(t, l, seed))
            print("\n".join([files[a.file]] if a.file else [f"{k}: {v}" for k, v in files.items()]))
        return 0
    incomplete, locked = snakemake_incomplete(a.directory), snakemake_running(a.directory)
    out_dir = a.out or os.path.join(a.directory, "results", "progress")
    for s in chosen:
        prog = study_progress(s, a.directory, incomplete, locked)
        print("\n".join(prog.lines()))
        if s.settle_batches:  # the settle option: pairs per cell and why (threeregime/settle.py)
            print("\n".join(settle_progress_lines(s, a.directory)))
        if not a.no_figures:
            print(f"  figure: {draw(prog, out_dir, a.directory)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
