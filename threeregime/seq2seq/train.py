"""The translation training loop: one Transformer copy at a time.

A cell's copies are trained one after another in the same job (each its own call of
train_translation): fusing copies into one grouped network, as the image loop does, pays for
small convolutions on a CPU; a Transformer's matrix products are large enough on their own,
and its attention has no grouped form in torch.

Adam with Vaswani et al.'s betas (0.9, 0.98) and eps 1e-9 (ADAM_BETAS, ADAM_EPS; weight decay
as TrainSpec.weight_decay, L2 added to the gradient as torch's Adam does), the lr of each step
from TrainSpec.lr_at_step (schedule inverse_sqrt: warm-up then inverse square root),
label-smoothed cross-entropy (TrainSpec.label_smoothing) averaged over the batch's non-pad
target tokens. `batch_size` counts sentence pairs; an epoch is ceil(N / B) steps over a
random permutation (epoch_batches: similar lengths batched together).

Masks (retraining a pruned network): gradients of pruned weights are zeroed before each step
and the weights multiplied by their mask after it, so they stay exactly zero.

After every epoch: lr (of its first step), train loss (label-smoothed, with dropout) and
train token error (teacher-forced argmax, training mode) over the epoch's batches, and on the
validation set, teacher-forced in eval mode: test_loss (plain cross-entropy per token, no
smoothing) and test_error (token error). BLEU of the decoded validation set is computed at
the last epoch of each call only (decoding is costly); other epochs record NaN.

Resume: after every epoch the full state (model, optimizer, step, data-order generator,
torch's RNG, which drives dropout, history) is written atomically to resume_path; a killed job
continues from it bitwise as if uninterrupted (on CPU). start_state/stop_epoch/state_out run a
dense training in segments, as training.train_copies does.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ..checkpoints import save_torch
from ..engine import Engine
from ..spec.model import ModelSpec
from ..spec.task import TASKS
from ..spec.train import TrainSpec
from ..training import DivergedError, clock, read_resume_state, to_cpu
from .bleu import corpus_bleu
from .decode import translate
from .tokens import TokenData, epoch_batches
from .transformer import DROPOUT, Transformer
from .vocab import PAD

ADAM_BETAS = (0.9, 0.98)  # Vaswani et al. 2017, section 5.3
ADAM_EPS = 1e-9
OPTIMIZERS = TASKS["translation"].optimizers  # ("adam",): planning refuses the others


def build_optimizer(params, hp: TrainSpec) -> torch.optim.Optimizer:
    if hp.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: translation trains with {list(OPTIMIZERS)} (Adam with betas {ADAM_BETAS}, "
                         f"eps {ADAM_EPS}), got {hp.optimizer!r}")
    return torch.optim.Adam(params, lr=hp.lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=hp.weight_decay)


def build_transformer(spec: ModelSpec, state: dict | None, engine: Engine, dropout: float = DROPOUT) -> Transformer:
    model = Transformer(spec, 1, dropout)
    if state is not None:
        model.load_copies([state])
    return model.to(engine.device)


def token_sums(model: Transformer, src: torch.Tensor, tgt: torch.Tensor, label_smoothing: float = 0.0):
    """Summed loss, wrong-token count and token count of one batch, teacher-forced: tensors."""
    logits = model(src, tgt[:, :-1]).float()
    target = tgt[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD,
                           label_smoothing=label_smoothing, reduction="sum")
    real = target != PAD
    wrong = ((logits.argmax(-1) != target) & real).sum()
    return loss, wrong, real.sum()


def train_step(model: Transformer, opt, src: torch.Tensor, tgt: torch.Tensor, label_smoothing: float,
               mask_pairs: list, engine: Engine) -> torch.Tensor:
    """One optimizer step on a batch (src [b, S], tgt [b, T] with BOS/EOS, on the device):
    label-smoothed cross-entropy averaged over the non-pad target tokens; pruned weights'
    gradients zeroed before the step and the weights re-masked after it. Returns the batch's
    [loss sum, wrong tokens, tokens] (float64, on the device; no host synchronisation)."""
    opt.zero_grad(set_to_none=True)
    with engine.autocast():
        loss, wrong, count = token_sums(model, src, tgt, label_smoothing)
    (loss / count).backward()
    if mask_pairs:
        torch._foreach_mul_([p.grad for p, _ in mask_pairs], [m for _, m in mask_pairs])
    opt.step()
    if mask_pairs:
        with torch.no_grad():
            torch._foreach_mul_([p for p, _ in mask_pairs], [m for _, m in mask_pairs])
    return torch.stack([loss.detach().double(), wrong.double(), count.double()])


def mask_pairs_of(model: Transformer, masks: dict | None, device) -> list:
    """(parameter, mask) pairs of the pruned weights, masks as the parameters' dtype on the device."""
    params = dict(model.named_parameters())
    return [(params[k], m.to(device=device, dtype=params[k].dtype)) for k, m in (masks or {}).items()]


def sentence_batches(sentences, batch_size: int, indices=None):
    """Consecutive batches of sentence indices (all, or `indices`), as index lists."""
    idx = list(range(len(sentences))) if indices is None else [int(i) for i in indices]
    return [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]


@torch.no_grad()
def teacher_forced(model: Transformer, src, tgt, engine: Engine, batch_size: int, indices=None) -> tuple[float, int, int]:
    """(summed cross-entropy, wrong tokens, tokens) of sentences `indices` of (src, tgt) in eval mode."""
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=engine.device)
    wrong = torch.zeros((), dtype=torch.int64, device=engine.device)
    count = torch.zeros((), dtype=torch.int64, device=engine.device)
    for b in sentence_batches(src, batch_size, indices):
        with engine.autocast():
            ls, w, n = token_sums(model, src.batch(b).to(engine.device), tgt.batch(b).to(engine.device))
        loss += ls.double()
        wrong += w
        count += n
    return float(loss), int(wrong), int(count)


def validation_bleu(model: Transformer, data: TokenData, vocab, engine: Engine, method: str,
                    batch_size: int) -> tuple[float, str]:
    batches = [data.valid_src.batch(b) for b in sentence_batches(data.valid_src, batch_size)]
    with engine.autocast():
        hyps = translate(model, batches, vocab, method, data.max_len)
    return corpus_bleu(hyps, data.valid_refs)


def _rng_state(device: torch.device) -> dict:
    out = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def training_state(model, opt, gen, history, epoch, step, device, meta=None) -> dict:
    """Everything needed to continue after `epoch` (completed epochs), as CPU copies."""
    return {"meta": meta, "epoch": int(epoch), "step": int(step), "model": to_cpu(model.copy_state(0)),
            "optimizer": to_cpu(opt.state_dict()), "generator": gen.get_state().clone(),
            "rng": _rng_state(device), "history": [dict(h) for h in history]}


def _load_state(st: dict, model, opt, gen, device):
    model.load_copies([st["model"]])
    opt.load_state_dict(to_cpu(st["optimizer"]))
    gen.set_state(st["generator"])
    _set_rng_state(st["rng"], device)
    return [dict(h) for h in st["history"]], int(st["epoch"]), int(st["step"])


def train_translation(spec: ModelSpec, init_state: dict, seed: int, data: TokenData, hp: TrainSpec, engine: Engine,
                      vocab=None, masks: dict | None = None, resume_path: str | None = None,
                      resume_meta: dict | None = None, start_state: dict | None = None,
                      stop_epoch: int | None = None, state_out: dict | None = None, decode: str = "greedy",
                      bleu: bool = True, eval_batch_size: int = 0, dropout: float = DROPOUT,
                      log=print) -> tuple[dict, list[dict]]:
    """Train one copy from init_state with data order and dropout from `seed`; returns its
    state dict and the history of all epochs so far (dicts: epoch, lr, train_loss,
    train_error, test_loss, test_error, bleu, bleu_signature). BLEU (with `vocab`, decoded by
    `decode`) at the call's last epoch when `bleu`; a non-finite training loss raises
    DivergedError with the history up to it."""
    n = data.n_train
    total = hp.total_epochs(n)
    stop = total if stop_epoch is None else int(stop_epoch)
    if not 0 <= stop <= total:
        raise ValueError(f"stop_epoch must lie in 0..{total} (the schedule's epochs), got {stop_epoch}")
    dev = engine.device
    torch.manual_seed(int(seed))  # dropout's stream (the init is init_state's)
    model = build_transformer(spec, init_state, engine, dropout)
    opt = build_optimizer(model.parameters(), hp)
    mask_pairs = mask_pairs_of(model, masks, dev)
    gen = torch.Generator().manual_seed(int(seed))
    history, start, step = _restore(model, opt, gen, dev, resume_path, resume_meta, start_state, log)
    if start > stop:
        raise ValueError(f"the training state is at epoch {start}, past stop_epoch {stop}")
    eval_bs = eval_batch_size or max(1, min(engine.eval_batch_size, 256))
    lengths = data.train_tgt.lengths
    started = time.perf_counter()
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        batches = epoch_batches(lengths, hp.batch_size, gen, full_only=bool(hp.iterations))
        batches = batches[:hp.steps_in_epoch(epoch, n)]
        model.train()
        sums = torch.zeros(3, dtype=torch.float64, device=dev)
        epoch_lr = hp.lr_at_step(step, n)
        for b in batches:
            lr = hp.lr_at_step(step, n)
            for g in opt.param_groups:
                g["lr"] = lr
            src, tgt = data.train_src.batch(b).to(dev), data.train_tgt.batch(b).to(dev)
            sums += train_step(model, opt, src, tgt, hp.label_smoothing, mask_pairs, engine)
            step += 1
        s = sums.cpu()
        vloss, vwrong, vcount = teacher_forced(model, data.valid_src, data.valid_tgt, engine, eval_bs)
        rec = {"epoch": epoch + 1, "lr": epoch_lr, "train_loss": float(s[0] / s[2]),
               "train_error": float(s[1] / s[2]), "test_loss": vloss / vcount, "test_error": vwrong / vcount,
               "bleu": float("nan"), "bleu_signature": ""}
        if not math.isfinite(rec["train_loss"]):
            last = next((h["train_loss"] for h in reversed(history) if math.isfinite(h["train_loss"])), None)
            raise DivergedError(f"training diverged: copy with seed {seed} has train loss {rec['train_loss']} in "
                                f"epoch {epoch + 1} (last finite loss: {last}). Lower the learning rate, or set "
                                f"on_divergence: record to record the cell as diverged and finish the grid.",
                                history + [rec])
        if bleu and vocab is not None and epoch + 1 == stop:
            rec["bleu"], rec["bleu_signature"] = validation_bleu(model, data, vocab, engine, decode, eval_bs)
        history.append(rec)
        now = time.perf_counter()
        log(f"seed {seed} epoch {epoch + 1}/{total} lr {epoch_lr:.4g} train loss {rec['train_loss']:.4f} "
            f"train token err {rec['train_error']:.4f} valid loss {rec['test_loss']:.4f} valid token err "
            f"{rec['test_error']:.4f}" + (f" BLEU {rec['bleu']:.2f}" if math.isfinite(rec["bleu"]) else "")
            + f" {now - t0:.1f} s/epoch ETA {clock((now - started) / (epoch + 1 - start) * (stop - epoch - 1))}")
        if resume_path:
            save_torch(training_state(model, opt, gen, history, epoch + 1, step, dev, resume_meta), resume_path)
    if state_out is not None:
        state_out.clear()
        state_out.update(training_state(model, opt, gen, history, stop, step, dev, resume_meta))
    return {k: v.cpu() for k, v in model.copy_state(0).items()}, history


def _restore(model, opt, gen, dev, resume_path, resume_meta, start_state, log):
    """(history, first epoch, optimizer steps so far) from a matching resume file, else
    start_state, else the start."""
    st = read_resume_state(resume_path, resume_meta, log)
    if st is not None:
        out = _load_state(st, model, opt, gen, dev)
        log(f"resumed from {resume_path} at epoch {out[1]}")
        return out
    if start_state is not None:
        out = _load_state(start_state, model, opt, gen, dev)
        log(f"continuing from a training state at epoch {out[1]}")
        return out
    return [], 0, 0
