"""A data set: what it is (DataIdentity, part of artifact keys) and where it lives (DataSpec).

Besides the built-in sets (threeregime.data.DATA_SETS), two forms name a user's data:
  imagefolder           data.root is a folder with one folder per split (train/, test/) and,
                        in each, one folder per class (torchvision's ImageFolder layout);
                        every image is resized to data.image_size x data.image_size
  torchvision:<Class>   one of torchvision's classification sets with a `train` flag
                        (TORCHVISION_SETS), under data.root, fetched only with data.download
`data.train_fraction` keeps a seeded, class-stratified part of the training images (a load:
the amount of data). `check_image_folder` checks a folder's layout by listing it (no image is
decoded), so a bad folder is refused while planning.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from .common import ConfigError, fields_without_late_defaults, fmt


class DataError(RuntimeError):
    """A data set is missing or malformed; the message says how to fix it."""


TORCHVISION = "torchvision:"
# torchvision's classification sets whose constructor takes `train=` (the split), checked
# against torchvision itself in tests/test_data_sets.py.
TORCHVISION_SETS = ("MNIST", "FashionMNIST", "KMNIST", "USPS", "CIFAR10", "CIFAR100")
IMAGEFOLDER = "imagefolder"
IMAGEFOLDER_SIZE = 32  # data.image_size of an imagefolder set when the config gives none
SPLITS = ("train", "test")
# The file endings torchvision's ImageFolder reads; other files (README, .DS_Store) are skipped.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SUBSAMPLE_SEED = 0  # the training images data.train_fraction keeps: the same for every run


def _check_identity(name: str, image_size: int, train_fraction: float) -> None:
    if name.startswith(TORCHVISION) and name[len(TORCHVISION):] not in TORCHVISION_SETS:
        raise ConfigError(f"data.name: {name!r} is not a torchvision classification set with a train split; "
                          f"allowed: {[TORCHVISION + n for n in TORCHVISION_SETS]}")
    if not 0 < train_fraction <= 1:  # also refuses NaN
        raise ConfigError(f"data.train_fraction must be in (0, 1] (the part of the training images kept), "
                          f"got {train_fraction}")
    if image_size < 0 or (image_size and name != IMAGEFOLDER):
        raise ConfigError(f"data.image_size is the size imagefolder images are resized to (a whole number "
                          f">= 1); data set {name!r} keeps its images' size: remove data.image_size, "
                          f"got {image_size}")
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

    name: str = "cifar10"          # a key of threeregime.data.DATA_SETS, or "torchvision:<Class>"
    root: str = "data"             # torchvision root, the .npz file (npz), or the split folders' folder (imagefolder)
    download: bool = False
    crop_padding: int = 4          # RandomCrop(size, padding=crop_padding); 0 disables
    hflip: bool = True
    image_size: int = 0            # imagefolder: images are resized to image_size x image_size
    train_fraction: float = 1.0    # the part of the training set kept (seeded, stratified by class)

    def __post_init__(self):
        if self.name == IMAGEFOLDER and not self.image_size:
            object.__setattr__(self, "image_size", IMAGEFOLDER_SIZE)
        _check_identity(self.name, self.image_size, self.train_fraction)

    @property
    def identity(self) -> "DataIdentity":
        """What the data set is, without where it lives (the part of a dense run's key)."""
        local = self.name in ("npz", IMAGEFOLDER)
        return DataIdentity(self.name, self.crop_padding, self.hflip,
                            os.path.basename(os.path.normpath(str(self.root))) if local else "",
                            self.image_size, self.train_fraction)

    def located(self, identity: "DataIdentity") -> "DataSpec":
        """The data set `identity` where this one lives (root, download): what a cell whose
        axis changes the data (data.train_fraction) loads."""
        return replace(self, name=identity.name, crop_padding=identity.crop_padding, hflip=identity.hflip,
                       image_size=identity.image_size, train_fraction=identity.train_fraction)


# Identity fields that are left out of as_dict (so of run keys) at their default: the runs
# made before they existed keep their keys.
_OMITTED_AT_DEFAULT = ("image_size", "train_fraction")


@dataclass(frozen=True)
class DataIdentity:
    """What a data set is (not where it lives): the name, the training augmentation, the image
    size (imagefolder) and the part of the training set kept."""

    name: str = "cifar10"
    crop_padding: int = 4
    hflip: bool = True
    file: str = ""  # npz, imagefolder: the file's (folder's) name; the folder it is in is where it lives
    image_size: int = 0
    train_fraction: float = 1.0

    def __post_init__(self):
        _check_identity(self.name, self.image_size, self.train_fraction)

    def as_dict(self) -> dict:
        return fields_without_late_defaults(self, _OMITTED_AT_DEFAULT)

    def key(self) -> str:
        """Part of a dense run's key; never contains '_' (DenseRun.data_key_of relies on it)."""
        if self.name == "npz":
            key = f"npz-{_safe(self.file)}"
        elif self.name == IMAGEFOLDER:
            key = f"imagefolder-{_safe(self.file)}-{self.image_size}px"
        elif self.name.startswith(TORCHVISION):
            key = f"torchvision-{self.name[len(TORCHVISION):]}"
        else:
            key = self.name
        return key if self.train_fraction == 1 else f"{key}-f{fmt(self.train_fraction)}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text)


# --- imagefolder: the layout, checked by listing (planning decodes no image) -----------------------

@dataclass(frozen=True)
class FolderListing:
    """The image files of an ImageFolder-layout folder: classes (sorted, from train/) and, per
    split, (relative path, class index) pairs in torchvision's order (class, then path)."""

    root: str
    classes: tuple[str, ...]
    files: dict = field(default_factory=dict)  # split -> tuple[(path relative to root, class index), ...]


def _images_under(folder: str) -> list[str]:
    """The image files under a class folder, recursively (as ImageFolder walks it), sorted."""
    out = []
    for here, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        out += [os.path.join(here, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(out)


def _signature(root: str) -> tuple:
    """The modification times of the folders that make a listing: a changed folder is listed again."""
    sig = []
    for d in [root] + [os.path.join(root, s) for s in SPLITS]:
        if os.path.isdir(d):
            sig.append((d, os.stat(d).st_mtime_ns))
            sig += [(e.path, e.stat().st_mtime_ns) for e in sorted(os.scandir(d), key=lambda e: e.name)
                    if d != root and e.is_dir()]
    return tuple(sig)


def check_image_folder(root: str, key: str = "data.root") -> FolderListing:
    """The listing of an ImageFolder-layout folder, or a ConfigError naming `key`, what is wrong
    and the fix: no such folder, a split missing, fewer than two classes, an empty class
    folder, test classes that differ from the training classes."""
    layout = (f"data.name: imagefolder reads {root}/train/<class>/<image> and {root}/test/<class>/<image> "
              f"(torchvision's ImageFolder layout, one folder per class)")
    if not os.path.isdir(root):
        what = "is a file, not a folder" if os.path.exists(root) else "does not exist"
        raise ConfigError(f"{key}: {root!r} {what}; {layout}: point {key} at that folder")
    try:
        return _listing(os.path.abspath(root), _signature(os.path.abspath(root)))
    except _LayoutError as e:
        raise ConfigError(f"{key}: {str(e).replace('{layout}', layout)}") from None


class _LayoutError(ValueError):
    """What is wrong with a folder's layout, without the config key (added by check_image_folder)."""


@lru_cache(maxsize=32)  # a folder is listed once per planning, however many studies read it
def _listing(root: str, signature: tuple) -> FolderListing:
    classes_of = {}
    for split in SPLITS:
        d = os.path.join(root, split)
        if not os.path.isdir(d):
            why = " (the held-out images every error and the LMC are measured on)" if split == "test" else ""
            raise _LayoutError(f"{root!r} has no {split}/ folder{why}; {{layout}}. Add {split}/ with one "
                               f"folder per class")
        classes_of[split] = sorted(e.name for e in os.scandir(d) if e.is_dir())
    classes = classes_of["train"]
    if len(classes) < 2:
        raise _LayoutError(f"{root}/train has {len(classes)} class folder(s) {classes}; a classification "
                           f"data set needs at least 2 (one folder per class: {{layout}})")
    if classes_of["test"] != classes:
        only_train = sorted(set(classes) - set(classes_of["test"]))
        only_test = sorted(set(classes_of["test"]) - set(classes))
        raise _LayoutError(f"the test classes must be the training classes (the class list is taken from "
                           f"train/); only in train/: {only_train}, only in test/: {only_test}. Give both splits "
                           f"the same class folders")
    files = {}
    for split in SPLITS:
        pairs = []
        for i, c in enumerate(classes):
            found = _images_under(os.path.join(root, split, c))
            if not found:
                raise _LayoutError(f"the class folder {root}/{split}/{c} holds no image (files ending "
                                   f"{', '.join(IMAGE_EXTENSIONS)}); add its images or remove the class from "
                                   f"both splits")
            pairs += [(os.path.relpath(p, root), i) for p in found]
        files[split] = tuple(pairs)
    return FolderListing(root, tuple(classes), files)
