"""Training and evaluation of K model copies at once (one grouped network, see models.py).

Each copy has its own data order and augmentation (its own generator), its own BatchNorm
statistics and its own optimizer state; SGD's and Adam's updates are elementwise, so one
optimizer over the stacked parameters is K independent optimizers, and SAM takes each copy's
ascent step with that copy's own gradient norm. The optimizers live in OPTIMIZERS (one entry
each: how to build it, how to take a step). Pruned weights are held at exactly zero by
masking their gradients: with zero weight and zero gradient, weight decay, momentum and
Adam's moments contribute exactly zero as well.

The step loop never synchronises with the host: per-epoch sums stay on the device and are
read once at the end of the epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .checkpoints import CheckpointError, load_torch, save_torch
from .data import DeviceData
from .models import FusedNetwork, build_network
from .spec.common import resolve
from .spec.model import ModelSpec
from .spec.train import OPTIMIZERS, TrainSpec


class DivergedError(RuntimeError):
    """Training loss became NaN or infinite; `history` holds the epochs up to it."""

    def __init__(self, message: str, history: list | None = None):
        super().__init__(message)
        self.history = history or []


@dataclass(frozen=True)
class Engine:
    """How to run on this machine: device, precision, layout, batch sizes."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    channels_last: bool = False
    eval_batch_size: int = 1000
    copies_per_pass: int = 0  # 0: all copies of a job in one fused pass
    compile: str = ""         # a torch.compile mode for the training step ("" = eager); evaluation stays eager
    cuda_graph: bool = False  # capture the training step in a CUDA graph and replay it (CUDA only)

    @staticmethod
    def auto(device: str = "auto", precision: str = "auto", eval_batch_size: int = 0,
             copies_per_pass: int = 0, compile: bool | str = False, cuda_graph: bool = True) -> "Engine":
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        bf16 = (precision == "bf16") or (precision == "auto" and dev.type == "cuda")
        # channels_last everywhere: grouped convolutions on CPU (oneDNN) were 1.5-2.9x faster
        # with it in benchmarks/retrain_benchmark.py, and it is cuDNN's fast layout.
        mode = "default" if compile is True else (compile or "")
        if not eval_batch_size:
            # Forward-only passes (evaluation, BN re-estimation, LMC): on 2 CPU cores PreResNet-20
            # ran 1.1-1.9x faster at batch 100-500 than at 1000 (large activations thrash the
            # allocator); a GPU wants large batches.
            eval_batch_size = 2000 if dev.type == "cuda" else 256
        # CUDA graphs by default on a GPU: the eager step of PreResNet-20 launches ~600 kernels
        # of a few microseconds each and kept an H100 7 % busy; replaying the captured step was
        # 4.9x faster (benchmarks/README.md). torch.compile brings its own graphs (mode
        # reduce-overhead) and is not combined with ours. cuda_graph=False turns them off.
        graph = bool(cuda_graph) and dev.type == "cuda" and not mode
        return Engine(dev, bf16, True, eval_batch_size, copies_per_pass, mode, graph)

    def copies_for(self, spec: ModelSpec, image_hw: tuple[int, int], copies: int) -> int:
        """How many copies to fuse per pass (engine.copies_per_pass, or chosen per device).

        On a GPU one grouped kernel per layer beats K small ones: fuse all. On a CPU, fusing
        pays for small activations only (measured on 2 cores: 1.6-2.3x at PreResNet-20 width
        0.25 and 1.5x on the 8x8 digits demo, but 0.35-0.9x at full width on 32x32 images),
        so fuse when the first stage's activation per image is at most 8,192 values.
        """
        if self.copies_per_pass:
            return min(self.copies_per_pass, copies)
        if self.device.type == "cuda":
            return copies
        return copies if image_hw[0] * image_hw[1] * spec.first_channels <= 8192 else 1

    def nets_per_eval_pass(self, spec: ModelSpec, image_hw: tuple[int, int], nets: int) -> int:
        """How many networks to evaluate as one grouped network in forward-only passes (LMC).

        As copies_for, except that on a GPU one first-stage activation of the grouped network
        (eval batch x nets x channels x H x W, 2-byte bf16 or 4-byte fp32) is kept within
        2 GiB, so wide models or big eval batches do not run out of memory: PreResNet-20 at
        width 1 with batch 2,000 fits 30 networks (a whole cell), at width 4 eight.
        """
        fused = self.copies_for(spec, image_hw, nets)
        if self.device.type != "cuda" or self.copies_per_pass:
            return fused
        per_net = self.eval_batch_size * spec.first_channels * image_hw[0] * image_hw[1] * (2 if self.bf16 else 4)
        return max(1, min(fused, (2 << 30) // per_net))

    def autocast(self, cache: bool = True):
        """bf16 autocast, or nothing. cache=False for CUDA-graph capture: autocast's cache of
        cast weights would be freed at the end of the captured region."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=cache)

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return (f"device={self.device} ({name}), bf16={self.bf16}, channels_last={self.channels_last}"
                + (f", torch.compile(mode={self.compile!r})" if self.compile else "")
                + (", CUDA graph" if self.cuda_graph else ""))


def to_model_input(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """[K, B, C, H, W] float -> [B, K*C, H, W], copy k in channel block k.

    The memory format is fixed explicitly: kernels pick their algorithm by layout, and a
    fused run must compute what K separate runs compute.
    """
    k, b, c, h, w = x.shape
    x = x.permute(1, 0, 2, 3, 4).reshape(b, k * c, h, w)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def shared_input(x: torch.Tensor, copies: int) -> torch.Tensor:
    """The same images [B, C, H, W] for every copy -> [B, K*C, H, W]."""
    return x.repeat(1, copies, 1, 1)


def build_model(spec: ModelSpec, states: list[dict], engine: Engine) -> FusedNetwork:
    model = build_network(spec, len(states))
    model.load_copies(states)
    model = model.to(engine.device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def stacked_masks(model: FusedNetwork, masks: dict[str, torch.Tensor] | None, device) -> list[tuple]:
    """(parameter, mask) pairs with the per-model masks repeated for the K copies."""
    if not masks:
        return []
    params = dict(model.named_parameters())
    return [(params[name], m.to(device=device, dtype=params[name].dtype).repeat(model.copies, *([1] * (m.dim() - 1))))
            for name, m in masks.items()]


@torch.no_grad()
def evaluate(model: FusedNetwork, x_u8: torch.Tensor, y: torch.Tensor, data: DeviceData, engine: Engine,
             limit: int | None = None) -> torch.Tensor:
    """Per-copy [K, 2]: mean loss and error fraction on (x_u8, y) in eval mode, no augmentation."""
    model.eval()
    n = x_u8.shape[0] if limit is None else min(limit, x_u8.shape[0])
    sums = torch.zeros(model.copies, 2, device=engine.device, dtype=torch.float64)
    for s in range(0, n, engine.eval_batch_size):
        xb, yb = x_u8[s:s + engine.eval_batch_size], y[s:s + engine.eval_batch_size]
        with engine.autocast():
            out = model(shared_input(data.normalize(xb), model.copies)).float()
        yk = yb[:, None].expand(-1, model.copies)
        loss = F.cross_entropy(out.permute(0, 2, 1), yk, reduction="none").sum(0)
        wrong = (out.argmax(-1) != yk).sum(0)
        sums += torch.stack([loss, wrong.to(loss.dtype)], 1)
    return (sums / n).float()


@torch.no_grad()
def outputs(model: FusedNetwork, x_u8: torch.Tensor, data: DeviceData, engine: Engine) -> torch.Tensor:
    """Logits [K, N, classes] of every copy on the same images, eval mode."""
    model.eval()
    chunks = []
    for s in range(0, x_u8.shape[0], engine.eval_batch_size):
        with engine.autocast():
            out = model(shared_input(data.normalize(x_u8[s:s + engine.eval_batch_size]), model.copies))
        chunks.append(out.float())
    return torch.cat(chunks, 0).permute(1, 0, 2)


@torch.no_grad()
def reestimate_bn(model: FusedNetwork, x_u8: torch.Tensor, data: DeviceData, engine: Engine) -> None:
    """Reset every BatchNorm's running statistics to the exact statistics of its input over
    the whole of x_u8 (no augmentation), as seen in a train-mode forward pass.

    Per-batch mean/variance are merged with Chan's parallel formula in float64, so the
    result is the set's mean and unbiased variance, whatever the batch sizes (a cumulative
    moving average over equal batches gets the same mean but misses the between-batch part
    of the variance).
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    acc = {}

    def hook(mod, inputs, output):
        # With momentum 1 the running statistics after a train-mode forward are exactly this
        # batch's mean and unbiased variance: read them instead of reducing the input again.
        x = inputs[0]
        nb = x.numel() // x.shape[1]
        mean = mod.running_mean.double()
        var = mod.running_var.double() * ((nb - 1) / nb)  # biased, for the merge
        n, m, m2 = acc.get(mod, (0, 0.0, 0.0))
        if n == 0:
            acc[mod] = (nb, mean, var * nb)
        else:
            tot = n + nb
            delta = mean - m
            acc[mod] = (tot, m + delta * nb / tot, m2 + var * nb + delta ** 2 * n * nb / tot)

    saved = [(m, m.momentum) for m in bns]
    handles = [m.register_forward_hook(hook) for m in bns]
    try:
        for m in bns:
            m.momentum = 1.0
        model.train()
        for s in range(0, x_u8.shape[0], engine.eval_batch_size):
            with engine.autocast():
                model(shared_input(data.normalize(x_u8[s:s + engine.eval_batch_size]), model.copies))
    finally:
        for h in handles:
            h.remove()
        for m, mom in saved:
            m.momentum = mom
    for m in bns:
        n, mean, m2 = acc[m]
        m.running_mean.copy_(mean.float())
        m.running_var.copy_((m2 / max(n - 1, 1)).float())
        m.num_batches_tracked.zero_()
    model.eval()


# --- one training step, per optimizer ---------------------------------------------------------

def _batch(data: DeviceData, plan: dict, start: int, stop: int, engine: Engine):
    """Positions start:stop of every copy's epoch plan as model input [b, K*C, H, W] and labels [b, K]."""
    imgs, labels = data.augmented(plan, start, stop)     # [K, b, H, W, C], [K, b]
    return to_model_input(data.normalize(imgs), engine.channels_last), labels.t()


def _loss_backward(model, x: torch.Tensor, y: torch.Tensor, engine: Engine, autocast=None):
    """Forward and backward of the sum of the per-copy mean losses (so each copy's gradient is
    that of its own mean loss); returns the logits [b, K, classes] and losses [b, K]."""
    with autocast or engine.autocast():
        out = model(x).float()                           # [b, K, classes]
    losses = F.cross_entropy(out.permute(0, 2, 1), y, reduction="none")  # [b, K]
    losses.mean(0).sum().backward()
    return out, losses


def _mask_grads(mask_pairs: list[tuple]) -> None:
    if mask_pairs:
        torch._foreach_mul_([p.grad for p, _ in mask_pairs], [m for _, m in mask_pairs])


@torch.no_grad()
def _add_sums(sums: torch.Tensor, out: torch.Tensor, losses: torch.Tensor, y: torch.Tensor) -> None:
    wrong = (out.argmax(-1) != y).sum(0)
    sums += torch.stack([losses.detach().sum(0), wrong.to(losses.dtype)], 1)


def train_step(model: FusedNetwork, opt, mask_pairs: list[tuple], data: DeviceData, plan: dict, start: int, stop: int,
               engine: Engine, sums: torch.Tensor, autocast=None, hp: TrainSpec | None = None) -> None:
    """One step of every copy with a first-order optimizer (SGD, Adam) on positions start:stop
    of its epoch plan (gradients must be zero or None); adds each copy's summed loss and error
    count to sums [K, 2], on the device."""
    x, y = _batch(data, plan, start, stop, engine)
    out, losses = _loss_backward(model, x, y, engine, autocast)
    _mask_grads(mask_pairs)
    opt.step()
    _add_sums(sums, out, losses, y)


def _bn_buffers(model) -> list[torch.Tensor]:
    return [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]


def sam_step(model: FusedNetwork, opt, mask_pairs: list[tuple], data: DeviceData, plan: dict, start: int, stop: int,
             engine: Engine, sums: torch.Tensor, autocast=None, hp: TrainSpec | None = None) -> None:
    """One SAM step (Foret et al. 2021) of every copy around the SGD optimizer `opt`.

    The loss gradient g at w (masked) gives each copy's ascent e = rho g / ||g||, with ||g||
    the L2 norm over all of that copy's parameters (copy k is block k of dim 0 of every
    parameter); the gradient at w + e (masked) is then applied from w by `opt`. BatchNorm
    running statistics move in the first pass only, and the recorded loss and error are the
    first pass's. With rho == 0 this is exactly train_step.
    """
    x, y = _batch(data, plan, start, stop, engine)
    out, losses = _loss_backward(model, x, y, engine, autocast)
    _mask_grads(mask_pairs)
    if hp is not None and hp.rho > 0:
        K = sums.shape[0]
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        bn = _bn_buffers(model)
        with torch.no_grad():
            grads = [p.grad for p in params]
            sq = torch.stack([g.reshape(K, -1).float().square().sum(1) for g in grads]).sum(0)  # [K]
            scale = hp.rho / sq.sqrt().clamp_min(1e-12)  # a zero gradient gives e = 0
            saved = [p.detach().clone() for p in params]
            bn_saved = [b.clone() for b in bn]
            for p, g in zip(params, grads):
                p.unflatten(0, (K, -1)).add_(g.unflatten(0, (K, -1)) * scale.view(K, *([1] * g.dim())).to(g.dtype))
        opt.zero_grad(set_to_none=True)
        _loss_backward(model, x, y, engine, autocast)
        _mask_grads(mask_pairs)
        with torch.no_grad():
            torch._foreach_copy_(params, saved)
            if bn:
                torch._foreach_copy_(bn, bn_saved)
    opt.step()
    _add_sums(sums, out, losses, y)


def build_sgd(params, hp: TrainSpec):
    return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


def build_adam(params, hp: TrainSpec):
    # weight decay as L2 added to the gradient (torch Adam's weight_decay), as the paper's code
    return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)


def _first_compiled_step(compiled, model, opt, run_step, log):
    """Run the first step, `run_step(step_model)`, through torch.compile; if compilation fails
    (an unsupported backend or toolchain), say so and train eagerly. The model's parameters and
    buffers are restored from a snapshot (a SAM step may fail in its second pass, from w + e),
    the gradients cleared and the step redone; the optimizer and the sums are only touched at
    the end of a step."""
    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        run_step(compiled)
        return compiled
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
        log(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); training eagerly. "
            "Set engine.compile: false to skip the attempt.")
        model.load_state_dict(snapshot)
        opt.zero_grad(set_to_none=True)
        run_step(model)
        return model


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

def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def training_state(model: FusedNetwork, opt, gens: list[torch.Generator], history: list[EpochRecord], epoch: int,
                   meta=None) -> dict:
    """Everything needed to continue training after `epoch` (1-based, completed epochs), as
    CPU copies: {"meta", "epoch", "model" (the fused state dict), "optimizer", "generators",
    "history"}. The format of the resume file, and of train_copies' start_state/state_out."""
    return {"meta": meta, "epoch": int(epoch), "model": _to_cpu(model.state_dict()),
            "optimizer": _to_cpu(opt.state_dict()), "generators": [g.get_state().clone() for g in gens],
            "history": [asdict(h) for h in history]}


def _load_training_state(st: dict, model: FusedNetwork, opt, gens: list[torch.Generator]):
    """Load a training_state into model, optimizer and generators; returns (history, epoch)."""
    if len(st["generators"]) != len(gens):
        raise ValueError(f"training state holds {len(st['generators'])} copies, this run trains {len(gens)}")
    model.load_state_dict(st["model"])
    # a copy: Optimizer.load_state_dict keeps the given tensors (when already on the right
    # device) as its live state, which would change the caller's start_state in place
    opt.load_state_dict(_to_cpu(st["optimizer"]))
    for g, s in zip(gens, st["generators"]):
        g.set_state(s)
    return [EpochRecord(**h) for h in st["history"]], int(st["epoch"])


class _GraphedStep:
    """The full-batch training step captured in a CUDA graph and replayed (engine.cuda_graph).

    Why: eagerly, a fused PreResNet-20 step is ~600 kernel launches of a few microseconds
    each, and the host cannot issue them as fast as an H100 runs them (7 % GPU-busy measured);
    one replay issues them all. How: the step reads its images through static plan buffers
    (this step's slice of every copy's epoch plan is copied in before each replay) and adds
    to a persistent `sums`. The first WARMUP steps run eagerly on a side stream (lazy
    initialisation: optimizer state, cuDNN handles), then the step is captured and replayed.
    SGD bakes the learning rate into its kernels, so a new rate (a milestone) recaptures. A
    capture records without running: the step that triggers it replays right after. Steps of
    another shape (the epoch's last, smaller batch) run eagerly on the same tensors.
    """

    WARMUP = 3

    def __init__(self, run_step, opt, plan: dict, batch: int):
        self.run_step, self.opt, self.B = run_step, opt, batch
        self.static = {k: torch.empty((v.shape[0], batch) + tuple(v.shape[2:]), dtype=v.dtype, device=v.device)
                       for k, v in plan.items()}
        self.graph, self.lr, self.warmup = None, None, self.WARMUP

    def __call__(self, plan: dict, start: int, lr: float) -> None:
        for k, buf in self.static.items():
            buf.copy_(plan[k][:, start:start + self.B])
        if self.graph is not None and lr == self.lr:
            self.graph.replay()
            return
        # The rate changed (or first capture): drop the old graph, which frees its memory
        # pool, then capture into a new one. (Capturing into the pool of a graph that was
        # just freed trips an allocator assertion, seen on an H100 with torch 2.11.)
        self.graph = None
        self.opt.zero_grad(set_to_none=True)
        if self.warmup:
            self.warmup -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.run_step(self.static, 0, self.B)
            torch.cuda.current_stream().wait_stream(side)
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.run_step(self.static, 0, self.B)
        self.graph, self.lr = graph, lr
        graph.replay()


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
    K = len(seeds)
    n, B = data.n_train, hp.batch_size
    total = hp.total_epochs(n)
    stop = total if stop_epoch is None else int(stop_epoch)
    if not 0 <= stop <= total:
        raise ValueError(f"stop_epoch must lie in 0..{total} (the schedule's epochs), got {stop_epoch}")
    entry = OPTIMIZERS[hp.optimizer]
    model = build_model(spec, init_states, engine)
    build, step_fn = resolve(entry.build), resolve(entry.step)
    opt = build(model.parameters(), hp)
    mask_pairs = stacked_masks(model, masks, engine.device)
    gens = [torch.Generator(device=engine.device).manual_seed(int(s)) for s in seeds]
    history: list[EpochRecord] = []
    start = 0
    st = None
    if resume_path and os.path.exists(resume_path):
        try:
            st = load_torch(resume_path)
        except CheckpointError as e:
            log(f"ignoring unreadable resume state: {e}")
            st = None
        if st is not None and st.get("meta") != resume_meta:
            log(f"ignoring resume state {resume_path}: it was written for other hyperparameters")
            st = None
        if st is not None:
            history, start = _load_training_state(st, model, opt, gens)
            log(f"resumed from {resume_path} at epoch {start}")
    if st is None and start_state is not None:
        history, start = _load_training_state(start_state, model, opt, gens)
        log(f"continuing from a training state at epoch {start}")
    if start > stop:
        raise ValueError(f"the training state is at epoch {start}, past stop_epoch {stop}")

    spe = hp.steps_per_epoch(n)
    # The compiled module shares the model's parameters; states are read from `model`, so
    # checkpoints keep their keys. Static shapes: the full batches and (epoch schedules) the
    # epoch's last, smaller batch are compiled once each.
    step_model = torch.compile(model, mode=engine.compile, dynamic=False) if engine.compile else model
    compile_pending = bool(engine.compile)
    sums = torch.zeros(K, 2, device=engine.device, dtype=torch.float64)  # persistent: graphs add to it
    graphed = None
    started = time.perf_counter()
    for epoch in range(start, stop):
        epoch_started = time.perf_counter()
        steps = hp.steps_in_epoch(epoch, n)
        first = epoch * spe
        lr = epoch_lr = hp.lr_at_step(first, n)
        for g in opt.param_groups:
            g["lr"] = lr
        plans = [data.epoch_plan(g) for g in gens]
        plan = {key: torch.stack([p[key] for p in plans]) for key in plans[0]}
        model.train()
        sums.zero_()
        if (engine.cuda_graph and engine.device.type == "cuda" and entry.graphable and not engine.compile
                and graphed is None):
            def graph_step(p, a, b):
                step_fn(model, opt, mask_pairs, data, p, a, b, engine, sums, autocast=engine.autocast(cache=False),
                           hp=hp)
            graphed = _GraphedStep(graph_step, opt, plan, B)
        for i in range(steps):
            if hp.iterations and i:
                step_lr = hp.lr_at_step(first + i, n)
                if step_lr != lr:
                    lr = step_lr
                    for g in opt.param_groups:
                        g["lr"] = lr
            s = i * B
            if graphed is not None and min(s + B, n) - s == B:
                graphed(plan, s, lr)
                continue
            opt.zero_grad(set_to_none=True)

            def run_step(m, s=s):
                step_fn(m, opt, mask_pairs, data, plan, s, s + B, engine, sums, hp=hp)

            if compile_pending:
                step_model = _first_compiled_step(step_model, model, opt, run_step, log)
                compile_pending = False
                continue
            run_step(step_model)
        seen = min(steps * B, n)
        train = (sums / seen).float().cpu()
        test = evaluate(model, data.x_test, data.y_test, data, engine).cpu()
        rec = EpochRecord(epoch + 1, epoch_lr, train[:, 0].tolist(), train[:, 1].tolist(),
                          test[:, 0].tolist(), test[:, 1].tolist())
        _check_finite(rec, history, seeds)
        history.append(rec)
        # The test error was read to the host above, so on a GPU the epoch's work is finished here.
        now = time.perf_counter()
        log(epoch_line(rec, total, now - epoch_started, (now - started) / (epoch + 1 - start), stop - epoch - 1))
        if on_epoch is not None:
            on_epoch(epoch + 1, model, history)
        if resume_path:
            save_torch(training_state(model, opt, gens, history, epoch + 1, resume_meta), resume_path)
    log(done_line(history, start, stop, time.perf_counter() - started))
    if state_out is not None:
        state_out.clear()
        state_out.update(training_state(model, opt, gens, history, stop, resume_meta))
    states = [{k: v.cpu() for k, v in model.copy_state(i).items()} for i in range(K)]
    return states, history
