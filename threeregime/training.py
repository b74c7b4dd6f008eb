"""Training and evaluation of K model copies at once (one grouped network, see models.py).

Each copy has its own data order and augmentation (its own generator), its own BatchNorm
statistics and its own optimizer state; SGD's update is elementwise, so one optimizer over
the stacked parameters is K independent optimizers. Pruned weights are held at exactly
zero by masking their gradients: with zero weight and zero gradient, weight decay and
momentum contribute exactly zero as well.

The step loop never synchronises with the host: per-epoch sums stay on the device and are
read once at the end of the epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from .checkpoints import CheckpointError, load_torch, save_torch
from .data import DeviceData
from .models import ModelSpec, PreResNet


class DivergedError(RuntimeError):
    """Training loss became NaN or infinite; `history` holds the epochs up to it."""

    def __init__(self, message: str, history: list | None = None):
        super().__init__(message)
        self.history = history or []


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 160
    milestones: tuple[int, ...] = (80, 120)
    gamma: float = 0.1

    def __post_init__(self):
        if self.optimizer != "sgd":
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; allowed: 'sgd'")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based epoch `epoch` (multiplied by gamma at each milestone)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass(frozen=True)
class Engine:
    """How to run on this machine: device, precision, layout, batch sizes."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    channels_last: bool = False
    eval_batch_size: int = 1000
    copies_per_pass: int = 0  # 0: all copies of a job in one fused pass
    compile: str = ""         # a torch.compile mode for the training step ("" = eager); evaluation stays eager

    @staticmethod
    def auto(device: str = "auto", precision: str = "auto", eval_batch_size: int = 0,
             copies_per_pass: int = 0, compile: bool | str = False) -> "Engine":
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
        return Engine(dev, bf16, True, eval_batch_size, copies_per_pass, mode)

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
        return copies if image_hw[0] * image_hw[1] * spec.stage_channels[0] <= 8192 else 1

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
        per_net = self.eval_batch_size * spec.stage_channels[0] * image_hw[0] * image_hw[1] * (2 if self.bf16 else 4)
        return max(1, min(fused, (2 << 30) // per_net))

    def autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return (f"device={self.device} ({name}), bf16={self.bf16}, channels_last={self.channels_last}"
                + (f", torch.compile(mode={self.compile!r})" if self.compile else ""))


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


def build_model(spec: ModelSpec, states: list[dict], engine: Engine) -> PreResNet:
    model = PreResNet(spec, len(states))
    model.load_copies(states)
    model = model.to(engine.device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def stacked_masks(model: PreResNet, masks: dict[str, torch.Tensor] | None, device) -> list[tuple]:
    """(parameter, mask) pairs with the per-model masks repeated for the K copies."""
    if not masks:
        return []
    params = dict(model.named_parameters())
    return [(params[name], m.to(device=device, dtype=params[name].dtype).repeat(model.copies, *([1] * (m.dim() - 1))))
            for name, m in masks.items()]


@torch.no_grad()
def evaluate(model: PreResNet, x_u8: torch.Tensor, y: torch.Tensor, data: DeviceData, engine: Engine,
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
def outputs(model: PreResNet, x_u8: torch.Tensor, data: DeviceData, engine: Engine) -> torch.Tensor:
    """Logits [K, N, classes] of every copy on the same images, eval mode."""
    model.eval()
    chunks = []
    for s in range(0, x_u8.shape[0], engine.eval_batch_size):
        with engine.autocast():
            out = model(shared_input(data.normalize(x_u8[s:s + engine.eval_batch_size]), model.copies))
        chunks.append(out.float())
    return torch.cat(chunks, 0).permute(1, 0, 2)


@torch.no_grad()
def reestimate_bn(model: PreResNet, x_u8: torch.Tensor, data: DeviceData, engine: Engine) -> None:
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


def train_step(model: PreResNet, opt, mask_pairs: list[tuple], data: DeviceData, plan: dict, start: int, stop: int,
               engine: Engine, sums: torch.Tensor, autocast=None) -> None:
    """One SGD step of every copy on positions start:stop of its epoch plan (gradients must
    be zero); adds each copy's summed loss and error count to sums [K, 2], on the device."""
    imgs, labels = data.augmented(plan, start, stop)     # [K, b, H, W, C], [K, b]
    x = to_model_input(data.normalize(imgs), engine.channels_last)
    with autocast or engine.autocast():
        out = model(x).float()                           # [b, K, classes]
    y = labels.t()                                       # [b, K]
    losses = F.cross_entropy(out.permute(0, 2, 1), y, reduction="none")  # [b, K]
    # Sum of the per-copy mean losses: each copy's gradient is its own mean loss's.
    losses.mean(0).sum().backward()
    if mask_pairs:
        torch._foreach_mul_([p.grad for p, _ in mask_pairs], [m for _, m in mask_pairs])
    opt.step()
    with torch.no_grad():
        wrong = (out.argmax(-1) != y).sum(0)
        sums += torch.stack([losses.detach().sum(0), wrong.to(losses.dtype)], 1)


def _first_compiled_step(compiled, model, opt, mask_pairs, data, plan, start, engine, sums, batch, log):
    """Run the first step through torch.compile; if compilation fails (an unsupported
    backend or toolchain), say so and train eagerly: a failed compile updates nothing, the
    gradients are cleared and the step is redone."""
    try:
        train_step(compiled, opt, mask_pairs, data, plan, start, start + batch, engine, sums)
        return compiled
    except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
        log(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); training eagerly. "
            "Set engine.compile: false to skip the attempt.")
        opt.zero_grad(set_to_none=True)
        train_step(model, opt, mask_pairs, data, plan, start, start + batch, engine, sums)
        return model


@dataclass
class EpochRecord:
    epoch: int
    lr: float
    train_loss: list[float]
    train_error: list[float]
    test_loss: list[float]
    test_error: list[float]


def _check_finite(record: EpochRecord, history: list[EpochRecord], seeds) -> None:
    for k, loss in enumerate(record.train_loss):
        if not math.isfinite(loss):
            last = next((h.train_loss[k] for h in reversed(history) if math.isfinite(h.train_loss[k])), None)
            raise DivergedError(f"training diverged: copy with seed {seeds[k]} has train loss {loss} in epoch "
                                f"{record.epoch} (last finite loss: {last}). Lower the learning rate, or set "
                                f"on_divergence: record to record the cell as diverged and finish the grid.",
                                history + [record])


def train_copies(spec: ModelSpec, init_states: list[dict], seeds: list[int], data: DeviceData,
                 hp: TrainSpec, engine: Engine, masks: dict[str, torch.Tensor] | None = None,
                 on_epoch=None, resume_path: str | None = None, resume_meta: dict | None = None,
                 log=print) -> tuple[list[dict], list[EpochRecord]]:
    """Train len(seeds) copies from init_states, each with its own data stream.

    on_epoch(epoch, model, history) runs after every epoch (1-based), e.g. to save checkpoints.
    With resume_path, the full state (model, optimizer, generators, history) is written there
    atomically after every epoch, and a run finding a state with matching resume_meta
    continues from it.
    """
    K = len(seeds)
    model = build_model(spec, init_states, engine)
    opt = torch.optim.SGD(model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    mask_pairs = stacked_masks(model, masks, engine.device)
    gens = [torch.Generator(device=engine.device).manual_seed(int(s)) for s in seeds]
    history: list[EpochRecord] = []
    start = 0
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
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            for g, s in zip(gens, st["generators"]):
                g.set_state(s)
            history = [EpochRecord(**h) for h in st["history"]]
            start = st["epoch"]
            log(f"resumed from {resume_path} at epoch {start}")

    n, B = data.n_train, hp.batch_size
    # The compiled module shares the model's parameters; states are read from `model`, so
    # checkpoints keep their keys. Static shapes: the full batches and the epoch's last
    # (smaller) batch are compiled once each.
    step_model = torch.compile(model, mode=engine.compile, dynamic=False) if engine.compile else model
    compile_pending = bool(engine.compile)
    for epoch in range(start, hp.epochs):
        lr = hp.lr_at(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        plans = [data.epoch_plan(g) for g in gens]
        plan = {key: torch.stack([p[key] for p in plans]) for key in plans[0]}
        model.train()
        sums = torch.zeros(K, 2, device=engine.device, dtype=torch.float64)
        for s in range(0, n, B):
            opt.zero_grad(set_to_none=True)
            if compile_pending:
                step_model = _first_compiled_step(step_model, model, opt, mask_pairs, data, plan, s, engine, sums,
                                                  B, log)
                compile_pending = False
                continue
            train_step(step_model, opt, mask_pairs, data, plan, s, s + B, engine, sums)
        train = (sums / n).float().cpu()
        test = evaluate(model, data.x_test, data.y_test, data, engine).cpu()
        rec = EpochRecord(epoch + 1, lr, train[:, 0].tolist(), train[:, 1].tolist(),
                          test[:, 0].tolist(), test[:, 1].tolist())
        _check_finite(rec, history, seeds)
        history.append(rec)
        log(f"epoch {epoch + 1}/{hp.epochs} lr {lr:.4g} train loss "
            + " ".join(f"{v:.4f}" for v in rec.train_loss)
            + " test err " + " ".join(f"{v:.4f}" for v in rec.test_error))
        if on_epoch is not None:
            on_epoch(epoch + 1, model, history)
        if resume_path:
            save_torch({"meta": resume_meta, "epoch": epoch + 1, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "generators": [g.get_state() for g in gens],
                        "history": [asdict(h) for h in history]}, resume_path)
    states = [{k: v.cpu() for k, v in model.copy_state(i).items()} for i in range(K)]
    return states, history
