"""python -m threeregime.advise on one's own checkpoint: the advice, and clear errors on bad input."""

import json
import math

import pytest
import torch

from threeregime.advise import ADVICE, infer_spec, main
from threeregime.data import load_digits_dataset
from threeregime.models import PreResNet
from threeregime.spec.model import ModelSpec


@pytest.fixture(scope="module")
def digits_spec():
    ds = load_digits_dataset()
    return ModelSpec("preresnet", 8, 0.5, ds.image_shape[-1], ds.num_classes)


def plain_state_dict(tmp_path, spec, name="model.pt"):
    torch.manual_seed(0)
    path = tmp_path / name
    torch.save(PreResNet(spec, 1).copy_state(0), path)
    return str(path)


def test_advice_on_a_plain_state_dict(tmp_path, digits_spec, capsys):
    ckpt = plain_state_dict(tmp_path, digits_spec)
    out = tmp_path / "advice"
    rc = main([ckpt, "--density", "0.3", "--data", "digits", "--crop-padding", "1", "--no-hflip", "--epochs", "1",
               "--seeds", "1", "2", "--samples", "300", "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    res = json.loads((out / "advice.json").read_text())
    assert res["model"]["depth"] == 8 and res["model"]["width"] == 0.5  # read from the tensors' shapes
    # the mean of one pair's LMC is that number (float64, exact): approx's default rel 1e-6 is only a guard
    assert len(res["pairs"]) == 1 and res["lmc"] == pytest.approx(res["pairs"][0]["lmc"])
    assert abs(res["achieved_density"] - 0.3) < 0.01 and len(res["test_error"]) == 2
    expected = "missing" if res["lmc"] != res["lmc"] else "I" if res["lmc"] < -0.05 else \
        ("II-B" if res["cka"] >= 0.9 else "II-A")
    # one pair has no interval: the regime of the means, but no advice until more seeds settle it
    assert res["regime"] == expected and not res["settled"] and res["advice"] == "unsettled"
    assert res["regime"] in res["candidates"] and math.isnan(res["lmc_lo"]) and res["advice_text"] != ADVICE[expected][1]
    assert f"regime {expected} by the means, unsettled between" in printed and f"{res['lmc']:+.4f}" in printed
    assert "90 % interval unknown: one pair" in printed and "--seeds 1 2 3 4 5 6" in printed
    assert (out / "lmc_curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["missing.pt", "--density", "0.1"], "does not exist"),
    (["{ckpt}", "--density", "1.5"], r"\(0, 1\]"),
    (["{ckpt}", "--density", "0"], r"\(0, 1\]"),
    (["{other}", "--density", "0.1"], "not a supported architecture"),
    (["{ckpt}", "--density", "0.1", "--data", "npz", "--data-root", "nowhere.npz"], "nowhere.npz"),
    (["{ckpt}", "--density", "0.1", "--data", "imagefolder", "--data-root", "nowhere"], "'nowhere' does not exist"),
    (["{ckpt}", "--density", "0.1", "--data", "torchvision:SVHN"], "not a torchvision classification set"),
])
def test_bad_input_is_named(tmp_path, digits_spec, capsys, args, message):
    ckpt = plain_state_dict(tmp_path, digits_spec)
    other = tmp_path / "mlp.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(64, 10)).state_dict(), other)
    args = [a.format(ckpt=ckpt, other=other) for a in args]
    if "--data" not in args:
        args += ["--data", "digits"]
    assert main(args + ["--device", "cpu", "--out", str(tmp_path / "o")]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_a_state_dict_of_another_shape_is_refused(digits_spec):
    state = PreResNet(digits_spec, 1).copy_state(0)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError, match="layer1.0.conv1.weight has shape"):
        infer_spec(state)


def _result(**kw):
    pairs = [{"seed_a": 1, "seed_b": 2, "lmc": -0.02, "cka": 0.95}, {"seed_a": 1, "seed_b": 3, "lmc": -0.03, "cka": 0.95},
             {"seed_a": 2, "seed_b": 3, "lmc": -0.025, "cka": 0.96}]
    return {"model": {"arch": "preresnet", "depth": 8, "width": 1.0, "in_channels": 1, "num_classes": 10},
            "density": 0.1, "achieved_density": 0.1, "seeds": [1, 2, 3], "test_error": [0.1, 0.1, 0.1],
            "pairs": pairs, "lmc": -0.025, "cka": 0.9533, "lmc_lo": -0.04, "lmc_hi": -0.01, "cka_lo": 0.93,
            "cka_hi": 0.97, "confidence": 0.9, "lmc_epsilon": -0.05, "cka_threshold": 0.9, "regime": "II-B",
            "candidates": ["II-B"], "settled": True, "advice": "keep", "advice_text": ADVICE["II-B"][1], **kw}


def test_the_report_prints_the_intervals_and_unsettled_instead_of_advice():
    from threeregime.advise import report

    text = report(_result())
    assert "mean LMC -0.0250 (90 % interval -0.0400 to -0.0100) (Regime I below ε = -0.05)" in text
    assert "mean CKA 0.9533 (90 % interval 0.9300 to 0.9700)" in text and "advice: KEEP the temperature" in text
    text = report(_result(lmc_lo=-0.07, candidates=["I", "II-B"], settled=False, advice="unsettled",
                          advice_text="No advice yet"))
    assert "regime II-B by the means, unsettled between I and II-B: no advice yet" in text and "KEEP" not in text
