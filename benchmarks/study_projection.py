#!/usr/bin/env python
"""Projected device-hours of every study in the config, from rates measured on this machine.

For each study (default: every study of config.yaml that resolves), the script lists the
work the workflow would do for the whole grid, with the same study code the Snakefile uses
(`threeregime.study`): dense runs (one model per seed, all checkpoint segments), retraining
(one job per cell, its seeds as fused copies) and landscape metrics (one job per cell). Work
shared between studies (Figure 12 reuses Figure 2's dense runs, ρ = 0 shares the SGD run) is
counted in each study that needs it, as a user running only that study would pay it.

Rates are measured here, per distinct training configuration (architecture, width, depth,
batch size, optimizer, copies per pass): `threeregime.training.train_copies` on synthetic
uint8 data of the data set's shapes, truncated to --steps steps per epoch, two epochs, the
second timed (the first holds cuDNN autotuning and allocator growth), scaled to the full
epoch (training and test pass). Landscape metrics are timed once per distinct (model, number
of seeds, landscape settings) with `threeregime.landscape.landscape_metrics` on the full-size
synthetic set. Per-job overhead (a fresh Python process importing torch and the library and
initialising the device) is measured once and charged to every job.

  python benchmarks/study_projection.py                       # every study of config.yaml
  python benchmarks/study_projection.py --studies epochs_density,batch_density --steps 30

Translation studies (Figure 14) are projected from training rates in target tokens per second
(benchmarks/translation_speed.py measures them at Transformer-base size, dense and retraining):

  python benchmarks/study_projection.py --studies wmt14_epochs_density \
      --tokens-per-s 90000 --retrain-tokens-per-s 90000 --tokens-per-pair 29

Its work: the dense run's epochs, every cell's retraining (seeds x retrain epochs), each over
train_pairs x tokens-per-pair target tokens (train_pairs 0: WMT14 de-en's 4,508,785 pairs, the
toy corpus's toy_train), and the LMC/CKA of each cell: `points` teacher-forced passes over
error_samples pairs per pair of copies, forward only, charged at a third of the retraining
rate. Not charged: each job's BLEU decode of the validation set (greedy on newstest2013's
3,000 sentences: about 1 % of an epoch of the 1.28 M pairs) and the vocabulary job.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace

import numpy as np
import torch

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

from threeregime import landscape  # noqa: E402
from threeregime.plan import load_plan  # noqa: E402
from threeregime.spec.identity import DenseRun, approx_epochs  # noqa: E402
from threeregime.spec.train import TrainSpec  # noqa: E402
from threeregime.study import Study  # noqa: E402
from threeregime.data import CIFAR_MEAN, CIFAR_STD, DeviceData, from_arrays  # noqa: E402
from threeregime.models import build_network  # noqa: E402
from threeregime.spec.model import ModelSpec  # noqa: E402
from threeregime.training import train_copies  # noqa: E402
from threeregime.engine import Engine  # noqa: E402

# Image counts and classes of the data sets the studies name (train, test, classes).
SHAPES = {"cifar10": (50000, 10000, 10), "cifar100": (50000, 10000, 100), "svhn": (73257, 26032, 10)}


def log(*a):
    print(*a, flush=True)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def synthetic(name: str, n_train: int | None = None, n_test: int | None = None):
    tr, te, classes = SHAPES[name]
    n_train, n_test = n_train or tr, n_test or te
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, classes, n_train + n_test)
    return from_arrays(x[:n_train], y[:n_train], x[n_train:], y[n_train:], where="synthetic",
                       mean=CIFAR_MEAN, std=CIFAR_STD)


def model_of(run: DenseRun, classes: int) -> ModelSpec:
    return replace(run.model, in_channels=3, num_classes=classes)


def work_of(study: Study) -> dict:
    """Model-epochs per training configuration, landscape cells per configuration, job counts."""
    dense = defaultdict(float)   # (data, model, batch, optimizer, rho, copies) -> model-epochs
    retrain = defaultdict(float)
    lmc = defaultdict(int)       # (data, model, seeds, landscape) -> cells
    jobs = defaultdict(int)
    dense_seen, cells_seen = set(), set()
    for _, _, cell in study.cells():
        run, data = cell.run, cell.run.data.name
        n_train = SHAPES[data][0]
        model = model_of(run, SHAPES[data][2])
        if (run.key, cell.seed) not in dense_seen:
            dense_seen.add((run.key, cell.seed))
            epochs = approx_epochs(run.train, n_train) if run.train.iterations else run.train.epochs
            dense[(data, model, run.train.batch_size, run.train.optimizer, run.train.rho, 1)] += epochs
            jobs["dense"] += len(run.checkpoints())
        if cell.retrain_dir in cells_seen:
            continue
        cells_seen.add(cell.retrain_dir)
        r = cell.retrain.train
        k = len(cell.retrain.seeds)
        epochs = approx_epochs(r, n_train) if r.iterations else r.epochs
        retrain[(data, model, r.batch_size, r.optimizer, r.rho, k)] += k * epochs
        lmc[(data, model, k, cell.landscape)] += 1
        jobs["prune"] += 1  # at most: prune jobs are per (dense checkpoint, density), shared by retrain specs
        jobs["retrain"] += 1
        jobs["landscape"] += 1
    return {"dense": dense, "retrain": retrain, "lmc": lmc, "jobs": jobs}


def time_training(key, engine: Engine, steps: int) -> float:
    """Seconds per model-epoch (full epoch, training + test pass) of one configuration."""
    data_name, model, batch, optimizer, rho, k = key
    tr, te, _ = SHAPES[data_name]
    n = min(tr, steps * batch)
    ds = synthetic(data_name, n, max(1, round(te * n / tr)))
    data = DeviceData(ds, engine.device, 4, True)
    hp = TrainSpec(epochs=2, batch_size=batch, optimizer=optimizer, rho=rho, milestones=())
    torch.manual_seed(0)
    init = build_network(model, 1).copy_state(0)
    marks = []

    def on_epoch(epoch, _model, _history):
        sync(engine.device)
        marks.append(time.perf_counter())

    sync(engine.device)
    marks.append(time.perf_counter())
    train_copies(model, [init] * k, list(range(1, k + 1)), data, hp, engine, on_epoch=on_epoch, log=lambda *a: None)
    epoch2 = marks[2] - marks[1]
    return epoch2 * (tr / n) / k


def time_landscape(key, engine: Engine, full: dict) -> float:
    """Seconds for one cell's landscape_metrics."""
    data_name, model, k, what = key
    if data_name not in full:
        full[data_name] = DeviceData(synthetic(data_name), engine.device)
    torch.manual_seed(0)
    states = {s: build_network(model, 1).copy_state(0) for s in range(1, k + 1)}
    landscape.landscape_metrics(model, states, full[data_name], engine, replace(what, points=3))  # warm-up
    sync(engine.device)
    t0 = time.perf_counter()
    landscape.landscape_metrics(model, states, full[data_name], engine, what)
    sync(engine.device)
    return time.perf_counter() - t0


def job_overhead(device: str) -> float:
    """Seconds a job spends before work: Python start, imports, device initialisation (median of 3)."""
    code = ("import torch, threeregime.pipeline, threeregime.study; "
            f"torch.zeros(1, device={device!r}).sum().item()")
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True,
                       env={**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")})
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def describe(key) -> str:
    data_name, model, batch, optimizer, rho, k = key
    opt = f"sam{rho:g}" if optimizer == "sam" else optimizer
    return f"{data_name} {model.arch}{model.depth} w{model.width:g} bs{batch} {opt} K={k}"


# Training pairs of a corpus whose train_pairs is 0 (all kept): WMT14 de-en in Hugging Face datasets.
WMT14_TRAIN_PAIRS = {"de-en": 4_508_785}


def training_pairs(corpus) -> int:
    """The training pairs of a corpus identity (its subsample, else the whole training set)."""
    if corpus.train_pairs:
        return corpus.train_pairs
    if corpus.name == "toy":
        return corpus.toy_train
    if corpus.wmt14_config in WMT14_TRAIN_PAIRS:
        return WMT14_TRAIN_PAIRS[corpus.wmt14_config]
    raise SystemExit(f"the training pairs of WMT14 {corpus.wmt14_config} are not known here: set the study's "
                     f"data.train_pairs to project it")


def translation_work(study: Study, tokens_per_pair: float) -> dict:
    """Model-epochs and target tokens of a translation study's whole grid."""
    run = study.base.run
    retrain = study.base.retrain
    pairs = training_pairs(run.data)
    cells = len(study.temperatures) * len(study.loads) * len(study.dense_seeds)
    dense_epochs = run.train.epochs * len(study.dense_seeds)  # one run per seed; its checkpoints are the temperatures
    retrain_epochs = cells * len(retrain.seeds) * retrain.train.epochs
    return {"cells": cells, "dense_epochs": dense_epochs, "retrain_epochs": retrain_epochs,
            "tokens_per_epoch": pairs * tokens_per_pair,
            "jobs": 1 + len(run.checkpoints()) * len(study.dense_seeds) + 3 * cells}


def translation_projection(study: Study, tokens_per_s: float, retrain_tokens_per_s: float, tokens_per_pair: float,
                           overhead_s: float = 0.0) -> dict:
    """Projected hours of a translation study's grid: (dense, retrain, LMC/CKA, overhead, total)."""
    w = translation_work(study, tokens_per_pair)
    dense = w["dense_epochs"] * w["tokens_per_epoch"] / tokens_per_s / 3600
    retrain = w["retrain_epochs"] * w["tokens_per_epoch"] / retrain_tokens_per_s / 3600
    # LMC: `points` teacher-forced passes over error_samples pairs per pair of copies, and CKA:
    # forward-only, about a third of a training step's cost per token
    points, pairs = study.base.landscape.points, len(study.base.retrain.seeds) * (len(study.base.retrain.seeds) - 1) // 2
    lmc_tokens = w["cells"] * pairs * points * study.base.landscape.error_samples * tokens_per_pair
    lmc = lmc_tokens / (3 * retrain_tokens_per_s) / 3600
    over = w["jobs"] * overhead_s / 3600
    return {**w, "dense_h": dense, "retrain_h": retrain, "lmc_h": lmc, "overhead_h": over,
            "total_h": dense + retrain + lmc + over}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configfile", nargs="*", default=[], help="config files merged over config.yaml (as snakemake's)")
    p.add_argument("--studies", default="", help="comma list (default: every study that resolves)")
    p.add_argument("--steps", type=int, default=40, help="training steps per timed epoch")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-landscape", action="store_true", help="skip timing the landscape metrics")
    p.add_argument("--tokens-per-s", type=float, default=0.0,
                   help="translation: dense training rate, target tokens per second (benchmarks/translation_speed.py)")
    p.add_argument("--retrain-tokens-per-s", type=float, default=0.0,
                   help="translation: retraining rate (default: --tokens-per-s)")
    p.add_argument("--tokens-per-pair", type=float, default=29.0,
                   help="translation: mean target tokens per training pair (WMT14 de-en, 32k joint BPE: about 29)")
    a = p.parse_args(argv)

    plan = load_plan(a.configfile, REPO)
    ok, broken = plan.studies, plan.broken
    names = [s for s in a.studies.split(",") if s] or [n for n in ok if n not in plan.derived]
    for n in names:
        if n not in ok:
            raise SystemExit(f"study {n!r} cannot be projected: {broken.get(n, 'not in the config')}")
    engine = Engine.auto(a.device)
    torch.backends.cudnn.benchmark = False
    dev = engine.device
    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    log(f"device: {gpu}; torch {torch.__version__}; engine {engine.describe()}; {a.steps} steps per timed epoch")

    works = {}
    for n in [n for n in names if ok[n].task == "translation"]:
        if not a.tokens_per_s:
            log(f"skip {n}: a translation study; give --tokens-per-s (benchmarks/translation_speed.py measures it)")
            continue
        r = translation_projection(ok[n], a.tokens_per_s, a.retrain_tokens_per_s or a.tokens_per_s, a.tokens_per_pair,
                                   overhead_s=job_overhead(dev.type))
        log(f"{n}: {r['cells']} cells, {r['dense_epochs']} dense + {r['retrain_epochs']} retrain epochs of "
            f"{r['tokens_per_epoch'] / 1e6:.1f}M target tokens at {a.tokens_per_s:,.0f} / "
            f"{a.retrain_tokens_per_s or a.tokens_per_s:,.0f} tokens/s: dense {r['dense_h']:.1f} h, retrain "
            f"{r['retrain_h']:.1f} h, LMC/CKA {r['lmc_h']:.1f} h, job overhead {r['overhead_h']:.2f} h, "
            f"total {r['total_h']:.1f} h")
    names = [n for n in names if ok[n].task != "translation"]
    for n in names:
        if any(c.run.data.name not in SHAPES for _, _, c in ok[n].cells()[:1]):
            log(f"skip {n}: data set {ok[n].base.run.data.name!r} has no known full-size shape")
            continue
        works[n] = work_of(ok[n])

    overhead = job_overhead(dev.type)
    log(f"per-job overhead (python + imports + device init): {overhead:.2f} s")
    rates, lmc_times, full = {}, {}, {}
    for w in works.values():
        for key in [*w["dense"], *w["retrain"]]:
            if key not in rates:
                rates[key] = time_training(key, engine, a.steps)
                log(f"RATE {describe(key):<44s} {rates[key]:8.3f} s per model-epoch")
        if not a.no_landscape:
            for key in w["lmc"]:
                if key not in lmc_times:
                    lmc_times[key] = time_landscape(key, engine, full)
                    m = key[1]
                    log(f"LMC  {key[0]} {m.arch}{m.depth} w{m.width:g} {key[2]} seeds: {lmc_times[key]:8.2f} s per cell")

    unit = "GPU-h" if dev.type == "cuda" else "CPU-h"
    log(f"\n== projected {unit} per study on {gpu} (whole grid, nothing cached)")
    log(f"{'study':<24s} {'dense':>8s} {'retrain':>8s} {'LMC/CKA':>8s} {'jobs':>6s} {'overhead':>8s} {'total':>8s}")
    for n, w in works.items():
        dense = sum(me * rates[k] for k, me in w["dense"].items()) / 3600
        retrain = sum(me * rates[k] for k, me in w["retrain"].items()) / 3600
        lmc = sum(c * lmc_times.get(k, 0.0) for k, c in w["lmc"].items()) / 3600
        njobs = sum(w["jobs"].values())
        over = njobs * overhead / 3600
        log(f"{n:<24s} {dense:8.2f} {retrain:8.2f} {lmc:8.2f} {njobs:6d} {over:8.2f} "
            f"{dense + retrain + lmc + over:8.2f}")


if __name__ == "__main__":
    main()
