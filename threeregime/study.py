"""A study's hyperparameters (from the validated Snakemake config) and the paths they make.

Paths are keyed by the parameters that made them, OpenLTH-style:

  results/<study>/dense/<model>/<trainer>/seed<s>/epoch<e>.pt
  results/<study>/cells/<model>/<trainer>/<method>/density<d>/epoch<e>/seed<s>/
      pruned.pt  retrain<r>.pt  retrain_log.csv  landscape.json
  results/<study>/table.parquet  cells.parquet  figure2.pdf  figure2.png

<model> is e.g. preresnet20_w1 (depth and width are the 'load' axes beside density),
<trainer> e.g. sgd_bs64 (batch size is a 'temperature' axis beside the epoch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .data import DataSpec
from .models import ModelSpec
from .training import TrainSpec

TRAIN_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "milestones", "gamma")


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what is allowed."""


def fmt(x: float) -> str:
    """Number as it appears in paths: 0.05 -> '0.05', 1.0 -> '1', 64 -> '64'."""
    return f"{float(x):g}"


def trainer_key(train: dict) -> str:
    return f"{train['optimizer']}_bs{train['batch_size']}"


def model_key(model: dict) -> str:
    return f"{model['arch']}{model['depth']}_w{fmt(model['width'])}"


def train_spec(section: dict) -> TrainSpec:
    return TrainSpec(**{k: section[k] for k in TRAIN_KEYS})


def model_spec(model: dict, in_channels: int, num_classes: int) -> ModelSpec:
    return ModelSpec(model["arch"], int(model["depth"]), float(model["width"]), in_channels, num_classes)


def data_spec(data: dict) -> DataSpec:
    return DataSpec(data["name"], data["root"], bool(data["download"]), int(data["crop_padding"]),
                    bool(data["hflip"]))


def checkpoint_epochs(train: dict) -> list[int]:
    every = train["checkpoint_every"]
    return list(range(every, train["epochs"] + 1, every))


def check_config(config: dict) -> None:
    """Cross-field checks the JSON schema cannot express."""
    grid, train, retrain = config["grid"], config["train"], config["retrain"]
    if train["epochs"] % train["checkpoint_every"]:
        raise ConfigError(f"train.epochs ({train['epochs']}) must be divisible by train.checkpoint_every "
                          f"({train['checkpoint_every']}): checkpoints are the temperatures")
    saved = checkpoint_epochs(train)
    bad = [e for e in grid["epochs"] if e not in saved]
    if bad:
        raise ConfigError(f"grid.epochs {bad} are not saved checkpoints; allowed: {saved} "
                          f"(every train.checkpoint_every = {train['checkpoint_every']} epochs)")
    for key in ("epochs", "densities", "dense_seeds", "retrain_seeds"):
        vals = grid[key]
        if len(set(vals)) != len(vals):
            raise ConfigError(f"grid.{key} has duplicate values: {vals}")
    bad = [d for d in grid["densities"] if not 0.0 < d <= 1.0]
    if bad:
        raise ConfigError(f"grid.densities {bad} are outside (0, 1]")
    if len(grid["retrain_seeds"]) < 2:
        raise ConfigError(f"grid.retrain_seeds needs at least 2 seeds to form pairs, got {grid['retrain_seeds']}")
    for name, sec in (("train", train), ("retrain", retrain)):
        ms = sec["milestones"]
        if list(ms) != sorted(ms) or any(not 0 < m < sec["epochs"] for m in ms):
            raise ConfigError(f"{name}.milestones {ms} must be increasing epochs inside (0, {name}.epochs)")
    try:
        model_spec(config["model"], in_channels=3, num_classes=10)  # ModelSpec validates depth/width
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class Paths:
    """Every file target of a study."""

    root: str  # results/<study>

    def dense(self, model: str, trainer: str, dseed, epoch) -> str:
        return f"{self.root}/dense/{model}/{trainer}/seed{dseed}/epoch{epoch}.pt"

    def dense_partial(self, model: str, trainer: str, dseed) -> str:
        """In-job resume state and not-yet-published checkpoints (not Snakemake outputs)."""
        return f"{self.root}/dense/{model}/{trainer}/seed{dseed}/.partial"

    def cell(self, model: str, trainer: str, method: str, density, epoch, dseed) -> str:
        d = density if isinstance(density, str) else fmt(density)
        return f"{self.root}/cells/{model}/{trainer}/{method}/density{d}/epoch{epoch}/seed{dseed}"

    def table(self) -> str:
        return f"{self.root}/table.parquet"

    def cells_summary(self) -> str:
        return f"{self.root}/cells.parquet"

    def figure(self, ext: str = "pdf") -> str:
        return f"{self.root}/figure2.{ext}"


def parse_trainer_key(key: str, train: dict) -> dict:
    """The training section a <trainer> path segment stands for (its batch size from the key)."""
    opt, _, bs = key.partition("_bs")
    if opt != train["optimizer"] or not bs.isdigit():
        raise ConfigError(f"trainer {key!r} does not match the config (expected like "
                          f"{trainer_key(train)!r}: optimizer {train['optimizer']!r} and a batch size)")
    return {**train, "batch_size": int(bs)}


def parse_model_key(key: str, model: dict) -> dict:
    """The model section a <model> path segment stands for (depth and width from the key)."""
    m = re.fullmatch(r"([a-z]+)(\d+)_w([0-9.]+)", key)
    if not m or m.group(1) != model["arch"]:
        raise ConfigError(f"model {key!r} does not match the config (expected like {model_key(model)!r})")
    return {**model, "depth": int(m.group(2)), "width": float(m.group(3))}


def cell_meta(wildcards) -> dict:
    """The identity of a cell, as stored in (and checked against) its files' metadata."""
    return {"model": wildcards.model, "trainer": wildcards.trainer, "seed": int(wildcards.dseed),
            "epoch": int(wildcards.epoch), "method": wildcards.method, "density": float(wildcards.density)}


def check_data_config(config: dict) -> None:
    """Checks that need the data set (run when the workflow starts, not on a dry-run)."""
    from .data import training_set_size

    n = training_set_size(data_spec(config["data"]))
    for name in ("train", "retrain"):
        bs = config[name]["batch_size"]
        if bs > n:
            raise ConfigError(f"{name}.batch_size = {bs} is larger than the training set ({n} images)")
