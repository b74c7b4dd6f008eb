"""What every workflow script does first: logging, threads, device, engine."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch only where a job trains or measures: table and figure jobs skip it
    from .engine import Engine


class JobLog:
    """Timestamped lines to the rule's log file (appended, so a resumed job's log keeps the
    interrupted attempt) and to stderr."""

    def __init__(self, path: str | None):
        self.file = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.file = open(path, "a", buffering=1)

    def __call__(self, *parts) -> None:
        line = time.strftime("%Y-%m-%d %H:%M:%S ") + " ".join(str(p) for p in parts)
        print(line, file=sys.stderr, flush=True)
        if self.file:
            self.file.write(line + "\n")


def start_job(smk, engine_cfg: dict | None = None) -> tuple[JobLog, "Engine"]:
    import torch

    from .engine import Engine

    log = JobLog(smk.log[0] if len(smk.log) else None)
    torch.set_num_threads(max(1, int(smk.threads)))
    cfg = engine_cfg or smk.config.get("engine", {})
    device = cfg.get("device", "auto")
    if device == "auto":
        from .devices import select_device

        device = select_device(log=log)
    engine = Engine.auto(device, cfg.get("precision", "auto"), cfg.get("eval_batch_size", 0),
                         cfg.get("copies_per_pass", 0), cfg.get("compile", False), cfg.get("cuda_graph", True))
    log(f"job {smk.rule}: {engine.describe()}, {torch.get_num_threads()} threads")
    return log, engine
