"""The path scheme is an interface: people script against it. Pin it."""

from threeregime.study import Paths, fmt, model_key, trainer_key


def test_path_scheme_is_pinned():
    p = Paths("results/cifar10_preresnet20")
    model = model_key({"arch": "preresnet", "depth": 20, "width": 1})
    trainer = trainer_key({"optimizer": "sgd", "batch_size": 64})
    assert (model, trainer) == ("preresnet20_w1", "sgd_bs64")
    assert p.dense(model, trainer, 1, 160) == "results/cifar10_preresnet20/dense/preresnet20_w1/sgd_bs64/seed1/epoch160.pt"
    assert p.cell(model, trainer, "uniform", 0.05, 160, 1) == \
        "results/cifar10_preresnet20/cells/preresnet20_w1/sgd_bs64/uniform/density0.05/epoch160/seed1"
    assert p.table() == "results/cifar10_preresnet20/table.parquet"
    assert p.cells_summary() == "results/cifar10_preresnet20/cells.parquet"
    assert p.figure("pdf") == "results/cifar10_preresnet20/figure2.pdf"
    assert model_key({"arch": "preresnet", "depth": 56, "width": 0.5}) == "preresnet56_w0.5"
    assert [fmt(d) for d in (0.05, 0.06, 0.1, 0.14, 0.8, 1.0)] == ["0.05", "0.06", "0.1", "0.14", "0.8", "1"]


def test_keys_round_trip():
    from threeregime.study import parse_model_key, parse_trainer_key

    model = {"arch": "preresnet", "depth": 20, "width": 1.0}
    assert parse_model_key("preresnet32_w0.25", model) == {"arch": "preresnet", "depth": 32, "width": 0.25}
    train = {"optimizer": "sgd", "batch_size": 64, "lr": 0.1}
    assert parse_trainer_key("sgd_bs256", train)["batch_size"] == 256
