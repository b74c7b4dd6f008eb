"""One training step per optimizer, with the signature the loop calls (training.train_copies).

SGD's and Adam's updates are elementwise, so one optimizer over the stacked parameters of K
copies is K independent optimizers; SAM takes each copy's ascent step with that copy's own
gradient norm. Pruned weights are held at exactly zero by masking their gradients: with zero
weight and zero gradient, weight decay, momentum and Adam's moments contribute exactly zero
as well. The registry naming these functions is threeregime.spec.train.OPTIMIZERS.
The step never synchronises with the host: per-epoch sums stay on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import DeviceData
from .engine import Engine, to_model_input
from .models import FusedNetwork
from .spec.train import TrainSpec


def _batch(data: DeviceData, plan: dict, start: int, stop: int, engine: Engine):
    """Positions start:stop of every copy's epoch plan as model input [b, K*C, H, W] and labels [b, K]."""
    imgs, labels = data.augmented(plan, start, stop)     # [K, b, H, W, C], [K, b]
    return to_model_input(data.normalize(imgs), engine.channels_last), labels.t()


def _loss_backward(model, x: torch.Tensor, y: torch.Tensor, engine: Engine, autocast=None,
                   label_smoothing: float = 0.0):
    """Forward and backward of the sum of the per-copy mean losses (so each copy's gradient is
    that of its own mean loss); returns the logits [b, K, classes] and losses [b, K]."""
    with autocast or engine.autocast():
        out = model(x).float()                           # [b, K, classes]
    losses = F.cross_entropy(out.permute(0, 2, 1), y, reduction="none", label_smoothing=label_smoothing)  # [b, K]
    losses.mean(0).sum().backward()
    return out, losses


def _smoothing(hp: TrainSpec | None) -> float:
    return hp.label_smoothing if hp is not None else 0.0


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
    out, losses = _loss_backward(model, x, y, engine, autocast, _smoothing(hp))
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
    out, losses = _loss_backward(model, x, y, engine, autocast, _smoothing(hp))
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
        _loss_backward(model, x, y, engine, autocast, _smoothing(hp))
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
