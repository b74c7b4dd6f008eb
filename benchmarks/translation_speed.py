"""Tokens per second of the translation training step at Transformer-base size (issue 24).

Dense training and retraining (uniform 5 % masks on the attention and feed-forward weights,
zeroed gradients and re-masked weights every step) through the library's own step,
threeregime.seq2seq.train.train_step, with Adam (betas 0.9/0.98, eps 1e-9), label smoothing
0.1 and dropout 0.1. Batches are random token ids of a realistic shape: `--sentences` pairs of
`--length` tokens a side (default 128 x 32 = 4,096 target tokens), vocabulary `--vocab`
(default 32,000). One warm-up step, then `--steps` timed steps; the rate counts target
(non-pad) tokens. Runs on CPU and, when one is at hand, on CUDA (Engine.auto: bf16 autocast).

  python benchmarks/translation_speed.py                 # Transformer-base, CPU (+ CUDA if present)
  python benchmarks/translation_speed.py --depth 2 --width 0.125 --vocab 200   # the toy demo's model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from threeregime.engine import Engine  # noqa: E402
from threeregime.pipeline import prune_state  # noqa: E402
from threeregime.seq2seq.train import build_optimizer, build_transformer, mask_pairs_of, train_step  # noqa: E402
from threeregime.seq2seq.vocab import BOS, EOS  # noqa: E402
from threeregime.spec.model import ModelSpec, transformer_dims  # noqa: E402
from threeregime.spec.train import TrainSpec  # noqa: E402


def batch(sentences: int, length: int, vocab: int, device, gen) -> tuple[torch.Tensor, torch.Tensor]:
    body = torch.randint(4, vocab, (sentences, length - 1), generator=gen)
    src = torch.cat([body, torch.full((sentences, 1), EOS)], 1)
    tgt = torch.cat([torch.full((sentences, 1), BOS), torch.randint(4, vocab, (sentences, length - 2), generator=gen),
                     torch.full((sentences, 1), EOS)], 1)
    return src.to(device), tgt.to(device)


def rate(spec, engine: Engine, masks, args) -> float:
    """Target tokens per second of `args.steps` steps after one warm-up step."""
    torch.manual_seed(0)
    model = build_transformer(spec, None, engine).train()
    if masks:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, m in masks.items():
                params[name].mul_(m.to(engine.device, params[name].dtype))
    hp = TrainSpec(optimizer="adam", lr=7e-4, weight_decay=0.0, batch_size=args.sentences, epochs=1, milestones=(),
                   schedule="inverse_sqrt", warmup=4000, label_smoothing=0.1)
    opt = build_optimizer(model.parameters(), hp)
    pairs = mask_pairs_of(model, masks, engine.device)
    gen = torch.Generator().manual_seed(1)
    batches = [batch(args.sentences, args.length, spec.num_classes, engine.device, gen) for _ in range(args.steps + 1)]
    tokens = 0
    for i, (src, tgt) in enumerate(batches):
        if i == 1:
            if engine.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        sums = train_step(model, opt, src, tgt, hp.label_smoothing, pairs, engine)
        if i:
            tokens += int(sums[2])  # a host read per step: the rate includes it, as the loop's per-epoch read
    if engine.device.type == "cuda":
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - start)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--sentences", type=int, default=128)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--devices", default="auto", help="comma list of cpu, cuda; auto: cpu and cuda if present")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = ModelSpec("transformer", args.depth, args.width, None, None).for_data(0, args.vocab)
    d_model, ffn, heads = transformer_dims(args.width)
    params = sum(p.numel() for p in build_transformer(spec, None, Engine()).parameters())
    state = build_transformer(spec, None, Engine()).copy_state(0)
    _, masks = prune_state(state, spec, args.density, "uniform", ("linear",))
    devices = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if args.devices == "auto" \
        else args.devices.split(",")
    print(f"Transformer {args.depth}+{args.depth} layers, d_model {d_model}, ffn {ffn}, {heads} heads, vocab "
          f"{args.vocab}: {params / 1e6:.1f} M parameters; batch {args.sentences} x {args.length} tokens "
          f"({args.sentences * (args.length - 1)} target tokens), {args.steps} timed steps after 1 warm-up; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'device':<28} {'mode':<22} {'tokens/s':>10} {'s/step':>8}")
    for dev in devices:
        engine = Engine.auto(dev)
        name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
        for mode, m in (("dense training", None), (f"retraining (d={args.density:g})", masks)):
            r = rate(spec, engine, m, args)
            print(f"{name + (' bf16' if engine.bf16 else ''):<28} {mode:<22} {r:>10.0f} "
                  f"{args.sentences * (args.length - 1) / r:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
