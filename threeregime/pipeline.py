"""The workflow's stages as plain functions: what each Snakemake job does.

Scripts in workflow_scripts/ only translate Snakemake's objects into these calls, so every
stage runs (and is tested) without Snakemake.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import shutil
from dataclasses import asdict

import torch

from .atomic import save_json, save_text
from .checkpoints import load_torch, save_torch
from .data import DeviceData, load_dataset
from .landscape import landscape_metrics
from .models import build_network
from .pruning import apply_masks, density_of, layer_densities, magnitude_masks
from .spec.data import DataIdentity, DataSpec
from .spec.landscape import LandscapeSpec
from .spec.model import ModelSpec
from .spec.prune import PruneSpec
from .spec.train import TrainSpec
from .training import DivergedError, train_copies
from .engine import Engine

LOG_COLUMNS = ("retrain_seed", "epoch", "lr", "train_loss", "train_error", "test_loss", "test_error")


DATA_CACHE = "results/data"  # decoded image folders (threeregime.data.load_image_folder), beside the results


def device_data(spec: DataSpec, engine: Engine, augment: bool):
    ds = load_dataset(spec, cache=DATA_CACHE)
    data = DeviceData(ds, engine.device, spec.crop_padding if augment else 0, spec.hflip if augment else False)
    return ds, data


def _spec_of(ckpt: dict) -> ModelSpec:
    return ModelSpec(**ckpt["spec"])


def check_network(spec: ModelSpec, image_shape) -> None:
    """A factory's network, checked at job start where planning could not (it needs torch):
    it builds, is an nn.Module and maps this data set's images to num_classes logits."""
    if spec.factory:
        from .generic import check_output

        check_output(spec, tuple(image_shape))


def train_dense(data_spec: DataSpec, run, seed: int, ckpt: str, previous: str | None, out_path: str,
                resume_path: str, engine: Engine, log=print) -> None:
    """One segment of a dense run (a `DenseRun`): from the checkpoint `previous` (or, for the
    first segment, the seed's initialisation) to checkpoint `ckpt` ('epoch<e>' or 'final').

    The checkpoint carries the full training state (optimizer, data-order generators), so the
    next segment continues exactly where this one stopped: a run in segments is bitwise equal
    to one uninterrupted run on CPU. Inside a segment, a resume state at `resume_path` is
    written after every epoch and picked up by a rerun of a killed job.
    """
    # Where the data lives comes from the config (any study naming this data set); what it is,
    # augmentation included, is this run's own: two studies may augment one data set differently.
    data_spec = data_spec.located(run.data)
    ds, data = device_data(data_spec, engine, augment=True)
    spec = run.model.for_data(ds.image_shape[-1], ds.num_classes)
    check_network(spec, ds.image_shape)
    meta, stop, init, start_state = segment_start(run, seed, ckpt, previous, data.n_train,
                                                  lambda: build_network(spec, 1).copy_state(0))
    log(f"dense training seed {seed} to {ckpt} (from {previous or 'initialisation'}): {spec.key}, {run.train}, "
        f"{engine.describe()}")
    state: dict = {}
    states, history = train_copies(spec, [init], [seed], data, run.train, engine, resume_path=resume_path,
                                   resume_meta={**meta, "ckpt": ckpt, "run_spec": run.as_dict()},
                                   start_state=start_state, stop_epoch=stop, state_out=state, log=log)
    save_segment(meta, ckpt, stop, spec, run, states[0], [asdict(h) for h in history], state, out_path, resume_path)


def segment_start(run, seed: int, ckpt: str, previous: str | None, n_train: int, initial_state):
    """A dense segment's (meta, last epoch, starting weights, training state or None): from
    checkpoint `previous`, else `initial_state()` after seeding torch with the seed (the
    initialisation is the seed's). Shared by the tasks' train_dense (the same file contract)."""
    meta = {"kind": "dense", "run": run.key, "seed": int(seed)}
    stop = run.train.total_epochs(n_train) if ckpt == "final" else int(ckpt[len("epoch"):])
    if previous:
        prev_name = os.path.basename(previous)[:-len(".pt")]
        prev = load_torch(previous, expect={**meta, "ckpt": prev_name})
        return meta, stop, prev["state_dict"], prev["train_state"]
    torch.manual_seed(seed)
    return meta, stop, initial_state(), None


def save_segment(meta: dict, ckpt: str, stop: int, spec: ModelSpec, run, weights: dict, history: list, state: dict,
                 out_path: str, resume_path: str) -> None:
    """A dense segment's checkpoint {meta, spec, hparams, state_dict, history, train_state}; its
    resume state is then no longer needed."""
    save_torch({"meta": {**meta, "ckpt": ckpt, "epoch": stop}, "spec": asdict(spec), "hparams": run.as_dict(),
                "state_dict": weights, "history": history, "train_state": state}, out_path)
    if os.path.exists(resume_path):
        os.remove(resume_path)


def prune_state(state: dict, spec: ModelSpec, density: float, method: str, layers: tuple[str, ...] = ("conv",),
                exclude: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """(pruned state dict, masks): magnitude pruning of the weights of `spec`'s network that
    `layers` and `exclude` choose (PruneSpec; default every convolution)."""
    names = build_network(spec, 1).prunable(tuple(layers), tuple(exclude))
    if not names:
        raise ValueError(f"prune.layers {list(layers)} with prune.exclude {list(exclude)} choose no weights of "
                         f"{spec.key}: widen prune.layers or drop a pattern from prune.exclude")
    masks = magnitude_masks({name: state[name] for name in names}, density, method)
    return apply_masks(state, masks), masks


def prune_checkpoint(dense_path: str, out_path: str, density: float, method: str, expect: dict, meta: dict,
                     log=print, layers: tuple[str, ...] = ("conv",), exclude: tuple[str, ...] = ()) -> float:
    """Prune one dense checkpoint (PruneSpec's method, density, layers, exclude); the achieved
    density of each pruned layer is written beside it (densities.json) and into the file."""
    prune = PruneSpec(method, density, tuple(layers), tuple(exclude))
    ckpt = load_torch(dense_path, expect=expect)
    pruned, masks = prune_state(ckpt["state_dict"], _spec_of(ckpt), prune.density, prune.method, prune.layers,
                                prune.exclude)
    achieved = density_of(masks)
    per_layer = layer_densities(masks)
    save_json({"prune": prune.as_dict(), "achieved_density": achieved, "layers": per_layer},
              os.path.join(os.path.dirname(out_path), "densities.json"))
    # the dense run's data set (augmentation included), which its retraining uses
    data = {"data": ckpt["hparams"]["data"]} if "hparams" in ckpt else {}
    save_torch({"meta": {**meta, "achieved_density": achieved}, "spec": ckpt["spec"], "state_dict": pruned,
                "mask": masks, "layer_densities": per_layer, **data}, out_path)
    log(f"{prune.method} magnitude pruning of {dense_path} to density {prune.density}: kept {achieved:.6f} of "
        f"{len(masks)} layers' weights ({', '.join(prune.layers)}"
        + (f", except {', '.join(prune.exclude)}" if prune.exclude else "") + ")")
    return achieved


def write_log(history_by_seed: dict[int, list], path: str, columns: tuple[str, ...] = LOG_COLUMNS) -> None:
    """retrain_log.csv: one row per copy and epoch, `columns` (the seed, then keys of the history)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for seed, history in sorted(history_by_seed.items()):
        for h in history:
            w.writerow([seed] + [h[c] for c in columns[1:]])
    save_text(buf.getvalue(), path)


def save_retrained(resume_dir: str, seeds: list[int], job_meta: dict, meta: dict, hp: TrainSpec, spec: dict,
                   masks: dict, out_path: str, log_path: str, columns: tuple[str, ...] = LOG_COLUMNS) -> None:
    """A retraining job's end, once every copy is in resume_dir as seed<s>.pt: retrained.pt
    ({"copies": {seed: {"state_dict", "history", "diverged"}}, "mask", "spec", "meta"}), its
    log, and resume_dir removed. Shared by the tasks' retrain_cell (the same file contract)."""
    copies = {}
    for s in seeds:
        part = load_torch(os.path.join(resume_dir, f"seed{s}.pt"), expect={**job_meta, "retrain_seed": s})
        copies[s] = {k: part[k] for k in ("state_dict", "history", "diverged")}
    save_torch({"meta": {**meta, "seeds": seeds, "train": hp.as_dict()}, "spec": spec, "mask": masks,
                "copies": copies}, out_path)
    write_log({s: c["history"] for s, c in copies.items()}, log_path, columns)
    shutil.rmtree(resume_dir, ignore_errors=True)


def diverged_landscape(copies: dict, meta: dict, achieved: float, out_path: str, log) -> dict | None:
    """A cell whose retraining diverged: its landscape JSON with every pair's metrics NaN
    (written, and returned), else None. Shared by the tasks' measure_cell."""
    diverged = [c["diverged"] for c in copies.values() if c.get("diverged")]
    if not diverged:
        return None
    log(f"cell diverged in retraining; its metrics are recorded as missing: {diverged[0]}")
    res = {"meta": meta, "diverged": diverged[0], "achieved_density": achieved,
           "pairs": [{"seed_a": a, "seed_b": b, "lmc": float("nan"), "cka": float("nan"), "cka_logit": float("nan")}
                     for a, b in itertools.combinations(sorted(copies), 2)]}
    save_json(res, out_path)
    return res


def save_landscape(res: dict, meta: dict, achieved: float, out_path: str, log) -> dict:
    """A cell's landscape JSON: the metrics with the job's meta and the achieved density."""
    res["meta"] = meta
    res["achieved_density"] = achieved
    save_json(res, out_path)
    for p in res["pairs"]:
        log(f"pair ({p['seed_a']}, {p['seed_b']}): lmc {p['lmc']:+.4f}, cka {p['cka']:.4f}")
    return res


def retrain_cell(pruned_path: str, out_path: str, log_path: str, data_spec: DataSpec, hp: TrainSpec,
                 seeds: list[int], engine: Engine, resume_dir: str, meta: dict, expect: dict, log=print,
                 on_divergence: str = "fail") -> None:
    """Retrain copies of one pruned network, one per seed, into one file `out_path`
    ({"copies": {seed: {"state_dict", "history", "diverged"}}, "mask", "spec", "meta"}).

    All copies start from the same pruned weights and keep its mask; the seed sets only the
    data order and augmentation. Copies are trained `engine.copies_for(...)` at a time in
    one grouped network; each finished group is kept in `resume_dir` until all are done.
    """
    ckpt = load_torch(pruned_path, expect=expect)
    spec, masks = _spec_of(ckpt), ckpt["mask"]
    if "data" in ckpt:  # retrain with the dense run's augmentation (pruned files before it: the config's)
        data_spec = data_spec.located(DataIdentity(**ckpt["data"]))
    _, data = device_data(data_spec, engine, augment=True)
    seeds = sorted(int(s) for s in seeds)
    per_pass = engine.copies_for(spec, tuple(data.x_train.shape[1:3]), len(seeds))
    os.makedirs(resume_dir, exist_ok=True)
    log(f"retraining {len(seeds)} copies of {pruned_path} ({per_pass} per pass), {hp}, {engine.describe()}")
    job_meta = {**meta, "train": hp.as_dict(), "seeds": seeds}
    for lo in range(0, len(seeds), per_pass):
        group = seeds[lo:lo + per_pass]
        done = [os.path.join(resume_dir, f"seed{s}.pt") for s in group]
        if all(os.path.exists(p) for p in done):
            continue
        diverged = None
        log(f"copies {group}: pass {lo // per_pass + 1} of {-(-len(seeds) // per_pass)} (each pass logs its own ETA)")
        try:
            states, history = train_copies(
                spec, [ckpt["state_dict"]] * len(group), group, data, hp, engine, masks=masks,
                resume_path=os.path.join(resume_dir, f"group{'-'.join(map(str, group))}.pt"),
                resume_meta={**job_meta, "group": group}, log=log)
        except DivergedError as e:
            if on_divergence != "record":
                raise
            # The grid goes on; the cell's metrics come out NaN and the figure shows it as missing.
            log(f"recording the cell as diverged: {e}")
            diverged, history, states = str(e), e.history, [ckpt["state_dict"]] * len(group)
        for k, (s, path) in enumerate(zip(group, done)):
            rows = [{"epoch": h.epoch, "lr": h.lr, "train_loss": h.train_loss[k], "train_error": h.train_error[k],
                     "test_loss": h.test_loss[k], "test_error": h.test_error[k]} for h in history]
            save_torch({"meta": {**job_meta, "retrain_seed": s}, "state_dict": states[k], "history": rows,
                        "diverged": diverged}, path)
    save_retrained(resume_dir, seeds, job_meta, meta, hp, ckpt["spec"], masks, out_path, log_path)


def measure_cell(retrained_path: str, out_path: str, data_spec: DataSpec, engine: Engine, what: LandscapeSpec,
                 meta: dict, expect: dict, log=print) -> dict:
    ckpt = load_torch(retrained_path, expect=expect)
    spec, copies = _spec_of(ckpt), ckpt["copies"]
    seeds = sorted(copies)
    achieved = density_of(ckpt["mask"])
    diverged = diverged_landscape(copies, meta, achieved, out_path, log)
    if diverged is not None:
        return diverged
    _, data = device_data(data_spec, engine, augment=False)
    log(f"landscape metrics of {len(seeds)} copies: {what}, {engine.describe()}")
    res = landscape_metrics(spec, {s: copies[s]["state_dict"] for s in seeds}, data, engine, what)
    return save_landscape(res, meta, achieved, out_path, log)
