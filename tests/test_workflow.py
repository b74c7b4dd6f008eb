"""The real Snakefile, driven as a user drives it (snakemake as a subprocess)."""

import re
import subprocess

import pandas as pd
import pytest
import yaml

from conftest import ROOT, snakemake_bin

TINY = {
    "study": "tiny",
    "data": {"name": "digits", "root": "", "crop_padding": 1, "hflip": False},
    "model": {"depth": 8, "width": 0.5},
    "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 1},
    "retrain": {"epochs": 2, "milestones": [1]},
    "grid": {"epochs": [1, 2], "densities": [0.1, 0.5], "dense_seeds": [1], "retrain_seeds": [1, 2, 3]},
    "landscape": {"points": 3, "cka_samples": 300},
    "engine": {"device": "cpu", "eval_batch_size": 500},
}


def smk(*args, cwd=ROOT, check=True):
    r = subprocess.run([snakemake_bin(), "-s", str(ROOT / "Snakefile"), *args], cwd=cwd, capture_output=True,
                       text=True, timeout=900)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


def job_counts(out: str) -> dict[str, int]:
    stats = out.split("Job stats:")[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    counts.pop("total", None)
    return counts


def write_config(folder, cfg):
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_reference_config_plans_the_papers_grid(tmp_path):
    r = smk("-n", "-d", str(tmp_path), "results/figure2.pdf")
    counts = job_counts(r.stdout)
    assert counts["train_dense"] == 3
    assert counts["prune"] == 432
    assert counts["retrain_cell"] == 432  # x 3 retrain seeds = 1,296 retrained copies
    assert counts["landscape_metrics"] == 432  # x 3 pairs = 1,296 pair measurements
    assert counts["results_table"] == counts["figure2"] == counts["figure2_default"] == 1


def test_lint_is_clean():
    r = smk("--lint")
    assert "Congratulations" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("override, message", [
    ({"grid": {"densities": [0.05, 1.5]}}, "densities"),
    ({"grid": {"epochs": [15]}}, "not saved checkpoints"),
    ({"train": {"epochs": 155}}, "divisible by train.checkpoint_every"),
    ({"grid": {"retrain_seeds": [1]}}, "retrain_seeds"),
    ({"grid": {"densities": [0.1, 0.1]}}, "duplicate"),
    ({"prune": {"method": "random"}}, "method"),
    ({"data": {"name": "imagenet"}}, "imagenet"),
    ({"model": {"depth": 21}}, "6n\\+2"),
    ({"train": {"optimizer": "adam"}}, "adam"),
    ({"model": {"arch": "vgg"}}, "vgg"),
    ({"grid": {"dense_seeds": [1, 1]}}, "duplicate"),
])
def test_bad_config_is_refused_before_any_job(tmp_path, override, message):
    r = smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, override), check=False)
    assert r.returncode != 0
    assert re.search(message, r.stdout + r.stderr), (r.stdout + r.stderr)[-2000:]


def test_tiny_grid_end_to_end(tmp_path):
    cfg = write_config(tmp_path, TINY)
    smk("-d", str(tmp_path), "--configfile", cfg, "--cores", "2", "results/figure2.pdf")
    root = tmp_path / "results" / "tiny"
    table = pd.read_parquet(root / "table.parquet")
    cells = pd.read_parquet(root / "cells.parquet")
    # 2 temperatures x 2 densities x 1 dense seed: 3 copies and 3 pairs each
    assert len(table[table.kind == "copy"]) == 12 and len(table[table.kind == "pair"]) == 12
    assert set(cells.regime) <= {"I", "II-A", "II-B"} and len(cells) == 4
    assert table[table.kind == "pair"][["lmc", "cka", "cka_logit"]].notna().all().all()
    assert (table.achieved_density - table.density).abs().max() < 0.005
    assert (tmp_path / "results" / "figure2.pdf").stat().st_size > 10_000
    assert (tmp_path / "results" / "figure2.png").read_bytes()[:4] == b"\x89PNG"
    cell = root / "cells/preresnet8_w0.5/sgd_bs64/uniform"
    assert (cell / "density0.1/epoch2/seed1/pruned.pt").exists()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".resume"))

    # complete: nothing to do
    assert "Nothing to be done" in smk("-n", "-d", str(tmp_path), "--configfile", cfg).stdout
    # editing a regime threshold reruns only the table and the figures
    changed = dict(TINY, regimes={"cka_threshold": 0.5})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, changed)).stdout)
    assert set(counts) == {"results_table", "figure2", "figure2_default", "all"}, counts
    # editing the retraining schedule reruns retraining and everything after it, not dense training
    changed = dict(TINY, retrain={"epochs": 3, "milestones": [1]})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, changed)).stdout)
    assert counts["retrain_cell"] == 4 and "train_dense" not in counts and "prune" not in counts


def test_conda_env_matches_requirements():
    """envs/threeregime.yaml (for --sdm conda) pins exactly what requirements.txt pins."""
    env = yaml.safe_load((ROOT / "envs" / "threeregime.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    reqs = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert sorted(pip) == sorted(reqs)
    assert "torch==2.14.1" in reqs and "torchvision==0.29.1" in reqs


@pytest.mark.parametrize("case", ["npz_missing", "npz_keys", "npz_dtype", "cifar_absent", "batch_too_big"])
def test_bad_data_is_refused_before_any_job_runs(tmp_path, case):
    import numpy as np

    npz = tmp_path / "d.npz"
    x = np.zeros((10, 8, 8, 1), np.uint8)
    if case == "npz_keys":
        np.savez(npz, x_train=x, y_train=np.zeros(10, int))
    if case == "npz_dtype":
        np.savez(npz, x_train=x.astype(np.float32), y_train=np.zeros(10, int), x_test=x, y_test=np.zeros(10, int))
    cfg = {
        "npz_missing": ({"data": {"name": "npz", "root": str(npz)}}, "no such .npz file"),
        "npz_keys": ({"data": {"name": "npz", "root": str(npz)}}, "missing arrays"),
        "npz_dtype": ({"data": {"name": "npz", "root": str(npz)}}, "x_train must be uint8 NHWC"),
        "cifar_absent": ({"data": {"name": "cifar10", "root": str(tmp_path)}}, "data.download is false"),
        "batch_too_big": ({**TINY, "retrain": {"batch_size": 5000}}, "retrain.batch_size = 5000 is larger"),
    }[case]
    r = smk("-d", str(tmp_path), "--configfile", write_config(tmp_path, cfg[0]), "--cores", "1", check=False)
    assert r.returncode != 0
    assert cfg[1] in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert not (tmp_path / "results").exists()  # refused before any job ran
