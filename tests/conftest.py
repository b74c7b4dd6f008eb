import os
import sys
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


def pytest_collection_modifyitems(config, items):
    """The real Slurm test runs last. Once it has installed Slurm, `scontrol` exists but no
    controller answers after the test stops it, and the slurm executor plugin's import (in every
    Snakemake process) waits 9 s for `scontrol show config`: after it, each Snakemake call of the
    other tests would pay that."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # stable: order kept otherwise
