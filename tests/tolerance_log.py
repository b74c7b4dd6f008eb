"""Record the largest differences the float-comparing tests see (tests/TOLERANCES.md).

With THREEREGIME_TOLERANCE_LOG=<file> set, record() and record_close() append one
tab-separated line per comparison to that file:

    code path, test id, quantity, max |a - b|, max |a - b| / |b|, tolerance, used

where `used` is the largest |a - b| / (atol + rtol |b|) (the fraction of the tolerance the
comparison used; <= 1 passes). Without the variable they do nothing. They never assert:
each test keeps its own assertion, as strict as its comment says.

The code path names ATen's vector kernels (ATEN_CPU_CAPABILITY), oneDNN's and MKL's
instruction-set caps (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS) and torch's thread count.
"""

from __future__ import annotations

import os
import re

import torch

ENV = "THREEREGIME_TOLERANCE_LOG"


def code_path() -> str:
    return (f"aten={torch.backends.cpu.get_cpu_capability()} "
            f"onednn={os.environ.get('ONEDNN_MAX_CPU_ISA', '-')} "
            f"mkl={os.environ.get('MKL_ENABLE_INSTRUCTIONS', '-')} threads={torch.get_num_threads()}")


def _test_id() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0]


def _write(quantity: str, abs_diff: float, rel_diff: float, tol: str, used: float) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a") as f:
        f.write(f"{code_path()}\t{_test_id()}\t{quantity}\t{abs_diff:.3e}\t{rel_diff:.3e}\t{tol}\t{used:.3g}\n")


def _as64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def record(quantity: str, diff: float, tol: float, scale: float | None = None) -> None:
    """A difference the test computed itself (e.g. max |fused - alone|) against its bound
    `tol`; `scale` (optional) is the size it is relative to (e.g. |b| or the update)."""
    if not os.environ.get(ENV):
        return
    rel = diff / scale if scale else float("nan")
    _write(quantity, float(diff), rel, f"{tol:.1e}", float(diff) / tol if tol else float("inf"))


def record_close(quantity: str, a, b, atol: float = 0.0, rtol: float = 0.0) -> None:
    """The elementwise comparison |a - b| <= atol + rtol |b| (torch.testing.assert_close,
    numpy's assert_allclose, pytest.approx): the largest absolute and relative difference."""
    if not os.environ.get(ENV):
        return
    a, b = _as64(a), _as64(b)
    d = (a - b).abs()
    if d.numel() == 0:
        return
    rel = (d / b.abs()).nan_to_num(nan=0.0, posinf=float("inf")).max().item()
    bound = atol + rtol * b.abs()
    used = (d / bound).max().item() if bool((bound > 0).all()) else float("inf") if d.max() > 0 else 0.0
    _write(quantity, d.max().item(), rel, f"atol={atol:.1e},rtol={rtol:.1e}", used)


def summarize(paths: list[str]) -> str:
    """A markdown table from the logs of several code paths: one row per test and quantity
    (seeds, copies and layers folded together), per code path the largest fraction of its
    tolerance used and the largest absolute difference."""
    rows: dict[tuple[str, str], dict[str, tuple[float, float, str]]] = {}
    order: list[str] = []
    for path in paths:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 7:
                    continue
                cpath, test, quantity, abs_diff, _rel, tol, used = parts
                if cpath not in order:
                    order.append(cpath)
                # one row per kind of comparison: seeds, copies and per-parameter names folded
                quantity = " ".join(re.sub(r"\b(seed|copy) \S+", "", quantity.split(":")[0]).split())
                key = (test.split("::", 1)[-1], quantity)
                best = rows.setdefault(key, {}).get(cpath)
                cand = (float(used), float(abs_diff), tol)
                if best is None or cand[0] > best[0]:
                    rows[key][cpath] = cand
    head = "| test | quantity | tolerance | " + " | ".join(order) + " |"
    lines = [head, "|" + "---|" * (3 + len(order))]
    for (test, quantity), per in sorted(rows.items()):
        tol = next(iter(per.values()))[2]
        cells = [f"{per[c][0]:.2g} ({per[c][1]:.1e})" if c in per else "-" for c in order]
        shown = quantity.replace("|", r"\|")  # |a - b| inside a markdown cell
        lines.append(f"| `{test}` | {shown} | {tol} | " + " | ".join(cells) + " |")
    worst = {c: max((per[c][0] for per in rows.values() if c in per), default=0.0) for c in order}
    lines.append("")
    lines.append("Largest fraction of its tolerance any comparison used, per code path: "
                 + "; ".join(f"{c}: {w:.2g}" for c, w in worst.items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    print(summarize(sys.argv[1:]), end="")
