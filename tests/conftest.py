import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CIFAR_MINI = ROOT.parent / "shared" / "data" / "cifar10_mini.npz"

# One thread by default: the suite's own processes share 2 cores with the Snakemake jobs it starts.
# THREEREGIME_TEST_THREADS=N runs the float-comparing tests on another code path (tests/code_paths.sh):
# a reduction split over N threads sums in another order.
torch.set_num_threads(int(os.environ.get("THREEREGIME_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def cifar_small():
    """Real CIFAR-10 images when the shared mini set exists, else the digits data."""
    from threeregime.data import from_arrays, load_digits_dataset

    if CIFAR_MINI.exists():
        with np.load(CIFAR_MINI) as z:
            return from_arrays(z["x_train"][:640], z["y_train"][:640], z["x_test"][:200], z["y_test"][:200])
    ds = load_digits_dataset()
    return from_arrays(ds.x_train[:640], ds.y_train[:640], ds.x_test[:200], ds.y_test[:200])


def snakemake_bin() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else "snakemake"



@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory):
    """tests/test_workflow.py's tiny study run once through the real Snakefile, shared by the
    tests that need finished results (the end-to-end checks, results schema, README commands,
    report, progress). (folder, config path); tests must not change the folder: copy it first."""
    from test_workflow import TINY, smk, write_config

    folder = tmp_path_factory.mktemp("tiny_grid")
    (folder / "config").mkdir()
    cfg = write_config(folder / "config", TINY)
    smk("-d", str(folder), "--configfile", cfg, "--cores", "2")
    return folder, cfg


# Every Snakemake process imports every installed executor plugin, and the slurm plugin (2.8.0),
# to word the help text of its --slurm-status-command, runs `scontrol show config` at import, even
# for a local run. Where Slurm is installed but no controller answers (a machine that ran
# tests/test_slurm.py before, a login node's client without its cluster) that call waits about 9 s
# and then fails: the plugin words its help as without Slurm. The suite starts dozens of Snakemake
# processes (every real run, the dry-run worker), so the tests that do not use Slurm find, first on
# PATH, an `scontrol` that fails at once: the plugin gets the answer it would get after the wait
# (no MinJobAge, help as without Slurm), and no local run reads it. The `slurm`-marked test gets
# the real PATH (hooks below); users' runs are untouched.
REAL_PATH = os.environ.get("PATH", "")
if shutil.which("scontrol"):
    _no_controller = Path(tempfile.mkdtemp(prefix="threeregime-tests-no-scontrol-"))
    (_no_controller / "scontrol").write_text(
        "#!/bin/sh\necho 'scontrol: no Slurm controller for the test suite (tests/conftest.py)' >&2\nexit 1\n")
    (_no_controller / "scontrol").chmod(0o755)
    atexit.register(shutil.rmtree, _no_controller, ignore_errors=True)
    os.environ["PATH"] = f"{_no_controller}{os.pathsep}{REAL_PATH}"


SUITE_PATH = os.environ["PATH"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A `slurm` test gets the real PATH before its fixtures (the cluster's start and stop) are set up."""
    if item.get_closest_marker("slurm") is not None:
        os.environ["PATH"] = REAL_PATH


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """... and keeps it until they are torn down."""
    os.environ["PATH"] = SUITE_PATH


def pytest_collection_modifyitems(config, items):
    """The real Slurm test runs last: it installs Slurm where it is missing, and stops its cluster
    at the end, so that the Snakemake processes of later tests would meet an `scontrol` with no
    controller (see the PATH note above)."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # stable: order kept otherwise
