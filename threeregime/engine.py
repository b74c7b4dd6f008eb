"""How a fused network runs on this machine: the Engine (device, precision, memory layout,
batch sizes), building a fused model, and the forward-only passes (evaluation, outputs,
BatchNorm re-estimation) that training and the landscape metrics share."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .data import DeviceData
from .models import FusedNetwork, build_network
from .spec.landscape import BN_BATCH, BN_ESTIMATES
from .spec.model import ModelSpec


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


class _Moments:
    """One BatchNorm layer's running estimate over the normalization batches seen so far,
    in float64: `accurate` keeps the count, mean and sum of squared deviations of all values
    (Chan et al.'s pairwise update, exact whatever the split into batches); `upstream` keeps
    the batch-size-weighted sums of the per-batch means and unbiased variances."""

    def __init__(self, estimate: str):
        self.estimate = estimate
        self.values = 0      # values per channel so far (images x spatial positions)
        self.images = 0
        self.mean = self.m2 = None

    def add(self, images: int, values: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        """A stack of equal batches of `images` images (`values` values per channel each):
        their means and sums of squared deviations, [batches, C] float64."""
        batches = mean.shape[0]
        if self.estimate == "upstream":
            if values < 2:
                raise ValueError(f"BatchNorm re-estimation (bn_estimate upstream): a batch of {images} image(s) has "
                                 f"{values} value per channel, so its unbiased variance is undefined; use an image "
                                 f"count that does not leave one image in the last batch of {BN_BATCH}")
            mean_sum, var_sum = images * mean.sum(0), images * (m2 / (values - 1)).sum(0)
            if self.mean is None:
                self.mean, self.m2 = mean_sum, var_sum
            else:
                self.mean, self.m2 = self.mean + mean_sum, self.m2 + var_sum
            self.images += images * batches
            return
        # Pool the stack first (all batches have `values` values), then merge it into the total.
        n = values * batches
        stack_mean = mean.mean(0)
        stack_m2 = m2.sum(0) + values * (mean - stack_mean).square().sum(0)
        if self.mean is None:
            self.values, self.mean, self.m2 = n, stack_mean, stack_m2
            return
        total = self.values + n
        delta = stack_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + stack_m2 + delta.square() * (self.values * n / total)
        self.values = total

    def running(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(running_mean, running_var) as BatchNorm uses them in eval mode."""
        if self.estimate == "upstream":
            return self.mean / self.images, self.m2 / self.images
        return self.mean, self.m2 / max(self.values - 1, 1)


def _normalize_in_batches(bn: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor, out: torch.Tensor,
                          moments: _Moments, scratch: dict) -> torch.Tensor:
    """Write into `out` what `bn` computes in train mode on x [B, C, *] split into consecutive
    batches of BN_BATCH images (the last may be smaller), each normalized by its own mean and
    biased variance, and add their moments to `moments`.

    The moments come from x cast to float64 whatever its layout or dtype (the float32 CPU
    kernel in channels_last was off by up to 1.2e-2 in the variance): the batch mean, then the
    sum of squared deviations from it. A few batches at a time go through a float64 scratch
    tensor kept in `scratch` (reused between calls: allocating fresh float64 copies of whole
    activations made the pass 3x slower on a CPU, in page faults). `out` (x's shape, dtype and layout)
    gets x·scale + shift per batch and channel, the scale and shift formed in float64.
    """
    per_image = x[0, 0].numel()
    channel_shape = (x.shape[1],) + (1,) * (x.dim() - 2)
    weight = None if bn.weight is None else bn.weight.detach().double().view(channel_shape)
    bias = None if bn.bias is None else bn.bias.detach().double().view(channel_shape)
    reduce = (1,) + tuple(range(3, x.dim() + 1))  # all but batch and channel of [batches, images, C, *]
    # batches per float64 chunk: within 16 MiB on a CPU (cache- and allocator-friendly), 256 MiB on a GPU
    budget = (256 << 20) if x.device.type == "cuda" else (16 << 20)
    step = BN_BATCH * max(1, budget // (8 * BN_BATCH * x[0].numel()))
    compute = torch.promote_types(x.dtype, torch.float32)
    for start in range(0, x.shape[0], step):
        chunk = x[start:start + step]
        full = chunk.shape[0] // BN_BATCH * BN_BATCH
        parts = [(0, full, BN_BATCH)] if full else []
        if full < chunk.shape[0]:
            parts.append((full, chunk.shape[0], chunk.shape[0] - full))
        for lo, hi, images in parts:
            part = chunk[lo:hi]
            key = (tuple(part.shape), part.stride(), part.device)
            if key not in scratch:
                scratch[key] = torch.empty_like(part, dtype=torch.float64)
            buf = scratch[key]
            buf.copy_(part)
            batches = buf.unflatten(0, (-1, images))
            values = images * per_image
            mean = batches.sum(reduce, keepdim=True) / values
            batches.sub_(mean)
            m2 = batches.square_().sum(reduce, keepdim=True)  # in place: the deviations are not needed again
            moments.add(images, values, mean.flatten(1), m2.flatten(1))
            scale = torch.rsqrt(m2 / values + bn.eps)
            if weight is not None:
                scale = scale * weight
            shift = -mean * scale
            if bias is not None:
                shift = shift + bias
            y = torch.addcmul(shift.to(compute), part.unflatten(0, (-1, images)).to(compute), scale.to(compute))
            out[start + lo:start + hi] = y.flatten(0, 1)
    return out


@torch.no_grad()
def reestimate_bn(model: torch.nn.Module, x_u8: torch.Tensor, data: DeviceData, engine: Engine,
                  estimate: str = "accurate") -> int:
    """Reset the running statistics of every BatchNorm of `model` (any subclass of torch's
    _BatchNorm that tracks them) to statistics of its input over x_u8 (no augmentation) in a
    train-mode pass, and return how many layers it re-estimated (0: no BatchNorm, nothing run;
    a BatchNorm the forward pass does not use keeps its buffers and is not counted).

    In that pass every BatchNorm normalizes consecutive batches of BN_BATCH = 64 images of
    x_u8 by their own statistics, as a train-mode pass in batches of 64 does, whatever
    engine.eval_batch_size (forward passes take a multiple of 64 images), device or layout:
    the statistics, accumulated in float64 from each layer's input, then differ between
    settings only by the float rounding of the convolutions. `estimate` (BN_ESTIMATES):
    "accurate", the mean and unbiased variance of each layer's input over the whole set;
    "upstream", the paper code's average of per-batch means and unbiased variances, weighted
    by batch size, which misses the spread between the batch means in the variance.

    Relies only on model.modules(), the BatchNorms' parameters and buffers, and the forward
    pass of `model` on shared_input(images, model.copies) (1 copy when it has no `copies`).
    """
    if estimate not in BN_ESTIMATES:
        raise ValueError(f"bn_estimate must be one of {', '.join(BN_ESTIMATES)}, got {estimate!r}")
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    moments = {m: _Moments(estimate) for m in bns}

    scratch: dict = {}

    def normalize(mod, inputs, output):
        # Overwrites the kernel's output (run in eval mode, so it neither reduces nor updates buffers).
        return _normalize_in_batches(mod, inputs[0], output, moments[mod], scratch)

    handles = [m.register_forward_hook(normalize) for m in bns]
    copies = getattr(model, "copies", 1)
    step = max(1, engine.eval_batch_size // BN_BATCH) * BN_BATCH
    try:
        model.train()  # the rest of the network (e.g. dropout) as in training
        for m in bns:
            m.eval()
        for s in range(0, x_u8.shape[0], step):
            with engine.autocast():
                model(shared_input(data.normalize(x_u8[s:s + step]), copies))
    finally:
        for h in handles:
            h.remove()
        model.eval()
    seen = [m for m in bns if moments[m].mean is not None]  # a BatchNorm the forward pass never ran keeps its buffers
    for m in seen:
        mean, var = moments[m].running()
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.zero_()
    return len(seen)
