"""Data sets as uint8 NHWC arrays, kept on the device, with batched on-device augmentation.

A data set (an entry of DATA_SETS) is loaded once into host memory (torchvision for
CIFAR-10/100, SVHN and the `torchvision:<Class>` sets, scikit-learn's bundled `load_digits`
for the offline demo, any `.npz`, or a folder of images in torchvision's ImageFolder layout),
then moved to the training device as uint8 (CIFAR-10 is 150 MB). `data.train_fraction` keeps a
seeded, class-stratified part of the training images. Each training copy draws its data
order, crop offsets and flips from its own torch.Generator, so a seed's stream does not depend
on what else runs in the process.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .atomic import write_atomic
from .spec.common import ConfigError
from .spec.data import (IMAGEFOLDER, IMAGEFOLDER_SIZE, SPLITS, SUBSAMPLE_SEED, TORCHVISION, DataError, DataSpec,
                        channels_first_problem, check_image_folder)

# Normalisation constants used by the reference recipe for CIFAR.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
# SVHN's, as in the paper's code.
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class ArrayDataset:
    x_train: np.ndarray  # uint8 [N, H, W, C]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _check_arrays(x_train, y_train, x_test, y_test, where: str) -> None:
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != np.uint8 or x.ndim != 4:
            raise DataError(f"{where}: {name} must be uint8 NHWC images [N, H, W, C], "
                            f"got dtype {x.dtype} and shape {x.shape}")
        problem = channels_first_problem(name, x.shape, where)
        if problem:
            raise DataError(problem)
    for name, x, y in (("y_train", x_train, y_train), ("y_test", x_test, y_test)):
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {name} must be integer labels [N] with N = {len(x)}, "
                            f"got dtype {y.dtype} and shape {y.shape}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{where}: train and test images differ in shape: {x_train.shape[1:]} vs {x_test.shape[1:]}")
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if len(y) and y.min() < 0:
            raise DataError(f"{where}: {name} has negative labels (min {int(y.min())}); labels must be class "
                            f"indices 0, 1, ..., classes - 1")
    if len(x_train) == 0:
        raise DataError(f"{where}: x_train holds no images")


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    f = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return tuple(f.mean(0).tolist()), tuple(np.maximum(f.std(0), 1e-3).tolist())


def from_arrays(x_train, y_train, x_test, y_test, where="arrays", mean=None, std=None,
                num_classes: int | None = None) -> ArrayDataset:
    """An ArrayDataset of checked arrays; mean/std default to the training set's per channel,
    num_classes to the largest label + 1."""
    _check_arrays(x_train, y_train, x_test, y_test, where)
    if mean is None:
        mean, std = _channel_stats(x_train)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    largest = int(max(y_train.max(), y_test.max()))
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise DataError(f"{where}: label {largest} found, but the data set has {num_classes} classes")
    return ArrayDataset(np.ascontiguousarray(x_train), y_train, np.ascontiguousarray(x_test), y_test,
                        tuple(mean), tuple(std), num_classes)


def load_npz(path: str) -> ArrayDataset:
    if not os.path.exists(path):
        raise DataError(f"data.root: no such .npz file: {path}")
    if os.path.isdir(path):
        raise DataError(f"data.root: {path} is a folder; with data.name: npz, data.root is the .npz file itself")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise DataError(f"data.root: {path} is a single .npy array, not an .npz archive of {list(NPZ_KEYS)}")
        with z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; an .npz data set needs {list(NPZ_KEYS)} "
                                f"(uint8 NHWC images, integer labels)")
            arrays = [z[k] for k in NPZ_KEYS]
    except DataError:
        raise
    except Exception as e:  # a truncated or garbled archive raises BadZipFile, ValueError, EOFError, ...
        raise DataError(f"data.root: {path} is not a readable .npz file ({type(e).__name__}: {e}); "
                        f"write it again with numpy.savez") from None
    return from_arrays(*arrays, where=path)


def load_digits_dataset(test_fraction: float = 0.2) -> ArrayDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped offline), fixed split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # 0..16 -> 0..255
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return from_arrays(x[train], y[train], x[test], y[test], where="digits")


def _torchvision_set(spec: DataSpec, cls, **kw):
    """One split of a torchvision data set under data.root, downloaded only when data.download is true."""
    try:
        return cls(spec.root, download=spec.download, **kw)
    except (RuntimeError, FileNotFoundError) as e:  # USPS opens its file without checking first
        if spec.download:
            raise
        raise DataError(f"{spec.name} not found under data.root = {spec.root!r} ({e}). "
                        f"Set data.download: true (add --configfile presets/download.yaml) to fetch it, "
                        f"or point data.root at an existing copy.") from None


def _load_cifar(spec: DataSpec) -> ArrayDataset:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if spec.name == "cifar10" else torchvision.datasets.CIFAR100
    tr, te = _torchvision_set(spec, cls, train=True), _torchvision_set(spec, cls, train=False)
    return from_arrays(tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets), where=spec.name,
                       mean=CIFAR_MEAN, std=CIFAR_STD, num_classes=len(tr.classes))


def _load_svhn(spec: DataSpec) -> ArrayDataset:
    import torchvision

    tr = _torchvision_set(spec, torchvision.datasets.SVHN, split="train")
    te = _torchvision_set(spec, torchvision.datasets.SVHN, split="test")
    nhwc = lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))  # torchvision keeps SVHN as NCHW
    return from_arrays(nhwc(tr.data), np.asarray(tr.labels), nhwc(te.data), np.asarray(te.labels),
                       where="svhn", mean=SVHN_MEAN, std=SVHN_STD, num_classes=10)


def _torchvision_arrays(ds, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, labels) of a torchvision classification set: its `data` and
    `targets` (a tensor or an array; grayscale sets keep [N, H, W]: one channel is added)."""
    as_array = lambda a: a.numpy() if hasattr(a, "numpy") else np.asarray(a)
    x, y = as_array(ds.data), as_array(ds.targets)
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype != np.uint8:
        raise DataError(f"{where}: torchvision holds its images as {x.dtype}, not uint8 images")
    return np.ascontiguousarray(x), y.astype(np.int64)


def _load_torchvision(spec: DataSpec) -> ArrayDataset:
    """A `torchvision:<Class>` set (spec.data.TORCHVISION_SETS): both splits through the class's
    train flag; mean and std are the training images'."""
    import torchvision

    cls = getattr(torchvision.datasets, spec.name[len(TORCHVISION):])
    tr, te = _torchvision_set(spec, cls, train=True), _torchvision_set(spec, cls, train=False)
    classes = getattr(tr, "classes", None)
    return from_arrays(*_torchvision_arrays(tr, spec.name), *_torchvision_arrays(te, spec.name), where=spec.name,
                       num_classes=len(classes) if classes else None)


# PIL modes without colour: a folder of only these is a 1-channel data set.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _decode(path: str, mode: str, size: int) -> np.ndarray:
    """One image as uint8 [size, size, channels]: converted to `mode` and resized (stretched,
    bilinear) when its size differs."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft(mode, (size, size))  # let libjpeg decode at the smallest scale >= size
            im = im.convert(mode)
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:  # a truncated or unreadable file
        raise DataError(f"data.root: cannot read the image {path} ({type(e).__name__}: {e}); replace or "
                        f"remove it") from None
    return a[..., None] if a.ndim == 2 else a


def _folder_fingerprint(listing, size: int) -> str:
    """12 hex digits of every image's path, class, size in bytes and modification time: a cache
    of the decoded folder is used only while none of them changed."""
    h = hashlib.sha256(f"{size} {listing.classes}".encode())
    for split in SPLITS:
        for rel, c in listing.files[split]:
            st = os.stat(os.path.join(listing.root, rel))
            h.update(f"{split}\0{rel}\0{c}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def load_image_folder(spec: DataSpec, cache: str | None = None) -> ArrayDataset:
    """A folder of images in torchvision's ImageFolder layout (data.root/train/<class>/...,
    data.root/test/<class>/...): classes from train/ in sorted order, every image resized to
    data.image_size square (images of mixed sizes are all resized), 1 channel when every image
    is grayscale, else 3 (RGB; an alpha channel is dropped).

    Decoding costs about 0.5 ms per small PNG and 2 ms per 400x300 JPEG on one core, so with
    `cache` (a folder; the workflow's jobs use results/data) the decoded arrays are written
    there once, named by the folder's fingerprint, and read back by every later job."""
    from PIL import Image

    try:
        listing = check_image_folder(spec.root)
    except ConfigError as e:
        raise DataError(str(e)) from None
    size = spec.image_size or IMAGEFOLDER_SIZE
    where = f"imagefolder {spec.root}"
    cached = None
    if cache:
        name = os.path.basename(os.path.normpath(spec.root))
        cached = os.path.join(cache, f"imagefolder-{name}-{size}px-{_folder_fingerprint(listing, size)}.npz")
        if os.path.exists(cached):
            with np.load(cached) as z:
                return from_arrays(*[z[k] for k in NPZ_KEYS], where=where, num_classes=len(listing.classes))
    paths = {split: [os.path.join(listing.root, p) for p, _ in listing.files[split]] for split in SPLITS}
    modes = set()
    for split in SPLITS:
        for p in paths[split]:
            try:
                with Image.open(p) as im:  # reads the header only
                    modes.add(im.mode)
            except OSError as e:
                raise DataError(f"data.root: cannot read the image {p} ({e}); replace or remove it") from None
    mode = "L" if modes <= GRAY_MODES else "RGB"
    arrays = []
    for split in SPLITS:
        x = np.stack([_decode(p, mode, size) for p in paths[split]])
        arrays += [x, np.array([c for _, c in listing.files[split]], dtype=np.int64)]
    if cached:
        write_atomic(cached, lambda f: np.savez(f, **dict(zip(NPZ_KEYS, arrays))))
    return from_arrays(*arrays, where=where, num_classes=len(listing.classes))


def stratified_sizes(counts: np.ndarray, fraction: float) -> np.ndarray:
    """Training images kept per class by data.train_fraction: round(n * fraction), at least
    one of a class that has any, so every class stays in the data set."""
    kept = np.floor(np.asarray(counts) * fraction + 0.5).astype(np.int64)
    return np.where(np.asarray(counts) > 0, np.maximum(kept, 1), 0)


def subsample(ds: ArrayDataset, fraction: float, seed: int = SUBSAMPLE_SEED) -> ArrayDataset:
    """The data set with `fraction` of its training images, stratified by class (each class
    keeps stratified_sizes of its images, drawn with one generator seeded `seed`, class by
    class), in their original order; the test set, mean, std and classes are unchanged."""
    if fraction == 1:
        return ds
    rng = np.random.default_rng(seed)
    counts = np.bincount(ds.y_train, minlength=ds.num_classes)
    keep = [rng.permutation(np.flatnonzero(ds.y_train == c))[:n]
            for c, n in enumerate(stratified_sizes(counts, fraction))]
    idx = np.sort(np.concatenate(keep))
    return ArrayDataset(np.ascontiguousarray(ds.x_train[idx]), ds.y_train[idx], ds.x_test, ds.y_test, ds.mean,
                        ds.std, ds.num_classes)


def _count_image_folder(spec: DataSpec) -> int:
    try:
        listing = check_image_folder(spec.root)
    except ConfigError as e:
        raise DataError(str(e)) from None
    counts = np.bincount([c for _, c in listing.files["train"]], minlength=len(listing.classes))
    return int(stratified_sizes(counts, spec.train_fraction).sum())


@dataclass(frozen=True)
class DataSet:
    """An entry of DATA_SETS: `load(spec)` gives the arrays; `marker` is the file (under
    data.root) whose presence says the set is there without loading it, `train_images` its
    training-set size (both None for sets that are cheap to load: their size is counted);
    `count(spec)`, where given, counts the training images without loading them."""

    load: Callable[[DataSpec], ArrayDataset]
    description: str
    marker: str | None = None
    train_images: int | None = None
    count: Callable[[DataSpec], int] | None = None


DATA_SETS: dict[str, DataSet] = {
    "cifar10": DataSet(_load_cifar, "CIFAR-10 through torchvision (50,000 + 10,000 32x32 RGB, 10 classes)",
                       "cifar-10-batches-py/data_batch_1", 50000),
    "cifar100": DataSet(_load_cifar, "CIFAR-100 through torchvision (50,000 + 10,000 32x32 RGB, 100 classes)",
                        "cifar-100-python/train", 50000),
    "svhn": DataSet(_load_svhn, "SVHN through torchvision (73,257 + 26,032 32x32 RGB digits, 10 classes)",
                    "train_32x32.mat", 73257),
    "digits": DataSet(lambda spec: load_digits_dataset(), "scikit-learn's bundled 8x8 digits (offline demo)"),
    "npz": DataSet(lambda spec: load_npz(spec.root), "any .npz of x_train, y_train, x_test, y_test (data.root)"),
    IMAGEFOLDER: DataSet(load_image_folder, "a folder of images, data.root/{train,test}/<class>/<image> "
                         "(torchvision's ImageFolder layout), resized to data.image_size", count=_count_image_folder),
}
# The family "torchvision:<Class>" (spec.data.TORCHVISION_SETS): one entry for all its classes.
TORCHVISION_SET = DataSet(_load_torchvision, "a torchvision classification set with a train flag, e.g. "
                          "torchvision:FashionMNIST (data.root, data.download)")


def _entry(name: str) -> DataSet:
    if name.startswith(TORCHVISION):
        return TORCHVISION_SET
    if name not in DATA_SETS:
        raise DataError(f"data.name: unknown data set {name!r}; allowed: {sorted(DATA_SETS)} or "
                        f"'torchvision:<Class>'")
    return DATA_SETS[name]


def load_dataset(spec: DataSpec, cache: str | None = None) -> ArrayDataset:
    """The data set `spec` names, with data.train_fraction of its training images. `cache`: a
    folder where a set that is slow to decode (imagefolder) keeps its decoded arrays."""
    if spec.name == IMAGEFOLDER:
        return subsample(load_image_folder(spec, cache), spec.train_fraction)
    return subsample(_entry(spec.name).load(spec), spec.train_fraction)


class DeviceData:
    """The data set on the training device, with batched augmentation per training copy."""

    def __init__(self, ds: ArrayDataset, device: torch.device, crop_padding: int = 0, hflip: bool = False):
        self.device = device
        self.x_train = torch.from_numpy(ds.x_train).to(device)
        self.y_train = torch.from_numpy(ds.y_train).to(device)
        self.x_test = torch.from_numpy(ds.x_test).to(device)
        self.y_test = torch.from_numpy(ds.y_test).to(device)
        c = ds.image_shape[-1]
        self.mean = torch.tensor(ds.mean, device=device).view(1, 1, 1, c) * 255.0
        self.std = torch.tensor(ds.std, device=device).view(1, 1, 1, c) * 255.0
        self.crop_padding, self.hflip = crop_padding, hflip
        self.num_classes = ds.num_classes
        self.channels = c
        # Zero padding of the raw uint8 image, as torchvision's RandomCrop(padding=p) does
        # before normalisation; done once, so each step is a single gather.
        p = crop_padding
        self._padded = (torch.nn.functional.pad(self.x_train.permute(0, 3, 1, 2), (p, p, p, p))
                        .permute(0, 2, 3, 1).contiguous() if p else self.x_train)

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    def epoch_plan(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One copy's epoch: a permutation, crop offsets and flips, all drawn from its generator."""
        n, dev = self.n_train, self.device
        plan = {"order": torch.randperm(n, generator=generator, device=dev)}
        if self.crop_padding:
            plan["offset"] = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator, device=dev)
        if self.hflip:
            plan["flip"] = torch.randint(0, 2, (n,), generator=generator, device=dev, dtype=torch.bool)
        return plan

    def augmented(self, plan: dict[str, torch.Tensor], start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [..., b, H, W, C] (uint8) and labels [..., b] at positions start:stop of a plan.

        Plans may carry leading dimensions (one per training copy): crop and flip of all
        copies are then one gather.
        """
        idx = plan["order"][..., start:stop]
        if not self.crop_padding and not self.hflip:
            return self.x_train[idx], self.y_train[idx]
        h, w = self.x_train.shape[1:3]
        rows = torch.arange(h, device=self.device)
        cols = torch.arange(w, device=self.device)
        off = plan["offset"][..., start:stop, :] if self.crop_padding else torch.zeros(
            (*idx.shape, 2), dtype=torch.long, device=self.device)
        rows = off[..., 0:1] + rows                           # [..., b, h]
        cols = off[..., 1:2] + cols                           # [..., b, w]
        if self.hflip:
            cols = torch.where(plan["flip"][..., start:stop, None], cols.flip(-1), cols)
        imgs = self._padded[idx[..., None, None], rows[..., :, None], cols[..., None, :]]
        return imgs, self.y_train[idx]

    def normalize(self, imgs: torch.Tensor) -> torch.Tensor:
        """uint8 [..., B, H, W, C] -> float [..., B, C, H, W], normalised."""
        x = (imgs.float() - self.mean) / self.std
        return x.movedim(-1, -3)


def training_set_size(spec: DataSpec) -> int:
    """Check that a data set can be loaded (without loading a large one) and return the
    number of training images (with data.train_fraction; about that many for the large
    torchvision sets, counted without their labels); raise DataError naming the key and the
    fix otherwise."""
    entry = _entry(spec.name)
    if entry.count is not None:
        return entry.count(spec)
    if entry.marker is None:
        return len(load_dataset(spec).x_train)
    if not spec.download and not os.path.exists(os.path.join(spec.root, entry.marker)):
        raise DataError(f"{spec.name} is not under data.root = {spec.root!r} (looked for {entry.marker}) and "
                        f"data.download is false. Set data.download: true (add --configfile presets/download.yaml) "
                        f"or point data.root at an existing copy.")
    return int(stratified_sizes(np.array([entry.train_images]), spec.train_fraction)[0])
