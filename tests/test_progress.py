"""Progress of a grid (threeregime.progress), job-log lines with time and ETA (training.py)."""

import contextlib
import io
import re
import shutil
import types

import pandas as pd
import pytest
import yaml

from threeregime import progress
from threeregime.training import EpochRecord, clock, done_line, epoch_line


def snakemake_marker(workdir, path, max_len=255):
    """Mark `path` incomplete exactly as Snakemake 9's file persistence does (its own encoder)."""
    from snakemake.persistence.file import FilePersistence

    subject = str(workdir / ".snakemake" / "incomplete")
    fake = types.SimpleNamespace(_fetch_max_len=lambda _subject: max_len)
    marker = FilePersistence._record_path(fake, subject, path)
    (workdir / marker).parent.mkdir(parents=True, exist_ok=True)
    (workdir / marker).write_text('{"external_jobid": null}')


def test_incomplete_markers_are_decoded(tmp_path):
    paths = ["results/cells/digits_preresnet8w0.5_sgd_bs64_e2-0123abcd/seed1/epoch1/uniform_d0.1/pruned.pt",
             "results/studies/tiny/table.parquet"]
    snakemake_marker(tmp_path, paths[0], max_len=20)  # long names are split into '@' folders
    snakemake_marker(tmp_path, paths[1])
    (tmp_path / ".snakemake" / "incomplete" / "migration_underway").write_text("")
    assert progress.snakemake_incomplete(tmp_path) == set(paths)
    assert not progress.snakemake_running(tmp_path)
    (tmp_path / ".snakemake" / "locks").mkdir()
    (tmp_path / ".snakemake" / "locks" / "0.input.lock").write_text("x\n")
    assert progress.snakemake_running(tmp_path)


@pytest.fixture()
def tiny_config(tmp_path):
    from test_workflow import TINY

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


def test_cell_states_from_files_markers_and_locks(tmp_path, tiny_config):
    from threeregime.plan import load_plan

    study = load_plan([tiny_config]).study("tiny")
    files = {(t, l): progress.cell_files(c) for t, l, c in study.cells()}
    work = tmp_path / "work"

    def touch(p):
        (work / p).parent.mkdir(parents=True, exist_ok=True)
        (work / p).write_text("")

    touch(files[(1, 0.1)]["dense"])
    touch(files[(1, 0.1)]["landscape"])           # done
    touch(files[(1, 0.5)]["pruned"])
    snakemake_marker(work, files[(1, 0.5)]["retrained"])  # its retraining started
    snakemake_marker(work, files[(2, 0.1)]["dense"])      # a dense segment started
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.output.lock").write_text("")
    p = progress.study_progress(study, work)
    assert p.cells == {(1, 0.1, 1): "done", (1, 0.5, 1): "running", (2, 0.1, 1): "missing",
                       (2, 0.5, 1): "missing"}
    assert p.stages == {"dense": (1, 2, 1), "pruned": (1, 4, 0), "retrained": (0, 4, 1), "measured": (1, 4, 0)}
    assert p.lines()[1:] == ["  cells: 1/4 done, 1 running, 2 missing",
                             "  files: dense 1/2 (1 running), pruned 1/4, retrained 0/4 (1 running), measured 1/4"]
    assert p.grid_state(1, 0.5) == "running" and p.grid_state(1, 0.1) == "done"
    # no Snakemake holds the folder: the marked job was interrupted, not running
    shutil.rmtree(work / ".snakemake" / "locks")
    p = progress.study_progress(study, work)
    assert p.cells[(1, 0.5, 1)] == "interrupted" and p.stages["dense"] == (1, 2, 0)
    assert p.lines()[1] == "  cells: 1/4 done, 0 running, 1 interrupted, 2 missing"


def test_where_prints_a_cells_files(tiny_config, capsys):
    from threeregime.plan import load_plan

    assert progress.main(["--configfile", tiny_config, "--study", "tiny", "--where", "2", "0.5", "--file",
                          "pruned"]) == 0
    cell = load_plan([tiny_config]).study("tiny").cell(2, 0.5, 1)
    assert capsys.readouterr().out == f"{cell.cell_dir}/pruned.pt\n"
    assert progress.main(["--configfile", tiny_config, "--study", "tiny", "--where", "3", "0.5"]) == 2
    assert "has no cell (epochs 3, density 0.5); epochs: ['1', '2']" in capsys.readouterr().err


@pytest.mark.slow
def test_half_finished_grid_is_counted_and_drawn(tiny_grid, tmp_path, tiny_config):
    """The finished tiny grid with one cell deleted and one being recomputed: counts, and the
    partial summary of the finished cells equals the workflow's own cells.parquet."""
    from threeregime.plan import load_plan

    folder, _ = tiny_grid
    work = tmp_path / "work"
    shutil.copytree(folder / "results", work / "results")
    study = load_plan([tiny_config]).study("tiny")
    cells = {(t, l): c for t, l, c in study.cells()}
    (work / cells[(2, 0.5)].landscape_path).unlink()
    (work / cells[(1, 0.5)].landscape_path).unlink()
    snakemake_marker(work, cells[(1, 0.5)].landscape_path)
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.output.lock").write_text("")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert progress.main(["--configfile", tiny_config, "-d", str(work)]) == 0
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["tiny: epochs x density, 2 x 2 cells", "  cells: 2/4 done, 1 running, 1 missing",
                         "  files: dense 2/2, pruned 4/4, retrained 4/4, measured 2/4 (1 running)"]
    png = work / "results" / "progress" / "tiny.png"
    assert lines[3] == f"  figure: {png}" and png.read_bytes()[:4] == b"\x89PNG"
    assert (work / "results" / "progress" / "tiny.pdf").stat().st_size > 10_000

    p = progress.study_progress(study, work)
    partial = progress.partial_summary(p, work).set_index(["temperature", "load"]).sort_index()
    full = pd.read_parquet(folder / "results" / "studies" / "tiny" / "cells.parquet").set_index(
        ["temperature", "load"]).sort_index()
    done = [(1.0, 0.1), (2.0, 0.1)]
    cols = ["test_error", "lmc", "cka", "cka_logit", "regime"]
    pd.testing.assert_frame_equal(partial.loc[done, cols], full.loc[done, cols], check_dtype=False)
    assert partial.loc[[(1.0, 0.5), (2.0, 0.5)], "regime"].tolist() == ["missing", "missing"]
    assert partial.loc[[(1.0, 0.5), (2.0, 0.5)], ["test_error", "lmc", "cka"]].isna().all().all()


def test_epoch_and_done_lines():
    rec = EpochRecord(3, 0.1, [1.23456, 0.5], [0.4, 0.25], [1.5, 0.6], [0.31, 0.3])
    assert clock(3725.4) == "1:02:05" and clock(0.4) == "0:00:00" and clock(59.5) == "0:01:00"
    assert epoch_line(rec, 160, 12.34, 10.0, 157) == (
        "epoch 3/160 lr 0.1 train loss 1.2346 0.5000 train err 0.4000 0.2500 test err 0.3100 0.3000 "
        "12.3 s/epoch ETA 0:26:10")
    assert done_line([rec], 0, 3, 30.0) == (
        "done: 3 epochs (epochs 1-3) in 0:00:30 (10.0 s/epoch); epoch 3: train loss 1.2346 0.5000 train err "
        "0.4000 0.2500 test err 0.3100 0.3000")
    assert done_line([rec], 2, 3, 7.0).startswith("done: 1 epoch (epoch 3) in 0:00:07 (7.0 s/epoch); ")
    assert done_line([rec], 3, 3, 0.0).startswith("done: no epochs to train; epoch 3:")


@pytest.mark.slow
def test_job_logs_have_time_eta_and_done_lines(tiny_grid):
    folder, _ = tiny_grid
    number = r"\d+\.\d{4}"
    dense = sorted((folder / "results" / "logs" / "train_dense").rglob("*.log"))
    retrain = sorted((folder / "results" / "logs" / "retrain").rglob("*.log"))
    assert len(dense) == 2 and len(retrain) == 4
    values = rf"{number}(?: {number})*"  # one per copy trained in the pass
    for log in dense + retrain:
        text = log.read_text()
        epochs = re.findall(rf"epoch (\d)/2 lr [\d.]+ train loss {values} train err {values} test err {values} "
                            rf"\d+\.\d s/epoch ETA \d:\d\d:\d\d$", text, re.M)
        dones = re.findall(r"done: \d epochs? \(epochs? [\d-]+\) in \d:\d\d:\d\d \(\d+\.\d s/epoch\); ", text)
        # a dense segment trains one epoch; a retraining job both epochs per pass of copies
        assert (epochs == [log.stem[len("epoch"):]]) if log in dense else (epochs[:2] == ["1", "2"]), text
        assert len(dones) == (1 if log in dense else len(epochs) // 2), text
