"""Pruning masks in torch.nn.utils.prune's format, to take a pruned network elsewhere.

    python -m threeregime.masks export results/cells/<run>/seed1/<ckpt>/<prune>/pruned.pt masks.pt
    python -m threeregime.masks export .../<retrain>/retrained.pt masks.pt --seed 2

writes {"masks": {module name: mask}, "state_dict": ..., "meta": ...}: each mask is the
`mask` argument of torch.nn.utils.prune.custom_from_mask for that module's `weight`, and the
state dict is the network (the pruned one, or with --seed that retrained copy) in the layout
prune gives a module (`<module>.weight_orig` and `<module>.weight_mask` instead of
`<module>.weight`), so

    import torch, torch.nn.utils.prune as prune
    exported = torch.load("masks.pt")
    net = MyNet()                      # the network the checkpoint was trained as
    for name, mask in exported["masks"].items():
        prune.custom_from_mask(net.get_submodule(name), "weight", mask)
    net.load_state_dict(exported["state_dict"])

gives the network with its pruned weights held at zero by prune's forward pre-hook.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .checkpoints import CheckpointError, load_torch, save_torch


def to_torch_prune(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict:
    """(masks by module name, state dict in prune's layout) of a per-model state dict and our
    masks (by weight name, '<module>.weight', boolean)."""
    by_module, out = {}, {}
    for name, mask in masks.items():
        module, _, param = name.rpartition(".")
        if param != "weight" or name not in state:
            raise ValueError(f"mask {name!r} is not the weight of a module of this state dict")
        by_module[module] = mask.to(state[name].dtype)
    for name, t in state.items():
        if name in masks:
            out[f"{name}_orig"] = t.clone()
            out[f"{name}_mask"] = by_module[name.rpartition(".")[0]].clone()
        else:
            out[name] = t
    return {"masks": by_module, "state_dict": out}


def export(checkpoint: str, out_path: str, seed: int | None = None) -> dict:
    """Export a pruned.pt (or one copy of a retrained.pt) of this project to `out_path`."""
    ckpt = load_torch(checkpoint)
    if "mask" not in ckpt:
        raise ValueError(f"{checkpoint} has no pruning mask: give a pruned.pt or retrained.pt of this project")
    if "copies" in ckpt:
        seeds = sorted(ckpt["copies"])
        if seed is None or seed not in ckpt["copies"]:
            raise ValueError(f"{checkpoint} holds the retrained copies {seeds}: choose one with --seed")
        state = ckpt["copies"][seed]["state_dict"]
    else:
        if seed is not None:
            raise ValueError(f"{checkpoint} is a pruned network with no copies: drop --seed")
        state = ckpt["state_dict"]
    result = to_torch_prune(state, ckpt["mask"])
    result["meta"] = {"from": checkpoint, "seed": seed, "spec": ckpt.get("spec"),
                      "use": "torch.nn.utils.prune.custom_from_mask(net.get_submodule(name), 'weight', mask) for "
                             "each of masks, then net.load_state_dict(state_dict)"}
    save_torch(result, out_path)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m threeregime.masks", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="masks and weights in torch.nn.utils.prune's format")
    e.add_argument("checkpoint", help="a pruned.pt or retrained.pt of this project")
    e.add_argument("out", help="the file to write (.pt)")
    e.add_argument("--seed", type=int, help="for a retrained.pt: which retrained copy's weights")
    a = p.parse_args(argv)
    try:
        res = export(a.checkpoint, a.out, a.seed)
    except (CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: masks of {len(res['masks'])} modules in torch.nn.utils.prune's format")
    return 0


if __name__ == "__main__":
    sys.exit(main())
