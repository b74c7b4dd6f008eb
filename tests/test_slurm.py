"""The Slurm profile (profiles/slurm), checked statically and against a real Slurm cluster.

The static tests parse the profiles and dry-run the workflow with them (seconds, no Slurm).
The `slurm`-marked test starts a single-node Slurm cluster with accounting on this machine
(ci/slurm_cluster.sh: slurmctld, slurmd with fake GPUs, slurmdbd + MariaDB; installs the
Debian packages when missing), runs a tiny demo through `snakemake --profile
profiles/slurm`, and checks with sacct that every job ran in Slurm, that the GPU rules
asked for one GPU and the CPU rules for none, and that the grouping worked.  It needs root
and apt (or Slurm installed); it takes about 3-4 minutes.  Skip it with
THREEREGIME_SKIP_SLURM=1 or `-m "not slurm"`.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "ci" / "slurm_cluster.sh"
GPU_RULES = ("train_dense", "retrain_cell", "landscape_metrics")
CPU_RULES = ("prune", "study_table", "phase_diagram", "paper_figure")

# A tiny study: 1 dense seed trained 2 epochs (one segment), one temperature x two densities,
# two retrain seeds -> 1 train_dense, 2 prune (one Slurm job), 2 retrain_cell, 2
# landscape_metrics (one Slurm job), and the study_table/phase_diagram chain (one Slurm job).
TINY_OVERRIDE = {
    "default_studies": ["slurmtest"],
    "studies": {"slurmtest": {
        "temperature": {"axis": "epochs", "values": [2]},
        "load": {"axis": "density", "values": [0.1, 0.5]},
        "data": {"name": "digits", "root": "", "download": False, "crop_padding": 1, "hflip": False},
        "model": {"depth": 8, "width": 1},
        "train": {"epochs": 2, "milestones": [1], "checkpoint_every": 2},
        "retrain": {"epochs": 2, "milestones": [1]},
        "seeds": {"dense": [1], "retrain": [1, 2]},
        "landscape": {"points": 3, "cka_samples": 300},
    }},
    "engine": {"dense_threads": 2},  # the CI node has 2 CPUs; sbatch --cpus-per-task follows threads
}


def _parse_profile(name, env=None, monkeypatch=None):
    from snakemake.profiles import ProfileConfigFileParser

    if env and monkeypatch:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    with open(ROOT / "profiles" / name / "config.yaml") as f:
        return ProfileConfigFileParser().parse(f)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SNAKEMAKE_PROFILE", "THREEREGIME_SLURM_"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def _snakemake():
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else "snakemake"


# ----------------------------------------------------------------------------- static

def test_slurm_profile_defaults(monkeypatch):
    for var in ("THREEREGIME_SLURM_PARTITION", "THREEREGIME_SLURM_GPU_PARTITION",
                "THREEREGIME_SLURM_ACCOUNT", "THREEREGIME_SLURM_GPU_MODEL"):
        monkeypatch.delenv(var, raising=False)
    p = _parse_profile("slurm")
    assert p["executor"] == "slurm"
    assert int(p["jobs"]) >= 10
    assert int(p["retries"]) >= 1
    assert p["rerun-incomplete"] == "True"
    defaults = dict(kv.split("=", 1) for kv in p["default-resources"])
    assert "runtime" in defaults and "mem_mb" in defaults
    assert "slurm_partition" not in defaults and "slurm_account" not in defaults
    set_res = {}
    for item in p["set-resources"]:
        rule_res, value = item.split("=", 1)
        rule, res = rule_res.split(":")
        set_res.setdefault(rule, {})[res] = value
    # one GPU for exactly the GPU rules; runtime left to the rules (it scales with epochs)
    assert {r for r, res in set_res.items() if res.get("gpu") == "1"} == set(GPU_RULES)
    assert not any("runtime" in res for res in set_res.values())
    assert not set(CPU_RULES) & {r for r, res in set_res.items() if "gpu" in res or "gres" in res}
    groups = dict(kv.split("=") for kv in p["groups"])
    assert groups["prune"] != groups["landscape_metrics"]
    components = dict(kv.split("=") for kv in p["group-components"])
    assert int(components[groups["prune"]]) > 1 and int(components[groups["landscape_metrics"]]) > 1
    # per submitted job at most one GPU: grouped GPU jobs run one after another
    assert p["resources"] == ["gpu=1"] and p["set-resource-scopes"] == ["gpu=local"]


def test_slurm_profile_site_settings_from_environment(monkeypatch):
    p = _parse_profile("slurm", {"THREEREGIME_SLURM_PARTITION": "batch", "THREEREGIME_SLURM_ACCOUNT": "proj42",
                                 "THREEREGIME_SLURM_GPU_PARTITION": "gpu", "THREEREGIME_SLURM_GPU_MODEL": "a100"},
                       monkeypatch)
    assert "slurm_partition='batch'" in p["default-resources"]
    assert "slurm_account='proj42'" in p["default-resources"]
    for rule in GPU_RULES:
        assert f"{rule}:gpu_model='a100'" in p["set-resources"]
        assert f"{rule}:slurm_partition='gpu'" in p["set-resources"]
    assert not any(s.startswith("prune:") for s in p["set-resources"])


def test_profile_slurm_by_name_from_repo_root(monkeypatch):
    """`snakemake --profile slurm` in the repo root finds profiles/slurm (via ./slurm)."""
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(ROOT)
    found = get_profile_dir("slurm")
    assert found is not None
    assert found[1].resolve() == (ROOT / "profiles" / "slurm" / "config.yaml").resolve()


def test_local_and_cpu_profiles(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    p = _parse_profile("local", {"THREEREGIME_GPUS": "3"}, monkeypatch)
    assert p["resources"] == ["gpu=3"]
    assert sorted(s.split(":")[0] for s in p["set-resources"]) == sorted(GPU_RULES)
    assert p["rerun-incomplete"] == "True" and p["keep-going"] == "True"
    monkeypatch.delenv("THREEREGIME_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert _parse_profile("local")["resources"] == ["gpu=2"]
    c = _parse_profile("cpu")
    assert "executor" not in c and "resources" not in c and c["cores"] == "all"


@pytest.mark.parametrize("profile", ["slurm", "local", "cpu"])
def test_workflow_dry_run_with_profile(profile, tmp_path):
    if not (ROOT / "presets" / "demo.yaml").exists():
        pytest.skip("presets/demo.yaml not there yet")
    r = subprocess.run([_snakemake(), "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles" / profile),
                        "-n", "--configfile", str(ROOT / "presets" / "demo.yaml")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_clean_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


# ------------------------------------------------------------------------ real cluster

def _cluster_skip_reason():
    if os.environ.get("THREEREGIME_SKIP_SLURM") == "1":
        return "THREEREGIME_SKIP_SLURM=1"
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root: starts munged, MariaDB, slurmdbd, slurmctld and slurmd"
    have_slurm = all(shutil.which(x) for x in ("slurmctld", "slurmd", "slurmdbd", "sbatch", "munged", "mariadbd"))
    if not have_slurm and not shutil.which("apt-get"):
        return "Slurm is not installed and apt-get is not available to install it"
    if not shutil.which("timeout"):
        return "coreutils `timeout` missing"
    if not (ROOT / "presets" / "demo.yaml").exists():
        return "presets/demo.yaml not there yet"
    return None


def _cluster(cmd, timeout=600):
    return subprocess.run(["timeout", "-k", "10", str(timeout), "bash", str(SCRIPT), cmd],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    was_running = _cluster("status", 60).returncode == 0
    t0 = time.monotonic()
    r = _cluster("start")
    if r.returncode != 0:
        _cluster("stop", 120)
        pytest.fail(f"ci/slurm_cluster.sh start failed (rc {r.returncode}):\n{r.stdout}\n{r.stderr[-5000:]}")
    print(f"slurm cluster start: {time.monotonic() - t0:.1f}s; {r.stderr.strip().splitlines()[-1]}")
    yield
    if not was_running:  # leave a cluster that someone else started running
        s = _cluster("stop", 120)
        print(s.stderr)


def _sacct(prefix, since):
    fields = "JobID,JobName,Comment,State,Account,Partition,Timelimit,ReqTRES,AllocTRES"
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "-o", fields],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        jobid, name, comment, state, account, partition, timelimit, req, alloc = line.split("|")
        if name.startswith(prefix + "_"):
            rows.append(dict(jobid=jobid, comment=comment, state=state, account=account, partition=partition,
                             timelimit=timelimit, req=req, alloc=alloc))
    return rows


@pytest.mark.slurm
def test_demo_through_slurm(slurm_cluster, tmp_path):
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(TINY_OVERRIDE))
    prefix = f"threeregimetest{os.getpid()}"
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    cmd = [
        "timeout", "-k", "15", "420",  # the plugin ignores SIGTERM while polling: -k
        _snakemake(), "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles" / "slurm"),
        "--configfile", "override.yaml",
        "--retries", "0",                                # fail fast in the test
        "--slurm-init-seconds-before-status-checks", "2",  # poll fast (default 40 s)
        "--slurm-jobname-prefix", prefix,
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                       env=_clean_env(THREEREGIME_SLURM_ACCOUNT="ci", THREEREGIME_SLURM_PARTITION="debug"))
    wall = time.monotonic() - t0
    print(f"snakemake --profile profiles/slurm: rc {r.returncode} in {wall:.0f}s")
    if r.returncode != 0:
        slurm_logs = sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))  # kept for failed jobs
        details = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in slurm_logs)
        pytest.fail(f"snakemake rc {r.returncode} after {wall:.0f}s\n{r.stdout[-2000:]}\n{r.stderr[-10000:]}\n{details}")
    assert (tmp_path / "results" / "studies" / "slurmtest" / "phase.pdf").stat().st_size > 0
    assert "has been submitted with SLURM jobid" in r.stderr

    rows = _sacct(prefix, since)
    table = "\n".join(f"{j['jobid']} {j['comment']} {j['state']} {j['account']} {j['partition']} {j['timelimit']} "
                      f"{j['alloc']}" for j in rows)
    print(table)
    by_kind = {}
    for j in rows:
        assert j["state"] == "COMPLETED", table
        assert j["account"] == "ci" and j["partition"] == "debug", table  # from THREEREGIME_SLURM_*
        comment = j["comment"]
        kind = next(k for k in ("train_dense", "retrain_cell", "landscape_batch", "prune_batch", "summary")
                    if comment.startswith(f"rule_{k}"))
        by_kind.setdefault(kind, []).append(j)
    # 6 rule jobs of the DAG's 9 went out as 3 group jobs
    assert {k: len(v) for k, v in by_kind.items()} == {
        "train_dense": 1, "prune_batch": 1, "retrain_cell": 2, "landscape_batch": 1, "summary": 1}, table
    for kind in ("train_dense", "retrain_cell", "landscape_batch"):  # GPU rules: one GPU each
        for j in by_kind[kind]:
            assert "gres/gpu=1" in j["req"] and "gres/gpu=1" in j["alloc"], table
    for kind in ("prune_batch", "summary"):  # CPU rules: no GPU
        for j in by_kind[kind]:
            assert "gres/gpu" not in j["req"] and "gres/gpu" not in j["alloc"], table
    # runtimes: the training rules' own (scaled with epochs), not the profile default
    profile_default = next(kv for kv in _parse_profile("slurm")["default-resources"] if kv.startswith("runtime="))
    default_limit = int(profile_default.split("=")[1])
    assert by_kind["prune_batch"][0]["timelimit"] == f"{default_limit // 60:02d}:{default_limit % 60:02d}:00"
    assert by_kind["train_dense"][0]["timelimit"] != by_kind["prune_batch"][0]["timelimit"], table

    # inside the GPU jobs Slurm set CUDA_VISIBLE_DEVICES and select_device() respected it
    logs = tmp_path / "results" / "logs"
    for sub in ("train_dense", "retrain", "landscape"):
        texts = [p.read_text() for p in (logs / sub).rglob("*.log")]
        assert texts and all("(preset, e.g. by Slurm)" in t for t in texts), (sub, texts)
