"""A data set: what it is (DataIdentity, part of artifact keys) and where it lives (DataSpec)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass



class DataError(RuntimeError):
    """A data set is missing or malformed; the message says how to fix it."""


def channels_first(shape) -> bool:
    """Whether a 4-d image array's shape looks channels-first [N, C, H, W] (C of 1, 3 or 4 in
    second place, an image side last) rather than the channels-last [N, H, W, C] jobs train on."""
    return len(shape) == 4 and shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4)


def channels_first_problem(name: str, shape, where: str) -> str | None:
    """The refusal of images stored channels-first (read as channels-last they would train on
    scrambled pixels, without any error), or None."""
    if not channels_first(shape):
        return None
    return (f"{where}: {name} has shape {tuple(shape)}, which looks channels-first [N, C, H, W]; images must be "
            f"stored channels-last [N, H, W, C]: save {name}.transpose(0, 2, 3, 1) instead")


@dataclass(frozen=True)
class DataSpec:
    """A data set and where it lives: what the jobs load."""

    name: str = "cifar10"          # a key of threeregime.data.DATA_SETS (the schema lists them)
    root: str = "data"             # torchvision root, or the .npz file for name == npz
    download: bool = False
    crop_padding: int = 4          # RandomCrop(size, padding=crop_padding); 0 disables
    hflip: bool = True

    @property
    def identity(self) -> "DataIdentity":
        """What the data set is, without where it lives (the part of a dense run's key)."""
        return DataIdentity(self.name, self.crop_padding, self.hflip,
                            os.path.basename(str(self.root)) if self.name == "npz" else "")


@dataclass(frozen=True)
class DataIdentity:
    """What a data set is (not where it lives): the name and the training augmentation."""

    name: str = "cifar10"
    crop_padding: int = 4
    hflip: bool = True
    file: str = ""  # for name == npz: the file's name (its folder is where it lives, not what it is)

    def key(self) -> str:
        """Part of a dense run's key; never contains '_' (DenseRun.data_key_of relies on it)."""
        return self.name if self.name != "npz" else f"npz-{re.sub(r'[^A-Za-z0-9]+', '-', self.file)}"
