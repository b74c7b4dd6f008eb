"""CIFAR-10, CIFAR-100, SVHN and the MNIST family through the real torchvision loading path,
offline: a few images are written in each set's on-disk format (CIFAR's python pickles, SVHN's
.mat, MNIST's idx files) and read back through threeregime.data; image folders written as
PNGs; data.train_fraction's subset. torchvision checks each file's MD5 against the published
one; the test registers the MD5 of the files it wrote, so that check runs as well."""

import hashlib
import pickle

import numpy as np
import pytest
import torchvision
from PIL import Image

from threeregime.data import (CIFAR_MEAN, CIFAR_STD, DATA_SETS, SVHN_MEAN, SVHN_STD, from_arrays, load_dataset,
                              stratified_sizes, subsample, training_set_size)
from threeregime.spec.common import ConfigError
from threeregime.spec.data import TORCHVISION_SETS, DataError, DataSpec, check_image_folder


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _images(rng, n):
    """n random images as CIFAR's pickles store them: [n, 3*32*32] uint8, channel-major rows."""
    return rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)


def _as_nhwc(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar(root, monkeypatch, name: str, rng):
    """Train and test pickles plus the meta file, as in the official archives; returns the
    (images, labels) written for train and test."""
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    classes, label_key = (10, "labels") if name == "cifar10" else (100, "fine_labels")
    written = {}
    lists = {}
    for split, files in (("train", cls.train_list), ("test", cls.test_list)):
        per_file = []
        entries = []
        for i, (fname, _) in enumerate(files):
            x, y = _images(rng, 3 + i), rng.integers(0, classes, 3 + i).tolist()
            entry = {"data": x, label_key: y}
            if name == "cifar100":
                entry["coarse_labels"] = [v // 5 for v in y]
            (folder / fname).write_bytes(pickle.dumps(entry))
            per_file.append((x, y))
            entries.append([fname, _md5(folder / fname)])
        written[split] = (np.concatenate([x for x, _ in per_file]), np.concatenate([y for _, y in per_file]))
        lists[split] = entries
    meta = {cls.meta["key"]: [f"class{c}" for c in range(classes)]}
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps(meta))
    monkeypatch.setattr(cls, "train_list", lists["train"])
    monkeypatch.setattr(cls, "test_list", lists["test"])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})
    return written


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles_load_through_torchvision(tmp_path, monkeypatch, name, classes):
    written = write_cifar(tmp_path, monkeypatch, name, np.random.default_rng(0))
    ds = load_dataset(DataSpec(name, str(tmp_path)))
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        rows, labels = written[split]
        assert x.dtype == np.uint8 and x.shape == (len(rows), 32, 32, 3)
        assert np.array_equal(x, _as_nhwc(rows)) and np.array_equal(y, labels)
    assert ds.num_classes == classes  # from the class names, even when few labels occur
    assert ds.mean == CIFAR_MEAN and ds.std == CIFAR_STD
    assert training_set_size(DataSpec(name, str(tmp_path))) == 50000


def test_svhn_mat_loads_through_torchvision(tmp_path, monkeypatch):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    cls = torchvision.datasets.SVHN
    split_list = {}
    written = {}
    for split, n in (("train", 5), ("test", 4)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)       # SVHN's .mat: H, W, C, N
        y = np.array([10, 1, 9, 3, 10][:n], dtype=np.uint8)[:, None]   # digit 0 is stored as 10
        fname = cls.split_list[split][1]
        savemat(tmp_path / fname, {"X": x, "y": y})
        split_list[split] = [cls.split_list[split][0], fname, _md5(tmp_path / fname)]
        written[split] = (x.transpose(3, 0, 1, 2), y[:, 0] % 10)
    monkeypatch.setattr(cls, "split_list", {**cls.split_list, **split_list})
    ds = load_dataset(DataSpec("svhn", str(tmp_path)))
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        assert np.array_equal(x, written[split][0]) and np.array_equal(y, written[split][1])
    assert ds.y_train.tolist() == [0, 1, 9, 3, 0]
    assert ds.mean == SVHN_MEAN and ds.std == SVHN_STD and ds.num_classes == 10
    assert training_set_size(DataSpec("svhn", str(tmp_path))) == 73257


@pytest.mark.parametrize("name", ["cifar100", "svhn"])
def test_absent_sets_say_how_to_fix_without_downloading(tmp_path, name):
    with pytest.raises(DataError, match="data.download"):
        load_dataset(DataSpec(name, str(tmp_path)))
    with pytest.raises(DataError, match=f"{name} is not under data.root .* data.download is false"):
        training_set_size(DataSpec(name, str(tmp_path)))


def test_registry_names_match_the_config_schema(repo_root):
    import yaml

    schema = yaml.safe_load((repo_root / "schemas" / "config.schema.yaml").read_text())
    from threeregime.spec.task import TASKS

    # the pattern's alternatives: the registry's image sets, the torchvision:<Class> family and
    # the other tasks' data names (translation corpora)
    alternatives = schema["$defs"]["data"]["properties"]["name"]["pattern"].strip("^()$").split("|")
    family = "torchvision:[A-Za-z][A-Za-z0-9]*"
    others = {name for task in TASKS.values() for name in task.data_names}
    assert family in alternatives and others and others <= set(alternatives)
    assert sorted(a for a in alternatives if a != family and a not in others) == sorted(DATA_SETS)
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        load_dataset(DataSpec("imagenet"))


# --- torchvision:<Class> ---------------------------------------------------------------------------

def test_the_torchvision_sets_named_take_a_train_flag():
    """spec.data.TORCHVISION_SETS is written out (planning imports no torchvision): each one
    exists in the pinned torchvision and its constructor takes train= and download=."""
    import inspect

    for name in TORCHVISION_SETS:
        params = inspect.signature(getattr(torchvision.datasets, name).__init__).parameters
        assert "train" in params and "download" in params, name
    with pytest.raises(ConfigError, match="'torchvision:SVHN' is not a torchvision classification set with a train "
                                          "split; allowed: .*'torchvision:FashionMNIST'"):
        DataSpec("torchvision:SVHN")


def _write_idx(path, array: np.ndarray):
    """An idx file as MNIST's raw files are: magic (0, 0, uint8 = 0x08, rank), big-endian dims, data."""
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
                     + array.astype(np.uint8).tobytes())


def write_mnist_raw(root, name: str, rng, n_train=7, n_test=4):
    """The four raw idx files of an MNIST-family set, where torchvision reads them
    (root/<Class>/raw/); returns the images and labels written per split."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        written[split] = (x, y)
    return written


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST", "KMNIST"])
def test_mnist_family_idx_files_load_as_one_channel(tmp_path, name):
    written = write_mnist_raw(tmp_path, name, np.random.default_rng(3))
    spec = DataSpec(f"torchvision:{name}", str(tmp_path), crop_padding=0, hflip=False)
    ds = load_dataset(spec)
    for x, y, (wx, wy) in ((ds.x_train, ds.y_train, written["train"]), (ds.x_test, ds.y_test, written["test"])):
        assert x.dtype == np.uint8 and x.shape == (len(wx), 28, 28, 1)
        assert np.array_equal(x[..., 0], wx) and np.array_equal(y, wy)
    assert ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    f = written["train"][0].reshape(-1) / 255.0
    assert ds.mean == pytest.approx((f.mean(),)) and ds.std == pytest.approx((f.std(),))  # the training images'
    assert training_set_size(spec) == 7
    assert spec.identity.key() == f"torchvision-{name}"


def test_torchvision_cifar10_and_usps_through_the_generic_path(tmp_path, monkeypatch):
    written = write_cifar(tmp_path / "c", monkeypatch, "cifar10", np.random.default_rng(9))
    ds = load_dataset(DataSpec("torchvision:CIFAR10", str(tmp_path / "c")))
    assert np.array_equal(ds.x_train, _as_nhwc(written["train"][0])) and ds.num_classes == 10
    assert ds.mean != CIFAR_MEAN  # the training images' own statistics, not the reference constants
    # USPS: bz2 text files, "label index:value ..." with labels 1..10 and values in [-1, 1]
    import bz2

    rng = np.random.default_rng(10)
    written = {}
    for fname, n in (("usps.bz2", 5), ("usps.t.bz2", 3)):
        values, labels = rng.uniform(-1, 1, (n, 256)), rng.integers(1, 11, n)
        lines = [f"{y} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(row)) for y, row in zip(labels, values)]
        (tmp_path / fname).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
        written[fname] = (((values.astype(np.float32) + 1) / 2 * 255).astype(np.uint8).reshape(n, 16, 16, 1),
                          labels - 1)
    ds = load_dataset(DataSpec("torchvision:USPS", str(tmp_path), crop_padding=0, hflip=False))
    assert np.array_equal(ds.x_train, written["usps.bz2"][0]) and np.array_equal(ds.y_test, written["usps.t.bz2"][1])
    assert ds.image_shape == (16, 16, 1)


def test_absent_torchvision_set_says_how_to_fix_without_downloading(tmp_path):
    spec = DataSpec("torchvision:FashionMNIST", str(tmp_path))
    with pytest.raises(DataError, match="torchvision:FashionMNIST not found under data.root .* data.download: true"):
        load_dataset(spec)
    with pytest.raises(DataError, match="data.download: true"):
        training_set_size(spec)
    assert not any(tmp_path.iterdir())  # nothing was fetched
    with pytest.raises(DataError, match="torchvision:USPS not found under data.root .* data.download: true"):
        load_dataset(DataSpec("torchvision:USPS", str(tmp_path)))


# --- imagefolder ------------------------------------------------------------------------------------

def write_image_folder(root, rng, classes=("cat", "dog", "emu"), counts=None, size=(12, 10), mode="RGB",
                       ext=".png"):
    """root/{train,test}/<class>/<i>.png of random pixels; returns {split: [(image, class index)]}
    in torchvision's order (class folders sorted, files sorted)."""
    counts = counts or {"train": 4, "test": 2}
    written = {}
    channels = 1 if mode == "L" else 3
    for split, n in counts.items():
        written[split] = []
        for ci, c in enumerate(sorted(classes)):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                shape = (size[1], size[0]) if channels == 1 else (size[1], size[0], 3)
                a = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(a, mode=mode).save(folder / f"{i}{ext}")
                written[split].append((a, ci))
    return written


def test_image_folder_loads_in_torchvision_order_at_its_size(tmp_path):
    written = write_image_folder(tmp_path, np.random.default_rng(4), size=(8, 8))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image: skipped")
    ds = load_dataset(DataSpec("imagefolder", str(tmp_path), image_size=8))
    assert ds.x_train.shape == (12, 8, 8, 3) and ds.x_test.shape == (6, 8, 8, 3) and ds.num_classes == 3
    for x, y, split in ((ds.x_train, ds.y_train, "train"), (ds.x_test, ds.y_test, "test")):
        assert np.array_equal(x, np.stack([a for a, _ in written[split]]))  # no resize: the pixels as written
        assert y.tolist() == [c for _, c in written[split]] == sorted(y.tolist())
    # torchvision's own ImageFolder sees the same classes and order
    tv = torchvision.datasets.ImageFolder(str(tmp_path / "train"))
    assert tv.classes == ["cat", "dog", "emu"] and [c for _, c in tv.samples] == ds.y_train.tolist()


def test_image_folder_of_mixed_sizes_is_resized_and_grayscale_has_one_channel(tmp_path):
    rng = np.random.default_rng(5)
    write_image_folder(tmp_path / "gray", rng, classes=("a", "b"), size=(20, 14), mode="L")
    Image.fromarray(np.full((40, 50), 200, np.uint8), mode="L").save(tmp_path / "gray" / "train" / "a" / "9.png")
    ds = load_dataset(DataSpec("imagefolder", str(tmp_path / "gray"), image_size=16))
    assert ds.x_train.shape == (9, 16, 16, 1) and ds.image_shape == (16, 16, 1)
    assert (ds.x_train[4] == 200).all()  # a constant image stays constant when resized (a/9.png, 5th of a)
    # one colour image makes the whole set RGB (grayscale images repeated over 3 channels)
    Image.fromarray(rng.integers(0, 256, (14, 20, 3), dtype=np.uint8)).save(tmp_path / "gray" / "test" / "b" / "c.png")
    ds = load_dataset(DataSpec("imagefolder", str(tmp_path / "gray"), image_size=16))
    assert ds.image_shape == (16, 16, 3) and (ds.x_train[4] == 200).all()


def test_decoded_image_folder_is_cached_until_an_image_changes(tmp_path):
    rng = np.random.default_rng(6)
    write_image_folder(tmp_path / "f", rng, classes=("a", "b"), size=(6, 6))
    spec = DataSpec("imagefolder", str(tmp_path / "f"), image_size=6)
    first = load_dataset(spec, cache=str(tmp_path / "cache"))
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("imagefolder-f-6px-")
    again = load_dataset(spec, cache=str(tmp_path / "cache"))
    assert np.array_equal(first.x_train, again.x_train) and np.array_equal(first.y_test, again.y_test)
    new = np.zeros((6, 6, 3), np.uint8)
    Image.fromarray(new).save(tmp_path / "f" / "train" / "b" / "0.png")  # replaced: another fingerprint
    changed = load_dataset(spec, cache=str(tmp_path / "cache"))
    assert np.array_equal(changed.x_train[4], new) and len(list((tmp_path / "cache").iterdir())) == 2


@pytest.mark.parametrize("change, message", [
    (lambda r: None, "does not exist"),
    (lambda r: write_image_folder(r, np.random.default_rng(0)) and [p.unlink() for p in (r / "train" / "dog").iterdir()],
     "class folder .*train/dog holds no image"),
    (lambda r: write_image_folder(r, np.random.default_rng(0), classes=("only",)),
     r"train has 1 class folder\(s\) \['only'\]; a classification data set needs at least 2"),
    (lambda r: write_image_folder(r, np.random.default_rng(0), counts={"train": 2}),
     "has no test/ folder .*Add test/"),
    (lambda r: write_image_folder(r, np.random.default_rng(0), counts={"test": 2}), "has no train/ folder"),
    (lambda r: write_image_folder(r, np.random.default_rng(0)) and (r / "test" / "fox").mkdir(),
     r"test classes must be the training classes .*only in test/: \['fox'\]"),
    (lambda r: r.mkdir() or (r / "x.png").write_bytes(b""), "has no train/ folder"),
])
def test_bad_image_folders_are_refused_naming_the_key_and_the_fix(tmp_path, change, message):
    root = tmp_path / "data"
    change(root)
    with pytest.raises(ConfigError, match=message) as e:
        check_image_folder(str(root), "studies.s.data.root")
    assert str(e.value).startswith("studies.s.data.root: ")
    with pytest.raises(DataError, match=message):  # the loader refuses it the same way
        load_dataset(DataSpec("imagefolder", str(root), image_size=8))


def test_unreadable_image_names_the_file(tmp_path):
    write_image_folder(tmp_path, np.random.default_rng(7), classes=("a", "b"))
    (tmp_path / "train" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read the image .*train/b/broken.png"):
        load_dataset(DataSpec("imagefolder", str(tmp_path), image_size=8))


# --- data.train_fraction -------------------------------------------------------------------------

def test_train_fraction_keeps_a_seeded_class_stratified_subset():
    y = np.array([0] * 10 + [1] * 6 + [2] * 1 + [3] * 0 + [0] * 4)  # class 0: 14, 1: 6, 2: 1, 3: none
    x = np.arange(len(y), dtype=np.uint8).reshape(-1, 1, 1, 1)
    ds = from_arrays(x, y, x[:3], y[:3], num_classes=4)
    half = subsample(ds, 0.5)
    assert np.bincount(half.y_train, minlength=4).tolist() == [7, 3, 1, 0]  # round(n/2), a class keeps >= 1
    assert half.x_train[:, 0, 0, 0].tolist() == sorted(half.x_train[:, 0, 0, 0].tolist())  # original order
    assert np.array_equal(half.y_train, y[half.x_train[:, 0, 0, 0]])  # each image keeps its label
    assert np.array_equal(subsample(ds, 0.5).x_train, half.x_train)  # the same subset every time
    assert not np.array_equal(subsample(ds, 0.5, seed=1).x_train, half.x_train)
    assert half.x_test is ds.x_test and half.num_classes == 4 and half.mean == ds.mean
    assert subsample(ds, 1.0) is ds
    assert stratified_sizes(np.array([14, 6, 1, 0]), 0.1).tolist() == [1, 1, 1, 0]


def test_train_fraction_reaches_the_loader_and_the_size_check(tmp_path):
    write_image_folder(tmp_path, np.random.default_rng(8), counts={"train": 10, "test": 1}, size=(4, 4))
    spec = DataSpec("imagefolder", str(tmp_path), image_size=4, train_fraction=0.3)
    ds = load_dataset(spec)
    assert np.bincount(ds.y_train).tolist() == [3, 3, 3] and len(ds.x_test) == 3
    assert training_set_size(spec) == 9
    assert spec.identity.key() == f"imagefolder-{tmp_path.name.replace('_', '-')}-4px-f0.3"
    assert DataSpec("cifar10", train_fraction=0.5).identity.key() == "cifar10-f0.5"
    with pytest.raises(ConfigError, match=r"data.train_fraction must be in \(0, 1\]"):
        DataSpec("cifar10", train_fraction=0)
