import numpy as np
import pytest
import torch

from threeregime.data import DeviceData, from_arrays, load_digits_dataset, load_npz
from threeregime.spec.data import DataError


def test_digits_is_offline_uint8_nhwc():
    ds = load_digits_dataset()
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (8, 8, 1)
    assert len(ds.x_train) + len(ds.x_test) == 1797 and ds.num_classes == 10


def test_crop_and_flip_match_padding_then_cropping():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    ds = from_arrays(x, np.arange(6) % 2, x[:2], np.zeros(2, int))
    data = DeviceData(ds, torch.device("cpu"), crop_padding=2, hflip=True)
    plan = data.epoch_plan(torch.Generator().manual_seed(3))
    imgs, labels = data.augmented(plan, 0, 6)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for j, i in enumerate(plan["order"].tolist()):
        r, c = plan["offset"][j].tolist()
        ref = padded[i, r:r + 5, c:c + 7]
        if plan["flip"][j]:
            ref = ref[:, ::-1]
        assert np.array_equal(imgs[j].numpy(), ref)
        assert labels[j] == i % 2


def test_augmentation_distribution_is_torchvision_like():
    x = np.zeros((4000, 4, 4, 1), np.uint8)
    data = DeviceData(from_arrays(x, np.zeros(4000, int), x[:1], np.zeros(1, int)), torch.device("cpu"), 4, True)
    plan = data.epoch_plan(torch.Generator().manual_seed(0))
    offs = plan["offset"].flatten()
    assert offs.min() == 0 and offs.max() == 8  # RandomCrop(padding=4): 9 positions per axis
    counts = torch.bincount(offs, minlength=9).float() / offs.numel()
    assert torch.all((counts - 1 / 9).abs() < 0.02)
    assert abs(plan["flip"].float().mean().item() - 0.5) < 0.03
    assert sorted(plan["order"].tolist()) == list(range(4000))


def test_seed_stream_independent_of_other_copies():
    x = np.zeros((50, 4, 4, 1), np.uint8)
    data = DeviceData(from_arrays(x, np.zeros(50, int), x[:1], np.zeros(1, int)), torch.device("cpu"), 1, True)
    a = data.epoch_plan(torch.Generator().manual_seed(7))
    _ = data.epoch_plan(torch.Generator().manual_seed(8))
    b = data.epoch_plan(torch.Generator().manual_seed(7))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_npz_errors_name_the_problem(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.zeros(2, int))
    with pytest.raises(DataError, match="missing arrays"):
        load_npz(str(p))
    np.savez(p, x_train=np.zeros((2, 4, 4, 3), np.float32), y_train=np.zeros(2, int),
             x_test=np.zeros((1, 4, 4, 3), np.uint8), y_test=np.zeros(1, int))
    with pytest.raises(DataError, match="uint8 NHWC"):
        load_npz(str(p))
    with pytest.raises(DataError, match="no such .npz"):
        load_npz(str(tmp_path / "nope.npz"))


def test_missing_cifar_without_download_says_how_to_fix(tmp_path):
    from threeregime.data import load_dataset
    from threeregime.spec.data import DataSpec

    with pytest.raises(DataError, match="data.download"):
        load_dataset(DataSpec("cifar10", str(tmp_path), download=False))


@pytest.mark.parametrize("case, message", [
    ("folder", "is a folder"),
    ("truncated", "not a readable .npz file"),
    ("garbage", "not a readable .npz file"),
    ("npy", "single .npy array"),
    ("negative_labels", "negative labels"),
    ("empty", "holds no images"),
])
def test_bad_npz_files_name_data_root_and_the_fix(tmp_path, case, message):
    x = np.zeros((10, 8, 8, 1), np.uint8)
    y = np.arange(10) % 3
    path = tmp_path / "d.npz"
    if case == "folder":
        path.mkdir()
    elif case == "npy":
        np.save(tmp_path / "d.npy", x)
        (tmp_path / "d.npy").rename(path)
    else:
        ytr = y - 1 if case == "negative_labels" else y
        xtr = x[:0] if case == "empty" else x
        ytr = ytr[:0] if case == "empty" else ytr
        np.savez(path, x_train=xtr, y_train=ytr, x_test=x, y_test=y)
        if case == "truncated":
            path.write_bytes(path.read_bytes()[:300])
        if case == "garbage":
            path.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(DataError, match=message):
        load_npz(str(path))
