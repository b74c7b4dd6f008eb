"""Your own network (model.factory) as K copies with the interface of a FusedNetwork.

A factory is a function returning an `nn.Module` that maps images [N, C, H, W] to logits
[N, classes]: 'my_models.py:small_cnn' (a file), 'package.module:function', or any
torchvision classification model ('torchvision.models:resnet18', built untrained).

`GenericNetwork` holds K copies the way the built-in networks do, so training, pruning, SAM,
BatchNorm re-estimation and the landscape metrics use it unchanged:

* every parameter and buffer is stored once for all copies, copy k in block k of its first
  dimension ([K*d0, ...]; a scalar, e.g. num_batches_tracked, as [K]), under the names of
  the user's own module: the optimizer, masks (repeated along dim 0) and SAM's per-copy
  norms see the same layout as in a grouped network, and `copy_state(k)` is an ordinary
  state dict that `MyNet().load_state_dict` accepts;
* the forward pass runs the user's module once per copy with that copy's tensors, all copies
  at once with torch.func (`functional_call` under `vmap`: a convolution of K copies becomes
  one grouped kernel), or, where vmap cannot run the module, one copy after another. Either
  way input and output are a FusedNetwork's: [N, K*C, H, W] -> [N, K, classes]. BatchNorm in
  training mode updates each copy's running statistics in place (the buffers are vmapped
  along with the parameters);
* forward hooks registered on the copies' modules (model.modules(), as BatchNorm
  re-estimation does) fire once per pass with that module's input and output of all copies
  in the fused layout ([N, K*C, ...], copy k in channel block k) and its buffers holding
  every copy, as in a grouped network. A hook's return value is ignored.

Random layers (dropout) draw independently per copy, so a fused run of such a network is not
bitwise K separate runs; everything else is, within float rounding (tests/test_generic_models.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from collections import OrderedDict

import torch
import torch.nn as nn
from torch.func import functional_call, vmap

from .models import FusedNetwork
from .spec.common import ConfigError
from .spec.model import ModelSpec, split_factory


class FactoryError(ConfigError):
    """model.factory cannot build a usable network; the message names the key and the fix."""


_loaded: dict[tuple[str, str], object] = {}


def load_factory(factory: str):
    """The function a factory string names (a file is imported once per content)."""
    where, fn, is_file = split_factory(factory)
    if is_file:
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise FactoryError(f"model.factory: file {where!r} not found (working directory {os.getcwd()})")
        with open(path, "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()[:16]
        module = _loaded.get((path, content))
        if module is None:
            name = f"threeregime_factory_{os.path.splitext(os.path.basename(path))[0]}_{content}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # classes defined there can be pickled and found again
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                sys.modules.pop(name, None)
                raise FactoryError(f"model.factory: importing {where} raised {type(e).__name__}: {e}") from e
            _loaded[(path, content)] = module
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise FactoryError(f"model.factory: cannot import {where!r}: {e}") from e
    build = getattr(module, fn, None)
    if not callable(build):
        raise FactoryError(f"model.factory: {where} has no function {fn!r}")
    return build


def factory_arguments(build, spec: ModelSpec) -> dict:
    """The factory's keyword arguments: model.kwargs, plus num_classes (and in_channels) from
    the data set where the function takes them and the config does not give them.

    num_classes also goes to a function with **kwargs (torchvision's builders pass it on to
    the network); in_channels only to one that names it (torchvision's networks have none).
    """
    kwargs = dict(spec.kwargs)
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        params = {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, value, by_var_kw in (("num_classes", spec.num_classes, True), ("in_channels", spec.in_channels, False)):
        if value is None:
            continue
        if name in kwargs:
            if int(kwargs[name]) != int(value):
                raise FactoryError(f"model.kwargs.{name} is {kwargs[name]} but the data set has {value}: "
                                   f"drop model.kwargs.{name} (it is filled in from the data)")
        elif name in params or (by_var_kw and var_kw):
            kwargs[name] = int(value)
    return kwargs


def build_module(spec: ModelSpec) -> nn.Module:
    """One copy of the user's network, built by its factory (untrained)."""
    build = load_factory(spec.factory)
    kwargs = factory_arguments(build, spec)
    try:
        net = build(**kwargs)
    except Exception as e:
        raise FactoryError(f"model.factory: {spec.factory}(**{kwargs}) raised {type(e).__name__}: {e}; "
                           f"check model.kwargs") from e
    if not isinstance(net, nn.Module):
        raise FactoryError(f"model.factory: {spec.factory} returned a {type(net).__name__}, not a torch.nn.Module: "
                           f"make it return the network")
    return net


def check_output(spec: ModelSpec, image_shape: tuple[int, int, int]) -> None:
    """At job start (planning cannot run torch): the network maps two images of this data
    set's shape (H, W, C) to logits [2, num_classes]."""
    net = build_module(spec)
    h, w, c = image_shape
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, c, h, w))
    except Exception as e:
        raise FactoryError(f"model.factory: {spec.factory} fails on images [N={2}, C={c}, H={h}, W={w}] of this "
                           f"data set: {type(e).__name__}: {e}; make the network take {c}-channel {h}x{w} "
                           f"images (an in_channels argument is filled in from the data)") from e
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FactoryError(f"model.factory: {spec.factory} returned {got} for 2 images; expected logits "
                           f"(2, {spec.num_classes}) for the data set's {spec.num_classes} classes: take a "
                           f"num_classes argument (filled in from the data) or set model.kwargs")


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """K per-copy tensors in the fused layout: copy k in block k of dim 0 (a scalar: entry k)."""
    return torch.stack(tensors) if tensors[0].dim() == 0 else torch.cat(tensors, 0)


class GenericNetwork(FusedNetwork):
    """K copies of a user's module (see the module docstring)."""

    # The training step of a user's module is not captured in a CUDA graph (engine.cuda_graph):
    # capturing vmap'd functional calls has not been measured on a GPU here; eager steps are safe.
    cuda_graphable = False

    def __init__(self, spec: ModelSpec, copies: int = 1, nets: list[nn.Module] | None = None):
        nn.Module.__init__(self)
        self.spec, self.copies = spec, copies
        nets = nets or [build_module(spec) for _ in range(copies)]
        base = nets[0]
        # The copies' module tree is the first copy's own: its submodules, parameters and
        # buffers become this module's (same dicts), so names and hooks are the user's.
        object.__setattr__(self, "_net", base)
        for attr in ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set"):
            object.__setattr__(self, attr, getattr(base, attr))
        self._shapes: dict[str, torch.Size] = {}
        owners = dict(base.named_modules(remove_duplicate=False))
        stacked: dict[int, torch.Tensor] = {}  # id of copy 0's tensor -> its stacked version (tied weights)
        for kind in ("parameters", "buffers"):
            per_copy = [dict(getattr(n, f"named_{kind}")(remove_duplicate=False)) for n in nets]
            for name, t in per_copy[0].items():
                self._shapes[name] = t.shape
                if id(t) not in stacked:
                    data = _stack([p[name].detach() for p in per_copy])
                    stacked[id(t)] = nn.Parameter(data, t.requires_grad) if kind == "parameters" else data
                owner, _, leaf = name.rpartition(".")
                getattr(owners[owner], f"_{kind}")[leaf] = stacked[id(t)]
        self.mode = "vmap"      # or "sequential": set on the first pass vmap cannot run
        self._vmap_ran = False  # until vmap has run once, a failure is undone and falls back

    # --- the per-copy state dicts ------------------------------------------------------------

    def copy_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: t.view(self.copies, *self._shapes[name])[k].clone() for name, t in self.state_dict().items()}

    def load_copies(self, states: list[dict[str, torch.Tensor]]) -> None:
        if len(states) != self.copies:
            raise ValueError(f"expected {self.copies} states, got {len(states)}")
        own = self.state_dict()
        differ = set(own) ^ set(states[0])
        if differ:
            raise ValueError(f"state dict does not match {self.spec.factory}: keys differ: {sorted(differ)[:5]}")
        for name in own:
            if tuple(states[0][name].shape) != tuple(self._shapes[name]):
                raise ValueError(f"state dict does not match {self.spec.factory}: {name} has shape "
                                 f"{tuple(states[0][name].shape)}, the network {tuple(self._shapes[name])}")
        self.load_state_dict({name: _stack([s[name] for s in states]) for name in own})

    def train(self, mode: bool = True):
        super().train(mode)
        self._net.training = mode  # the top-level module is not among this module's children
        return self

    # --- the forward pass ----------------------------------------------------------------------

    def _per_copy(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer as [K, *per-copy shape]: views, so gradients and in-place
        buffer updates reach the stacked tensors."""
        out = {}
        for kind in ("parameters", "buffers"):
            for name, t in getattr(self, f"named_{kind}")(remove_duplicate=False):
                out[name] = t.view(self.copies, *self._shapes[name])
        return out

    def _one(self, tensors: dict, x: torch.Tensor, hooked: list):
        """The user's module on one copy's tensors; records hooked modules' inputs and outputs."""
        seen: dict[str, list] = {}

        def record(name):
            def hook(mod, args, out):
                entry = {"in": args[0]} if args and isinstance(args[0], torch.Tensor) else {}
                if isinstance(out, torch.Tensor):
                    entry["out"] = out
                seen.setdefault(name, []).append(entry)
            return hook

        handles = [m.register_forward_hook(record(name)) for name, m, _ in hooked]
        try:
            out = functional_call(self._net, tensors, (x,), tie_weights=True, strict=True)
        finally:
            for h in handles:
                h.remove()
        return out, seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, K*C, H, W] (copy k's images in channel block k) -> logits [N, K, classes]."""
        xs = x.unflatten(1, (self.copies, -1))                      # [N, K, C, H, W]
        tensors = self._per_copy()
        # The caller's forward hooks leave the modules during the pass and fire after it, on
        # all copies at once (module docstring).
        hooked = [(name, m, m._forward_hooks) for name, m in self._net.named_modules()
                  if m is not self._net and m._forward_hooks]
        for _, m, _ in hooked:
            m._forward_hooks = OrderedDict()
        try:
            out, seen = self._run(tensors, xs, hooked)
        finally:
            for _, m, hooks in hooked:
                m._forward_hooks = hooks
        for name, m, hooks in hooked:
            for call in seen.get(name, []):
                fused = {k: v.movedim(0, 1).flatten(1, 2) if v.dim() > 2 else v.movedim(0, 1).flatten(1)
                         for k, v in call.items()}
                for hook in list(hooks.values()):
                    hook(m, (fused.get("in"),), fused.get("out"))
        return out.movedim(0, 1)                                    # [N, K, classes]

    def _run(self, tensors: dict, xs: torch.Tensor, hooked: list):
        """(logits [K, N, classes], recorded hook tensors [K, ...]) of all copies."""
        fused = vmap(lambda t, x: self._one(t, x, hooked), in_dims=(0, 1), randomness="different")
        if self.mode == "vmap" and self._vmap_ran:
            return fused(tensors, xs)
        if self.mode == "vmap":
            saved = [b.clone() for b in self.buffers()]
            try:
                result = fused(tensors, xs)
                self._vmap_ran = True
                return result
            except Exception as e:  # an operation vmap has no rule for, data-dependent control flow, ...
                with torch.no_grad():
                    for b, s in zip(self.buffers(), saved):  # undo a partial pass's BatchNorm updates
                        b.copy_(s)
                self.mode = "sequential"
                self.fallback_reason = f"{type(e).__name__}: {e}"
                warnings.warn(f"{self.spec.factory}: torch.func.vmap cannot run this module "
                              f"({self.fallback_reason.splitlines()[0][:200]}); its {self.copies} copies run one "
                              f"after another", RuntimeWarning, stacklevel=2)
        outs, seens = [], []
        layout = torch.channels_last if xs.dim() == 5 and xs.flatten(1, 2).is_contiguous(
            memory_format=torch.channels_last) and not xs.flatten(1, 2).is_contiguous() else torch.contiguous_format
        for k in range(self.copies):
            # each copy's images on their own, in the caller's layout: what one model alone would get
            x = xs[:, k].contiguous(memory_format=layout) if xs.dim() == 5 else xs[:, k].contiguous()
            out, seen = self._one({n: t[k] for n, t in tensors.items()}, x, hooked)
            outs.append(out)
            seens.append(seen)
        seen = {name: [{key: torch.stack([s[name][i][key] for s in seens]) for key in calls[i]}
                       for i in range(len(calls))] for name, calls in seens[0].items()}
        return torch.stack(outs), seen

    def describe(self) -> str:
        how = ("fused with torch.func.vmap" if self.mode == "vmap"
               else f"one copy after another ({getattr(self, 'fallback_reason', '')})")
        return f"{self.spec.factory}({self.spec.kwargs}) x{self.copies}, {how}"
