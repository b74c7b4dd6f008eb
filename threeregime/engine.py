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
