"""CIFAR-10, CIFAR-100 and SVHN through the real torchvision loading path, offline: a few
images are written in each set's on-disk format (CIFAR's python pickles, SVHN's .mat) and
read back through threeregime.data. torchvision checks each file's MD5 against the published
one; the test registers the MD5 of the files it wrote, so that check runs as well."""

import hashlib
import pickle

import numpy as np
import pytest
import torchvision

from threeregime.data import CIFAR_MEAN, CIFAR_STD, DATA_SETS, SVHN_MEAN, SVHN_STD, load_dataset, training_set_size
from threeregime.spec.data import DataError, DataSpec


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
    assert sorted(schema["$defs"]["data"]["properties"]["name"]["enum"]) == sorted(DATA_SETS)
    with pytest.raises(DataError, match="unknown data set 'imagenet'"):
        load_dataset(DataSpec("imagenet"))
