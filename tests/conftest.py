import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CIFAR_MINI = ROOT.parent / "shared" / "data" / "cifar10_mini.npz"

torch.set_num_threads(1)


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

