"""The real Snakefile, driven as a user drives it (snakemake as a subprocess; dry runs in one long-lived
Snakemake process, tests/snakemake_worker.py)."""

import atexit
import base64
import json
import re
import selectors
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT, snakemake_bin

TINY_STUDY = {
    "temperature": {"axis": "epochs", "values": [1, 2]},
    "load": {"axis": "density", "values": [0.1, 0.5]},
    "data": {"name": "digits", "root": "", "crop_padding": 1, "hflip": False},
    "model": {"depth": 8, "width": 0.5},
    "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 1},
    "retrain": {"epochs": 2, "milestones": [1]},
    "seeds": {"dense": [1], "retrain": [1, 2, 3]},
    "landscape": {"points": 3, "cka_samples": 300},
}
# One thread a dense job (config.yaml: 4, capped at --cores): the tiny jobs are mostly their process
# start (imports), so two at a time on --cores 2 rather than one after another. Not identity.
ENGINE = {"device": "cpu", "eval_batch_size": 500, "dense_threads": 1}


def tiny(study=None, **top):
    """A config with the tiny study (changed by `study`, a partial override) as its default."""
    from threeregime.spec.common import deep_merge

    return {"default_studies": ["tiny"], "studies": {"tiny": deep_merge(TINY_STUDY, study or {})},
            "engine": ENGINE, **top}


TINY = tiny()


class _DryRunWorker:
    """tests/snakemake_worker.py, started at the first dry run and kept for the session."""

    proc = None

    @classmethod
    def run(cls, argv: list[str], cwd, timeout: float) -> subprocess.CompletedProcess:
        if cls.proc is None or cls.proc.poll() is not None:
            cls.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "snakemake_worker.py")],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            atexit.register(cls.proc.kill)
            cls._reply(timeout)  # ready
        cls.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
        cls.proc.stdin.flush()
        r = cls._reply(timeout)
        return subprocess.CompletedProcess(["snakemake", *argv], r["rc"], r["stdout"], r["stderr"])

    @classmethod
    def _reply(cls, timeout: float) -> dict:
        with selectors.DefaultSelector() as sel:
            sel.register(cls.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout)
        line = cls.proc.stdout.readline() if ready else ""
        if not line:
            cls.proc.kill()
            cls.proc.wait()
            raise AssertionError(f"the Snakemake dry-run worker gave no answer (exit {cls.proc.returncode})")
        return json.loads(line)


def smk(*args, cwd=ROOT, check=True):
    """`snakemake -s Snakefile ARGS` in `cwd`. Dry runs (-n) go to one long-lived Snakemake process
    (tests/snakemake_worker.py: Snakemake's own command line, the Snakefile parsed anew each time),
    everything else to its own `snakemake` process."""
    argv = ["-s", str(ROOT / "Snakefile"), *args]
    if "-n" in args:
        r = _DryRunWorker.run(argv, cwd, timeout=900)
    else:
        r = subprocess.run([snakemake_bin(), *argv], cwd=cwd, capture_output=True, text=True, timeout=900)
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


# Jobs per rule of the reference studies (dry runs on config.yaml). Dense runs are chains of
# 10-epoch segments (16 jobs per 160-epoch run and seed); iteration schedules are one job.
REFERENCE_PLANS = {
    "figure2": (["results/figure2.pdf"],
                {"train_dense": 48, "prune": 432, "retrain_cell": 432, "landscape_metrics": 432}),
    # Figure 12 (GlobalMP) shares Figure 2's dense runs: planned once
    "figure2+12": (["results/figure2.pdf", "results/figure12.pdf"],
                   {"train_dense": 48, "prune": 864, "retrain_cell": 864, "landscape_metrics": 864}),
    "figure7": (["results/figure7.pdf"],
                {"train_dense": 39, "prune": 351, "retrain_cell": 351, "landscape_metrics": 351}),
    # {SGD, Adam} dense x {SGD, Adam} retrain, 1 dense seed, 16 epochs x 2 densities
    "figure13": (["results/figure13.pdf"],
                 {"train_dense": 32, "prune": 64, "retrain_cell": 128, "landscape_metrics": 128}),
    # rho 0 is the SGD run; 8 SAM runs; 3 seeds; 16 segments each
    "sam": (["results/studies/sam_rho_density/phase.pdf"],
            {"train_dense": 432, "prune": 162, "retrain_cell": 162, "landscape_metrics": 162}),
    "width": (["results/studies/epochs_width/phase.pdf"],
              {"train_dense": 288, "prune": 288, "retrain_cell": 288, "landscape_metrics": 288}),
    "depth": (["results/studies/epochs_depth/phase.pdf"],
              {"train_dense": 288, "prune": 288, "retrain_cell": 288, "landscape_metrics": 288}),
    # Figures 8-11 (DenseNet-40, VGG-19, CIFAR-100, SVHN), one dry run: Figure 2's grid four
    # times over, no dense run shared (each is another network or data set)
    "figures8-11": (["results/figure8.pdf", "results/figure9.pdf", "results/figure10.pdf", "results/figure11.pdf"],
                    {"train_dense": 192, "prune": 1728, "retrain_cell": 1728, "landscape_metrics": 1728}),
}


@pytest.mark.parametrize("name", list(REFERENCE_PLANS))
def test_reference_studies_plan_the_papers_grids(tmp_path, name):
    targets, expected = REFERENCE_PLANS[name]
    counts = job_counts(smk("-n", "-d", str(tmp_path), *targets).stdout)
    assert {k: counts.get(k, 0) for k in expected} == expected
    studies = 4 if name == "figure13" else len(targets)
    assert counts["study_table"] == studies
    assert counts.get("phase_diagram", 0) == (0 if name == "figure13" else studies)


def test_no_target_draws_the_default_studies(tmp_path):
    counts = job_counts(smk("-n", "-d", str(tmp_path)).stdout)
    assert counts["train_dense"] == 48 and counts["phase_diagram"] == 1 and counts["all"] == 1


def test_lint_is_clean():
    r = smk("--lint")
    assert "Congratulations" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("override, message", [
    ({"defaults": {"seeds": {"retrain": [1]}}}, "retrain"),
    ({"studies": {"epochs_density": {"temperature": {"axis": "epochs", "values": [15]}}}}, "not a saved checkpoint"),
    ({"defaults": {"train": {"epochs": 155}}}, "checkpoint_every: 10 does not divide train.epochs = 155"),
    ({"studies": {"epochs_density": {"load": {"axis": "density", "values": [0.1, 0.1]}}}}, "duplicate"),
    ({"defaults": {"prune": {"method": "random"}}}, "method"),
    ({"defaults": {"data": {"name": "imagenet"}}}, "imagenet"),
    ({"defaults": {"model": {"depth": 21}}}, "6n\\+2"),
    ({"defaults": {"train": {"optimizer": "rmsprop"}}}, "rmsprop"),
    ({"defaults": {"model": {"arch": "vgg"}}}, "vgg"),
    ({"defaults": {"seeds": {"dense": [1, 1]}}}, "duplicate"),
    ({"defaults": {"regimes": {"lmc_epsilon": 0.05}}}, "lmc_epsilon"),
    ({"studies": {"..": {"temperature": {"axis": "epochs", "values": [10]},
                         "load": {"axis": "density", "values": [0.1]}}}}, "does not match|must match"),
    ({"default_studies": ["nope"]}, "nope"),
    ({"studies": {"epochs_density": {"load": {"axis": "width", "values": [1]}, "temperature": {"axis": "width"}}}},
     "temperature"),
    ({"studies": {"epochs_density": {"model": {"factory": "nowhere.py:net"}}}}, "model.factory: file 'nowhere.py' not found"),
    ({"studies": {"epochs_density": {"prune": {"layers": ["attention"]}}}}, "attention"),
])
def test_bad_config_is_refused_before_any_job(tmp_path, override, message):
    r = smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, override), check=False)
    assert r.returncode != 0
    assert re.search(message, r.stdout + r.stderr), (r.stdout + r.stderr)[-2000:]


@pytest.mark.slow
def test_tiny_grid_end_to_end(tiny_grid):
    tmp_path, cfg = tiny_grid  # run once per session (tests/conftest.py), shared with other tests
    root = tmp_path / "results" / "studies" / "tiny"
    table = pd.read_parquet(root / "table.parquet")
    cells = pd.read_parquet(root / "cells.parquet")
    # 2 temperatures x 2 densities x 1 dense seed: 3 copies and 3 pairs each
    assert len(table[table.kind == "copy"]) == 12 and len(table[table.kind == "pair"]) == 12
    assert set(cells.regime) <= {"I", "II-A", "II-B"} and len(cells) == 4
    assert sorted(set(cells.temperature)) == [1.0, 2.0] and sorted(set(cells.load)) == [0.1, 0.5]
    assert table[table.kind == "pair"][["lmc", "cka", "cka_logit"]].notna().all().all()
    assert (table.achieved_density - table.density).abs().max() < 0.005
    assert (root / "phase.pdf").stat().st_size > 10_000 and (root / "phase.png").read_bytes()[:4] == b"\x89PNG"
    dense = list((tmp_path / "results" / "dense").glob("digits_preresnet8w0.5_sgd_bs64_e2-*/seed1"))
    assert len(dense) == 1 and sorted(p.name for p in dense[0].glob("*.pt")) == ["epoch1.pt", "epoch2.pt"]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".resume"))
    assert not list(tmp_path.rglob("resume.pt"))

    # complete: nothing to do
    assert "Nothing to be done" in smk("-n", "-d", str(tmp_path), "--configfile", cfg).stdout
    # where the data lives and how jobs run are not identity: nothing to do
    moved = tiny({"data": {"root": str(tmp_path / "elsewhere"), "download": True}},
                 engine={"device": "cpu", "eval_batch_size": 128, "threads": 2, "compile": True})
    assert "Nothing to be done" in smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, moved)).stdout
    # The parameters and inputs Snakemake recorded for each cell artifact are those an earlier
    # version recorded for the same files (tests/data/recorded_jobs_tiny.json, from 6603601): a
    # changed record reruns that job and everything after it in every user's finished grid.
    recorded = json.loads((ROOT / "tests" / "data" / "recorded_jobs_tiny.json").read_text())
    now = {base64.urlsafe_b64decode(r.name).decode(): json.loads(r.read_text())
           for r in (tmp_path / ".snakemake" / "metadata").iterdir()}
    cell_rules = {"train_dense", "prune", "retrain_cell", "landscape_metrics"}
    earlier = {path: r for path, r in recorded.items() if r["rule"] in cell_rules}
    assert len(earlier) == 18  # 2 dense checkpoints; 4 cells: pruned, retrained, log, landscape
    assert {path: {"rule": now[path]["rule"], "params": now[path]["params"], "input": sorted(now[path]["input"])}
            for path in earlier} == earlier
    # an update of the workflow (a checkout touches every script and rule file) redoes nothing
    # (profiles/default/config.yaml leaves out Snakemake's code trigger)
    for code in [ROOT / "Snakefile", *(ROOT / "rules").glob("*.smk"), *(ROOT / "workflow_scripts").glob("*.py")]:
        code.touch()
    assert "Nothing to be done" in smk("-n", "-d", str(tmp_path), "--configfile", cfg).stdout
    r = smk("-n", "-d", str(tmp_path), "--configfile", cfg, "--workflow-profile", "none")
    assert "Code has changed since last execution" in r.stdout  # what the workflow profile prevents
    # the same study under another name: nothing to compute but its table and figure
    renamed = {"default_studies": ["renamed"], "studies": {"renamed": TINY_STUDY}, "engine": ENGINE}
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, renamed)).stdout)
    assert set(counts) == {"study_table", "phase_diagram", "all"}, counts
    # editing a regime threshold reruns only the table and the figures
    changed = tiny({"regimes": {"cka_threshold": 0.5}})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, changed)).stdout)
    assert set(counts) == {"study_table", "phase_diagram", "all"}, counts
    # editing the retraining schedule reruns retraining and everything after it, not dense training or pruning
    changed = tiny({"retrain": {"epochs": 3, "milestones": [1]}})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, changed)).stdout)
    assert counts["retrain_cell"] == 4 and "train_dense" not in counts and "prune" not in counts
    # adding a temperature continues the dense chain from the last checkpoint: one more segment
    changed = tiny({"temperature": {"values": [1, 2, 3]}, "train": {"epochs": 3}})
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, changed)).stdout)
    assert counts["train_dense"] == 3  # another schedule (3 epochs) is another run: all its segments


@pytest.mark.slow
def test_batch_size_and_sam_studies_end_to_end(tmp_path):
    """A batch-size study (fixed iterations) and a SAM-rho study through the real Snakefile;
    rho = 0 is the SGD run, shared with the epochs study."""
    base = {k: v for k, v in TINY_STUDY.items() if k not in ("temperature", "load")}
    cfg = {"default_studies": ["tiny_batch", "tiny_sam"], "engine": ENGINE, "studies": {
        "tiny_batch": {**base, "temperature": {"axis": "batch_size", "values": [32, 128]},
                       "load": {"axis": "density", "values": [0.2]},
                       "train": {"iterations": 30, "milestones": [20]}},
        "tiny_sam": {**base, "temperature": {"axis": "sam_rho", "values": [0, 0.05]},
                     "load": {"axis": "density", "values": [0.2]}},
    }}
    path = write_config(tmp_path, cfg)
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", path).stdout)
    assert counts["train_dense"] == 2 + 2 * 2 and counts["retrain_cell"] == 4
    smk("-d", str(tmp_path), "--configfile", path, "--cores", "2")
    dense = tmp_path / "results" / "dense"
    runs = sorted(p.name for p in dense.iterdir())
    assert [r.split("-")[0] for r in runs] == ["digits_preresnet8w0.5_sam0.05_bs64_e2",
                                              "digits_preresnet8w0.5_sgd_bs128_it30",
                                              "digits_preresnet8w0.5_sgd_bs32_it30",
                                              "digits_preresnet8w0.5_sgd_bs64_e2"]
    import torch

    for name, bs, steps in (("bs32", 32, 30), ("bs128", 128, 30)):
        ckpt = torch.load(next(dense.glob(f"*_{name}_it30-*")) / "seed1" / "final.pt", weights_only=True)
        # 1,437 digits: floor(1437 / B) steps per epoch, the run stops after exactly 30 steps
        per_epoch = 1437 // bs
        assert len(ckpt["history"]) == -(-steps // per_epoch)
    for study, axis in (("tiny_batch", [32.0, 128.0]), ("tiny_sam", [0.0, 0.05])):
        cells = pd.read_parquet(tmp_path / "results" / "studies" / study / "cells.parquet")
        assert sorted(cells.temperature) == axis and cells.lmc.notna().all()
    # the epochs study of the same settings reuses the SGD run of rho = 0
    counts = job_counts(smk("-n", "-d", str(tmp_path), "--configfile", write_config(tmp_path, TINY)).stdout)
    assert "train_dense" not in counts and counts["prune"] == counts["retrain_cell"] == 4


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
        "npz_missing": (tiny({"data": {"name": "npz", "root": str(npz)}}), "no such .npz file"),
        "npz_keys": (tiny({"data": {"name": "npz", "root": str(npz)}}), "missing arrays"),
        "npz_dtype": (tiny({"data": {"name": "npz", "root": str(npz)}}), "x_train must be uint8 NHWC"),
        "cifar_absent": (tiny({"data": {"name": "cifar10", "root": str(tmp_path)}}), "data.download is false"),
        "batch_too_big": (tiny({"retrain": {"batch_size": 5000}}), "retrain.batch_size of .* = 5000 is larger"),
    }[case]
    r = smk("-d", str(tmp_path), "--configfile", write_config(tmp_path, cfg[0]), "--cores", "1", check=False)
    assert r.returncode != 0
    assert re.search(cfg[1], r.stdout + r.stderr), (r.stdout + r.stderr)[-2000:]
    assert not (tmp_path / "results").exists()  # refused before any job ran


@pytest.mark.parametrize("case", ["duplicate_section", "duplicate_value", "cuda"])
def test_yaml_surprises_and_missing_cuda_are_refused_before_any_job(tmp_path, case):
    cfg = tmp_path / "cfg.yaml"
    if case == "duplicate_section":
        cfg.write_text(yaml.safe_dump(TINY) + "engine: {device: cpu}\n")
        expect = r"cfg.yaml:\d+: key 'engine' is written twice"
    elif case == "duplicate_value":
        cfg.write_text("default_studies: [tiny]\ndefault_studies: [tiny]\n")
        expect = r"cfg.yaml:2: key 'default_studies' is written twice in one section \(also on line 1\)"
    else:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        cfg.write_text(yaml.safe_dump(tiny(engine={"device": "cuda"})))
        expect = "engine.device is cuda, but this machine has no usable CUDA GPU"
    r = smk("-d", str(tmp_path), "--cores", "1", "--configfile", str(cfg), check=False)
    assert r.returncode != 0 and re.search(expect, r.stdout + r.stderr), (r.stdout + r.stderr)[-2000:]
    assert not (tmp_path / "results").exists()
