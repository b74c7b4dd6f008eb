"""Each artifact's hyperparameters and its path.

  results/dense/<run>/seed<s>/<ckpt>.pt                    dense checkpoint (<ckpt>: epoch<e> or final)
  results/cells/<run>/seed<s>/<ckpt>/<prune>/pruned.pt
  results/cells/<run>/seed<s>/<ckpt>/<prune>/<retrain>/retrained.pt, retrain_log.csv
  results/cells/<run>/seed<s>/<ckpt>/<prune>/<retrain>/landscape_<landscape>.json
  results/studies/<study>/table.parquet, cells.parquet, phase.pdf, phase.png

<run> and <retrain> are a readable prefix plus 8 hex digits of the SHA-256 of the full
hyperparameters (`as_dict`, written beside the artifacts as hparams.json); <prune> (e.g.
uniform_d0.05) and <landscape> (e.g. p11_bn10000_err10000_cka6400) are readable in full.
Where the data lives (data.root, data.download) and how jobs run (engine.*) are not part of
any key. `from_dict` rebuilds a spec from `as_dict`: what a rule passes its job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from .common import digest, fmt
from .data import DataIdentity
from .task import identity_from_dict
from .landscape import LandscapeSpec
from .model import ModelSpec
from .prune import PruneSpec
from .train import TrainSpec


def schedule_key(t: TrainSpec) -> str:
    """The schedule in a path: 'e160' (epochs) or 'it62400' (a fixed number of steps)."""
    return f"it{t.iterations}" if t.iterations else f"e{t.epochs}"


def approx_epochs(t: TrainSpec, n_train: int = 50000) -> int:
    """Epochs of a schedule, for runtime requests (iteration schedules: on n_train images)."""
    if t.iterations:
        return max(1, math.ceil(t.iterations * t.batch_size / n_train))
    return t.epochs


@dataclass(frozen=True)
class DenseRun:
    """One dense training run per seed; its checkpoints are its temperatures. `model` has no
    data shape (in_channels, num_classes): the job takes it from the data set (ModelSpec.for_data)."""

    data: DataIdentity  # or a CorpusIdentity (translation): threeregime.spec.task
    model: ModelSpec
    train: TrainSpec
    checkpoint_every: int = 10  # epochs per segment (epoch schedules); each segment is one job

    def as_dict(self) -> dict:
        return {"data": self.data.as_dict(), "model": self.model.identity(), "train": self.train.as_dict(),
                "checkpoint_every": self.checkpoint_every}

    @staticmethod
    def from_dict(d: dict) -> "DenseRun":
        # the task owning the data's name rebuilds its identity (DataIdentity, CorpusIdentity)
        return DenseRun(identity_from_dict(d["data"]), ModelSpec.from_identity(d["model"]),
                        TrainSpec.from_dict(d["train"]), d["checkpoint_every"])

    @cached_property  # a hash of all hyperparameters: computed once per (frozen) instance
    def key(self) -> str:
        t = self.train
        opt = t.optimizer + (f"{fmt(t.rho)}" if t.optimizer == "sam" else "")
        return (f"{self.data.key()}_{self.model.run_label}_{opt}_"
                f"bs{t.batch_size}_{schedule_key(t)}-{digest(self.as_dict())}")

    @staticmethod
    def data_key_of(run_key: str) -> str:
        """The DataIdentity key a run key starts with (data keys have no '_': DataIdentity.key),
        so a job reads where its data lives from the run's wildcard alone."""
        return run_key.split("_", 1)[0]

    def checkpoints(self) -> list[str]:
        """The checkpoint names this run saves, in order (each one job, from the one before)."""
        if self.train.iterations:
            return ["final"]
        return [f"epoch{e}" for e in range(self.checkpoint_every, self.train.epochs + 1, self.checkpoint_every)]

    def previous(self, ckpt: str) -> str | None:
        names = self.checkpoints()
        i = names.index(ckpt)
        return names[i - 1] if i else None

    def final(self) -> str:
        return self.checkpoints()[-1]

    def segment_epochs(self, ckpt: str) -> int:
        """Epochs a segment job trains (approximate for iteration schedules: 50,000 images)."""
        return approx_epochs(self.train) if self.train.iterations else self.checkpoint_every


@dataclass(frozen=True)
class RetrainSpec:
    """The retraining of a cell's copies: one copy per seed, all from the same pruned weights.
    `decode` is how a translation study's copies are evaluated (BLEU of the validation set
    decoded by beam search, "beam<k>"); "" means the task's default (greedy for translation;
    image tasks do not decode), so only another decode is part of the key."""

    train: TrainSpec
    seeds: tuple[int, ...] = (1, 2, 3)
    decode: str = ""

    def as_dict(self) -> dict:
        d = {"train": self.train.as_dict(), "seeds": list(self.seeds)}
        if self.decode:
            d["decode"] = self.decode
        return d

    @staticmethod
    def from_dict(d: dict) -> "RetrainSpec":
        return RetrainSpec(TrainSpec.from_dict(d["train"]), tuple(int(s) for s in d["seeds"]), d.get("decode", ""))

    @cached_property  # a hash of all hyperparameters: computed once per (frozen) instance
    def key(self) -> str:
        t = self.train
        return f"{t.optimizer}_bs{t.batch_size}_{schedule_key(t)}_x{len(self.seeds)}-{digest(self.as_dict())}"


@dataclass(frozen=True)
class CellSpec:
    """Everything that makes one cell's metrics (one dense seed)."""

    run: DenseRun
    seed: int
    ckpt: str
    prune: PruneSpec
    retrain: RetrainSpec
    landscape: LandscapeSpec

    @property
    def dense_path(self) -> str:
        return dense_path(self.run.key, self.seed, self.ckpt)

    @property
    def cell_dir(self) -> str:
        return cell_dir(self.run.key, self.seed, self.ckpt, self.prune.key)

    @property
    def retrain_dir(self) -> str:
        return f"{self.cell_dir}/{self.retrain.key}"

    @property
    def landscape_path(self) -> str:
        return f"{self.retrain_dir}/landscape_{self.landscape.key}.json"


def dense_path(run: str, seed, ckpt: str) -> str:
    return f"results/dense/{run}/seed{seed}/{ckpt}.pt"


def cell_dir(run: str, seed, ckpt: str, prune: str) -> str:
    return f"results/cells/{run}/seed{seed}/{ckpt}/{prune}"


def study_dir(study: str) -> str:
    return f"results/studies/{study}"
