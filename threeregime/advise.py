"""Advice for one's own dense model: which way to move the temperature before pruning.

    python -m threeregime.advise CHECKPOINT --density D --data digits [--epochs E] [--out DIR]

CHECKPOINT is a dense checkpoint of this project (results/dense/.../<ckpt>.pt) or a plain
PyTorch state dict of a supported architecture (threeregime.models.PreResNet, any depth 6n+2 and
width; depth and width are read from the tensors' shapes), or, with
`--factory my_models.py:small_cnn --kwargs '{"width": 2}'`, the state dict of your own network
as that function builds it (README "Your own model"; in_channels and num_classes come from
the data set where the function takes them). `--layers conv linear --exclude fc` choose the
pruned weights as prune.layers / prune.exclude do. The command prunes it by weight
magnitude to density D, retrains one copy per seed from the pruned weights, measures LMC and CKA
between the copies (as a study's cell does) and prints the regime with the advice:

  Regime I    (LMC < ε)                   raise the temperature (fewer dense epochs, a smaller
                                          batch, SAM with a larger ρ): Algorithm 1 of the paper
  Regime II-A (connected, CKA < threshold) lower the temperature (train the dense model longer,
                                          a larger batch, a smaller ρ)
  Regime II-B (connected, CKA ≥ threshold) keep it
  unsettled   (an interval for the mean    no advice yet: retrain more copies (more --seeds)
              LMC or CKA reaches across a  until it settles
              boundary)

It writes advice.json (the numbers) and lmc_curves.pdf/.png (train error along the line
between each pair of copies) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import asdict
from math import nan

import numpy as np
import torch

from .atomic import save_json
from .checkpoints import CheckpointError
from .data import DeviceData, load_dataset
from .spec.data import DataError, DataSpec
from .landscape import landscape_metrics
from .spec.landscape import LandscapeSpec
from .models import build_network
from .spec.common import ConfigError
from .spec.model import ModelSpec, factory_source
from .pipeline import prune_state
from .pruning import density_of
from .spec.prune import LAYER_TYPES, METHODS
from .regimes import DEFAULT_CKA_THRESHOLD, DEFAULT_CONFIDENCE, DEFAULT_LMC_EPSILON, Regimes
from .uncertainty import describe, interval
from .training import train_copies
from .engine import Engine
from .spec.train import TrainSpec

ADVICE = {
    "I": ("raise", "Regime I (poorly connected): raise the temperature - train the dense model for fewer epochs, "
                   "with a smaller batch, or with SAM at a larger ρ - before pruning to this density."),
    "II-A": ("lower", "Regime II-A (connected, dissimilar): lower the temperature - train the dense model longer, "
                      "with a larger batch, or with a smaller SAM ρ."),
    "II-B": ("keep", "Regime II-B (connected, similar): keep the temperature; this dense model prunes well to "
                     "this density."),
    "missing": ("none", "No advice: a retrained copy's metrics are undefined (diverged or constant outputs); lower "
                        "the retraining learning rate and rerun."),
}
UNSETTLED = ("unsettled", "No advice yet: the {confidence:g} % intervals of the mean LMC and CKA reach {candidates}, "
                          "so the copies retrained do not tell which. Rerun with more seeds (e.g. --seeds 1 2 3 4 5 6: "
                          "six copies, 15 pairs) until the regime settles; with two seeds (one pair) there is no "
                          "interval at all.")


def _listed(names) -> str:
    """'I and II-A', 'I, II-A and II-B'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


class AdviseError(ValueError):
    """Bad input; the message names the problem and the fix."""


def read_state_dict(path: str) -> tuple[dict, ModelSpec | None]:
    """(state dict, its ModelSpec if the file says) of a project checkpoint or a plain state dict."""
    if not os.path.exists(path):
        raise AdviseError(f"checkpoint {path!r} does not exist (give the path of a dense checkpoint, e.g. "
                          f"results/dense/<run>/seed1/epoch160.pt, or of a saved state dict)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AdviseError(f"checkpoint {path!r} cannot be read as a PyTorch file ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        meta = obj.get("meta", {})
        if meta.get("kind") not in (None, "dense"):
            raise AdviseError(f"checkpoint {path!r} is a {meta.get('kind')!r} checkpoint of this project; give a "
                              f"dense one (results/dense/...)")
        spec = ModelSpec(**obj["spec"]) if isinstance(obj.get("spec"), dict) else None
        return obj["state_dict"], spec
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    raise AdviseError(f"checkpoint {path!r} holds neither a state dict nor a project checkpoint "
                      f"(a {type(obj).__name__}); save model.state_dict()")


def infer_spec(state: dict) -> ModelSpec:
    """The PreResNet a plain state dict belongs to, from its tensors' shapes (checked key by key)."""
    need = ("conv1.weight", "fc.weight", "layer1.0.conv1.weight")
    if not all(k in state for k in need):
        found = ", ".join(list(state)[:4])
        raise AdviseError(f"the checkpoint is not a supported architecture: expected a PreResNet state dict "
                          f"(threeregime.models.PreResNet, keys such as {', '.join(need)}), found keys {found}, ...")
    c1, in_ch = state["conv1.weight"].shape[:2]
    blocks = {int(m.group(1)) for k in state for m in [re.match(r"layer1\.(\d+)\.", k)] if m}
    spec = ModelSpec("preresnet", 6 * len(blocks) + 2, c1 / 16, int(in_ch), int(state["fc.weight"].shape[0]))
    check_matches(state, spec)
    return spec


def check_matches(state: dict, spec: ModelSpec) -> None:
    own = build_network(spec, 1).copy_state(0)  # a single model's state dict
    extra, missing = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    if extra or missing:
        what = (f"the network {spec.factory}(**{dict(spec.kwargs)}) builds (check --factory and --kwargs)"
                if spec.factory else "threeregime.models.PreResNet, depth 6n+2; your own network: --factory")
        raise AdviseError(f"the checkpoint is not a {spec.key} state dict: unexpected keys {extra[:3]}, missing "
                          f"keys {missing[:3]} (supported: {what})")
    for k, t in own.items():
        if tuple(state[k].shape) != tuple(t.shape):
            raise AdviseError(f"the checkpoint is not a {spec.key} state dict: {k} has shape "
                              f"{tuple(state[k].shape)}, expected {tuple(t.shape)}")


def advise(state: dict, spec: ModelSpec, data_spec: DataSpec, density: float, retrain: TrainSpec, seeds: list[int],
           engine: Engine, landscape: LandscapeSpec, lmc_epsilon: float = DEFAULT_LMC_EPSILON, cka_threshold: float = DEFAULT_CKA_THRESHOLD,
           method: str = "uniform", log=print, layers: tuple[str, ...] = ("conv",),
           exclude: tuple[str, ...] = (), confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """Prune `state` to `density`, retrain one copy per seed, measure LMC/CKA: the regime and advice."""
    if not 0 < density <= 1:
        raise AdviseError(f"--density must be in (0, 1] (the fraction of convolution weights kept), got {density}")
    if len(seeds) < 2:
        raise AdviseError(f"--seeds needs at least 2 seeds to form a pair, got {seeds}")
    ds = load_dataset(data_spec)
    if spec.factory and not spec.complete:  # your own network: its data shape is the data set's
        spec = spec.for_data(ds.image_shape[-1], ds.num_classes)
        from .generic import check_output

        check_output(spec, tuple(ds.image_shape))
        check_matches(state, spec)
    if (ds.image_shape[-1], ds.num_classes) != (spec.in_channels, spec.num_classes):
        raise AdviseError(f"the checkpoint takes {spec.in_channels}-channel images and predicts {spec.num_classes} "
                          f"classes, data set {data_spec.name!r} has {ds.image_shape[-1]} channels and "
                          f"{ds.num_classes} classes: give the data set the model was trained on")
    data = DeviceData(ds, engine.device, data_spec.crop_padding, data_spec.hflip)
    pruned, masks = prune_state(state, spec, density, method, layers, exclude)
    log(f"pruned {spec.key} to density {density} ({method}): kept {density_of(masks):.4f} of conv weights; "
        f"retraining {len(seeds)} copies for {retrain.total_epochs(data.n_train)} epochs")
    states, history = train_copies(spec, [pruned] * len(seeds), seeds, data, retrain, engine, masks=masks, log=log)
    eval_data = DeviceData(ds, engine.device, 0, False)
    res = landscape_metrics(spec, dict(zip(seeds, states)), eval_data, engine, landscape)
    lmc = float(np.mean([p["lmc"] for p in res["pairs"]]))
    cka = float(np.mean([p["cka"] for p in res["pairs"]]))
    rule = Regimes(lmc_epsilon, cka_threshold, confidence)
    r = rule.classify(lmc, cka)
    ivs = {m: interval({0: {(p["seed_a"], p["seed_b"]): p[m] for p in res["pairs"]}}, confidence)
           for m in ("lmc", "cka")}
    names = rule.candidates(lmc, cka, (ivs["lmc"].lo, ivs["lmc"].hi), (ivs["cka"].lo, ivs["cka"].hi))
    advice = ADVICE[r] if len(names) == 1 else (
        UNSETTLED[0], UNSETTLED[1].format(confidence=confidence * 100, candidates=_listed(names)))
    return {"model": asdict(spec), "density": density, "achieved_density": density_of(masks),
            "retrain": retrain.as_dict(), "seeds": list(seeds),
            "test_error": [float(e) for e in history[-1].test_error], "lmc": lmc, "cka": cka,
            "lmc_lo": ivs["lmc"].lo, "lmc_hi": ivs["lmc"].hi, "cka_lo": ivs["cka"].lo, "cka_hi": ivs["cka"].hi,
            "confidence": confidence, "candidates": list(names), "settled": len(names) == 1,
            "lmc_epsilon": lmc_epsilon, "cka_threshold": cka_threshold, "regime": r,
            "advice": advice[0], "advice_text": advice[1], "ts": res["ts"], "pairs": res["pairs"]}


def report(result: dict) -> str:
    """The advice with the numbers behind it, as printed."""
    lines = [f"model {ModelSpec(**result['model']).key}, pruned to density {result['density']:g} "
             f"(achieved {result['achieved_density']:.4f}), {len(result['seeds'])} copies retrained",
             "test error of the retrained copies: " + ", ".join(f"{e:.4f}" for e in result["test_error"])]
    for p in result["pairs"]:
        lines.append(f"pair ({p['seed_a']}, {p['seed_b']}): LMC {p['lmc']:+.4f}, CKA {p['cka']:.4f}")
    conf = result.get("confidence", DEFAULT_CONFIDENCE)
    lines.append(f"mean LMC {describe(result['lmc'], result.get('lmc_lo', nan), result.get('lmc_hi', nan), conf)} "
                 f"(Regime I below ε = {result['lmc_epsilon']:g})")
    lines.append(f"mean CKA {describe(result['cka'], result.get('cka_lo', nan), result.get('cka_hi', nan), conf, '.4f')} "
                 f"(II-B at or above {result['cka_threshold']:g})")
    if result["advice"] == UNSETTLED[0]:
        lines.append(f"regime {result['regime']} by the means, unsettled between {_listed(result['candidates'])}: "
                     f"no advice yet")
    else:
        lines.append(f"regime {result['regime']}: advice: {result['advice'].upper()} the temperature"
                     if result["advice"] != "none" else f"regime {result['regime']}")
    lines.append(result["advice_text"])
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m threeregime.advise", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="dense checkpoint (.pt): this project's, a PreResNet state dict, or (with "
                                      "--factory) your own network's state dict")
    p.add_argument("--factory", help="your own network: 'file.py:function' or 'package.module:function' "
                                     "(as model.factory)")
    p.add_argument("--kwargs", default="{}", help="JSON keyword arguments of --factory, e.g. '{\"width\": 2}'")
    p.add_argument("--layers", nargs="+", default=["conv"], choices=list(LAYER_TYPES),
                   help="layer types whose weights are pruned (as prune.layers)")
    p.add_argument("--exclude", nargs="*", default=[], help="module-name globs kept dense (as prune.exclude)")
    p.add_argument("--density", type=float, required=True, help="fraction of convolution weights kept, in (0, 1]")
    p.add_argument("--data", required=True, help="cifar10, cifar100, svhn, digits, npz, imagefolder or "
                   "torchvision:<Class> (README \"Your own data\")")
    p.add_argument("--data-root", default="data", help="torchvision root, the .npz file for --data npz, or the "
                   "folder holding train/ and test/ for --data imagefolder")
    p.add_argument("--image-size", type=int, default=0, help="--data imagefolder: images resized to this square "
                   "size (default 32)")
    p.add_argument("--crop-padding", type=int, default=4, help="retraining augmentation: RandomCrop padding")
    p.add_argument("--no-hflip", action="store_true", help="retraining augmentation: no horizontal flips")
    p.add_argument("--epochs", type=int, default=160, help="retraining epochs per copy (lr x0.1 at 50 %% and 75 %%)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one retrained copy per seed")
    p.add_argument("--method", choices=list(METHODS), default="uniform", help="uniform (UniformMP) or global")
    p.add_argument("--epsilon", type=float, default=DEFAULT_LMC_EPSILON, help="Regime I: LMC < epsilon")
    p.add_argument("--cka-threshold", type=float, default=DEFAULT_CKA_THRESHOLD, help="II-B: CKA >= threshold")
    p.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE,
                   help="two-sided confidence of the intervals that settle the regime (default 0.9)")
    p.add_argument("--samples", type=int, default=10000, help="training images for BatchNorm and err(t) (0: all)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="results/advice", help="folder for advice.json and lmc_curves.pdf/.png")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        if not 0 < a.density <= 1:
            raise AdviseError(f"--density must be in (0, 1] (the fraction of convolution weights kept), "
                              f"got {a.density}")
        if not 0 < a.confidence < 1:
            raise AdviseError(f"--confidence must be in (0, 1), e.g. 0.9, got {a.confidence}")
        if a.epochs < 1:
            raise AdviseError(f"--epochs must be >= 1, got {a.epochs}")
        state, spec = read_state_dict(a.checkpoint)
        if a.factory:
            try:
                kwargs = json.loads(a.kwargs)
            except json.JSONDecodeError as e:
                raise AdviseError(f"--kwargs {a.kwargs!r} is not JSON ({e}): write e.g. '{{\"width\": 2}}'") from None
            if not isinstance(kwargs, dict):
                raise AdviseError(f"--kwargs must be a JSON object of argument names to values, got {a.kwargs!r}")
            # the data shape is filled in from the data set, then checked with the state dict (advise)
            spec = ModelSpec("factory", 0, 1.0, None, None, a.factory, kwargs, factory_source(a.factory))
        elif spec is None:
            spec = infer_spec(state)
        else:
            check_matches(state, spec)
        milestones = sorted({m for m in (a.epochs // 2, 3 * a.epochs // 4) if 1 <= m < a.epochs})
        retrain = TrainSpec(lr=a.lr, batch_size=a.batch_size, epochs=a.epochs, milestones=tuple(milestones))
        device = a.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        engine = Engine.auto(device)
        data_spec = DataSpec(a.data, a.data_root, False, a.crop_padding, not a.no_hflip, a.image_size)
        landscape = LandscapeSpec(points=11, bn_samples=a.samples, error_samples=a.samples,
                                  cka_samples=min(a.samples, 6400) if a.samples else 6400)
        result = advise(state, spec, data_spec, a.density, retrain, list(a.seeds), engine, landscape, a.epsilon,
                        a.cka_threshold, a.method, log=lambda *m: print(*m, file=sys.stderr),
                        layers=tuple(a.layers), exclude=tuple(a.exclude), confidence=a.confidence)
    except (AdviseError, CheckpointError, ConfigError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from .plots import lmc_curves

    os.makedirs(a.out, exist_ok=True)
    save_json({k: v for k, v in result.items()}, os.path.join(a.out, "advice.json"))
    lmc_curves([{**p, "ts": result["ts"]} for p in result["pairs"]], os.path.join(a.out, "lmc_curves.pdf"),
               os.path.join(a.out, "lmc_curves.png"),
               title=f"{ModelSpec(**result['model']).key} at density {a.density:g}: regime {result['regime']}")
    print(report(result))
    print(f"wrote {os.path.join(a.out, 'advice.json')} and {os.path.join(a.out, 'lmc_curves.pdf')} (.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
