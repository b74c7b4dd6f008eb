"""Faster ways to run the same training step: captured in a CUDA graph and replayed
(engine.cuda_graph), or compiled with torch.compile (engine.compile) with an eager fallback."""

from __future__ import annotations

import torch


class GraphedStep:
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


def first_compiled_step(compiled, model, opt, run_step, log):
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
