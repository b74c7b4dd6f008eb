"""The training loop of K model copies at once (one grouped network, see models.py).

Each copy has its own data order and augmentation (its own generator), its own BatchNorm
statistics and its own optimizer state (threeregime.steps). `train_copies` runs the epochs,
keeps the resume state (a killed job continues bitwise where it stopped) and logs each epoch
with its ETA. The step loop never synchronises with the host: per-epoch sums stay on the
device and are read once at the end of the epoch.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .checkpoints import CheckpointError, load_torch, save_torch
from .data import DeviceData
from .engine import Engine, build_model, evaluate, stacked_masks
from .graphed import GraphedStep, first_compiled_step
from .models import FusedNetwork
from .spec.common import resolve
from .spec.model import ModelSpec
from .spec.train import OPTIMIZERS, TrainSpec


class DivergedError(RuntimeError):
    """Training loss became NaN or infinite; `history` holds the epochs up to it."""

    def __init__(self, message: str, history: list | None = None):
        super().__init__(message)
        self.history = history or []


@dataclass
class EpochRecord:
    epoch: int
    lr: float  # the lr at the epoch's first step
    train_loss: list[float]
    train_error: list[float]
    test_loss: list[float]
    test_error: list[float]


def clock(seconds: float) -> str:
    """Seconds as h:mm:ss, e.g. 3725.4 -> '1:02:05' (for ETAs in job logs)."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _values(xs) -> str:
    return " ".join(f"{v:.4f}" for v in xs)


def epoch_line(rec: EpochRecord, total: int, seconds: float, mean_seconds: float, left: int) -> str:
    """One job-log line per epoch: the epoch, its lr, each copy's train loss/error and test error,
    this epoch's seconds, and the time this job still needs (`left` epochs at the mean so far)."""
    return (f"epoch {rec.epoch}/{total} lr {rec.lr:.4g} train loss {_values(rec.train_loss)} "
            f"train err {_values(rec.train_error)} test err {_values(rec.test_error)} "
            f"{seconds:.1f} s/epoch ETA {clock(left * mean_seconds)}")


def done_line(history: list[EpochRecord], first: int, stop: int, seconds: float) -> str:
    """The job log's summary line once its epochs are trained."""
    ran = stop - first
    if ran:
        span = f"epoch {stop}" if ran == 1 else f"epochs {first + 1}-{stop}"
        head = f"done: {ran} epoch{'s' * (ran != 1)} ({span}) in {clock(seconds)} ({seconds / ran:.1f} s/epoch)"
    else:
        head = "done: no epochs to train"
    if history:
        last = history[-1]
        head += (f"; epoch {last.epoch}: train loss {_values(last.train_loss)} train err "
                 f"{_values(last.train_error)} test err {_values(last.test_error)}")
    return head


def _check_finite(record: EpochRecord, history: list[EpochRecord], seeds) -> None:
    for k, loss in enumerate(record.train_loss):
        if not math.isfinite(loss):
            last = next((h.train_loss[k] for h in reversed(history) if math.isfinite(h.train_loss[k])), None)
            raise DivergedError(f"training diverged: copy with seed {seeds[k]} has train loss {loss} in epoch "
                                f"{record.epoch} (last finite loss: {last}). Lower the learning rate, or set "
                                f"on_divergence: record to record the cell as diverged and finish the grid.",
                                history + [record])


# --- full training state (resume files, segmented runs) -----------------------------------------

def to_cpu(obj):
    """A copy of obj (tensors, dicts, lists, tuples of them) with every tensor on the CPU: what
    a training state is saved as (shared with threeregime.seq2seq.train)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def training_state(model: FusedNetwork, opt, gens: list[torch.Generator], history: list[EpochRecord], epoch: int,
                   meta=None) -> dict:
    """Everything needed to continue training after `epoch` (1-based, completed epochs), as
    CPU copies: {"meta", "epoch", "model" (the fused state dict), "optimizer", "generators",
    "history"}. The format of the resume file, and of train_copies' start_state/state_out."""
    return {"meta": meta, "epoch": int(epoch), "model": to_cpu(model.state_dict()),
            "optimizer": to_cpu(opt.state_dict()), "generators": [g.get_state().clone() for g in gens],
            "history": [asdict(h) for h in history]}


def _load_training_state(st: dict, model: FusedNetwork, opt, gens: list[torch.Generator]):
    """Load a training_state into model, optimizer and generators; returns (history, epoch)."""
    if len(st["generators"]) != len(gens):
        raise ValueError(f"training state holds {len(st['generators'])} copies, this run trains {len(gens)}")
    model.load_state_dict(st["model"])
    # a copy: Optimizer.load_state_dict keeps the given tensors (when already on the right
    # device) as its live state, which would change the caller's start_state in place
    opt.load_state_dict(to_cpu(st["optimizer"]))
    for g, s in zip(gens, st["generators"]):
        g.set_state(s)
    return [EpochRecord(**h) for h in st["history"]], int(st["epoch"])


def train_copies(spec: ModelSpec, init_states: list[dict], seeds: list[int], data: DeviceData,
                 hp: TrainSpec, engine: Engine, masks: dict[str, torch.Tensor] | None = None,
                 on_epoch=None, resume_path: str | None = None, resume_meta: dict | None = None,
                 log=print, start_state: dict | None = None, stop_epoch: int | None = None,
                 state_out: dict | None = None) -> tuple[list[dict], list[EpochRecord]]:
    """Train len(seeds) copies from init_states, each with its own data stream.

    on_epoch(epoch, model, history) runs after every epoch (1-based), e.g. to save checkpoints.
    With resume_path, the full state (training_state: model, optimizer, generators, history)
    is written there atomically after every epoch, and a run finding a state with matching
    resume_meta continues from it.

    Segmented runs: start_state (a training_state, e.g. the state_out of an earlier call)
    continues from its epoch instead of from init_states (a matching resume file still takes
    priority); stop_epoch (1-based, default: the schedule's last) ends the call after that
    epoch; state_out, a dict, receives the training_state at the end. Segments run one after
    the other give bitwise the results of one uninterrupted run (on a deterministic device).
    Returns each copy's state dict and the history of all epochs so far.
    """
    total = hp.total_epochs(data.n_train)
    stop = total if stop_epoch is None else int(stop_epoch)
    if not 0 <= stop <= total:
        raise ValueError(f"stop_epoch must lie in 0..{total} (the schedule's epochs), got {stop_epoch}")
    run = _Run.build(spec, init_states, seeds, data, hp, engine, masks)
    history, start = run.restore(resume_path, resume_meta, start_state, log)
    if start > stop:
        raise ValueError(f"the training state is at epoch {start}, past stop_epoch {stop}")
    started = time.perf_counter()
    for epoch in range(start, stop):
        epoch_started = time.perf_counter()
        epoch_lr = run.train_epoch(epoch, log)
        rec = run.record(epoch, epoch_lr, history, seeds)
        history.append(rec)
        # The test error was read to the host in record(), so on a GPU the epoch's work is finished here.
        now = time.perf_counter()
        log(epoch_line(rec, total, now - epoch_started, (now - started) / (epoch + 1 - start), stop - epoch - 1))
        if on_epoch is not None:
            on_epoch(epoch + 1, run.model, history)
        if resume_path:
            save_torch(training_state(run.model, run.opt, run.gens, history, epoch + 1, resume_meta), resume_path)
    log(done_line(history, start, stop, time.perf_counter() - started))
    if state_out is not None:
        state_out.clear()
        state_out.update(training_state(run.model, run.opt, run.gens, history, stop, resume_meta))
    states = [{k: v.cpu() for k, v in run.model.copy_state(i).items()} for i in range(len(seeds))]
    return states, history


def read_resume_state(resume_path: str | None, resume_meta, log) -> dict | None:
    """The training state in resume_path if there is one, it is readable and it was written for
    `resume_meta` (these hyperparameters); else None, saying why it is ignored. Shared by the
    image loop and the translation loop (threeregime.seq2seq.train)."""
    if not resume_path or not os.path.exists(resume_path):
        return None
    try:
        st = load_torch(resume_path)
    except CheckpointError as e:
        log(f"ignoring unreadable resume state: {e}")
        return None
    if st.get("meta") != resume_meta:
        log(f"ignoring resume state {resume_path}: it was written for other hyperparameters")
        return None
    return st


@dataclass
class _Run:
    """What one call of train_copies trains with: the fused model, its optimizer and step, the
    masks, one generator per copy, and how the step runs (eager, compiled or graphed)."""

    model: FusedNetwork
    opt: torch.optim.Optimizer
    step: Callable
    graphable: bool
    mask_pairs: list
    gens: list
    data: DeviceData
    hp: TrainSpec
    engine: Engine
    sums: torch.Tensor           # per-copy loss and error sums of the epoch; persistent: graphs add to it
    step_model: torch.nn.Module  # the model, or its torch.compile'd module (same parameters)
    compile_pending: bool
    graphed: GraphedStep | None = None

    @staticmethod
    def build(spec, init_states, seeds, data, hp, engine, masks) -> "_Run":
        entry = OPTIMIZERS[hp.optimizer]
        model = build_model(spec, init_states, engine)
        build, step = resolve(entry.build), resolve(entry.step)
        opt = build(model.parameters(), hp)
        mask_pairs = stacked_masks(model, masks, engine.device)
        gens = [torch.Generator(device=engine.device).manual_seed(int(s)) for s in seeds]
        # The compiled module shares the model's parameters; states are read from `model`, so
        # checkpoints keep their keys. Static shapes: the full batches and (epoch schedules) the
        # epoch's last, smaller batch are compiled once each.
        step_model = torch.compile(model, mode=engine.compile, dynamic=False) if engine.compile else model
        sums = torch.zeros(len(seeds), 2, device=engine.device, dtype=torch.float64)
        return _Run(model, opt, step, entry.graphable, mask_pairs, gens, data, hp, engine, sums, step_model,
                    bool(engine.compile))

    def restore(self, resume_path, resume_meta, start_state, log) -> tuple[list[EpochRecord], int]:
        """(history, first epoch): from a resume file written for these hyperparameters, else
        from start_state (a segmented run), else from the start."""
        st = read_resume_state(resume_path, resume_meta, log)
        if st is not None:
            history, start = _load_training_state(st, self.model, self.opt, self.gens)
            log(f"resumed from {resume_path} at epoch {start}")
            return history, start
        if start_state is not None:
            history, start = _load_training_state(start_state, self.model, self.opt, self.gens)
            log(f"continuing from a training state at epoch {start}")
            return history, start
        return [], 0

    def _set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def train_epoch(self, epoch: int, log) -> float:
        """All optimizer steps of 0-based `epoch`; returns the lr of its first step."""
        hp, engine, data = self.hp, self.engine, self.data
        n, B = data.n_train, hp.batch_size
        steps = hp.steps_in_epoch(epoch, n)
        first = epoch * hp.steps_per_epoch(n)
        lr = epoch_lr = hp.lr_at_step(first, n)
        self._set_lr(lr)
        plans = [data.epoch_plan(g) for g in self.gens]
        plan = {key: torch.stack([p[key] for p in plans]) for key in plans[0]}
        self.model.train()
        self.sums.zero_()
        if (engine.cuda_graph and engine.device.type == "cuda" and self.graphable and not engine.compile
                and self.graphed is None and self.model.cuda_graphable):
            def graph_step(p, a, b):
                self.step(self.model, self.opt, self.mask_pairs, data, p, a, b, engine, self.sums,
                          autocast=engine.autocast(cache=False), hp=hp)
            self.graphed = GraphedStep(graph_step, self.opt, plan, B)
        for i in range(steps):
            if hp.per_step and i:
                step_lr = hp.lr_at_step(first + i, n)
                if step_lr != lr:
                    lr = step_lr
                    self._set_lr(lr)
            s = i * B
            if self.graphed is not None and min(s + B, n) - s == B:
                self.graphed(plan, s, lr)
                continue
            self.opt.zero_grad(set_to_none=True)

            def run_step(m, s=s):
                self.step(m, self.opt, self.mask_pairs, data, plan, s, s + B, engine, self.sums, hp=hp)

            if self.compile_pending:
                self.step_model = first_compiled_step(self.step_model, self.model, self.opt, run_step, log)
                self.compile_pending = False
                continue
            run_step(self.step_model)
        return epoch_lr

    def record(self, epoch: int, epoch_lr: float, history: list[EpochRecord], seeds) -> EpochRecord:
        """The epoch's training loss and error (from the device sums) and its test loss and error."""
        n, steps = self.data.n_train, self.hp.steps_in_epoch(epoch, self.data.n_train)
        seen = min(steps * self.hp.batch_size, n)
        train = (self.sums / seen).float().cpu()
        test = evaluate(self.model, self.data.x_test, self.data.y_test, self.data, self.engine).cpu()
        rec = EpochRecord(epoch + 1, epoch_lr, train[:, 0].tolist(), train[:, 1].tolist(),
                          test[:, 0].tolist(), test[:, 1].tolist())
        _check_finite(rec, history, seeds)
        return rec
