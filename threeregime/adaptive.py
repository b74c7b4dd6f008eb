"""Adaptive search for a study's regime boundaries without computing the whole grid.

The model the search relies on is the paper's picture of a phase diagram: the Regime-I
boundary (LMC = ε) and the II-A/II-B boundary (CKA = threshold) are monotone curves. Along
any line of the grid (a load column: temperatures at one load; a temperature row: loads at one
temperature)

* the sign of LMC − ε changes at most once: the Regime-I cells of the line are one block at
  one of its ends (or none, or all), and
* inside the line's Regime-II cells, the sign of CKA − threshold changes at most once: the
  II-A cells are one block at one end of the Regime-II block.

Which end is which is not assumed (it is read from the data, line by line). A *pattern* is a
labelling of one line allowed by these two rules (`line_patterns`). Every cell holds the set of
regimes it may still have (computed cells: their measured one). A line's *consistent* patterns
are those its cells allow; a skipped cell keeps only the regimes its row's and its column's
consistent patterns give it. Where the computed cells show a boundary's orientation without
exception (e.g. Regime I cold and sparse), the boundary is also a staircase across the grid:
a Regime-I cell makes the cells beyond it in that corner Regime I, a Regime-II cell the
cells before it Regime II (likewise II-B / II-A among Regime-II cells). These rules run until
nothing changes; a skipped cell left with one regime is *inferred*, and the rule that last
narrowed it is recorded. This is bisection on the two signs, on both axes at once.

The first round computes the grid's corners (the ends of the outer load columns) and its
middle cell. Each later round computes the undetermined cells that cut the consistent patterns
of their column and row the most (in the worst case over the regime the cell turns out to
have), at most one per row and column, `per_round` at most. When no cell is undetermined,
every inferred cell next to a cell of another regime in its column is computed ("pin", with
`pin="both"` in its row too), so that every boundary rests on two neighbouring computed
cells; the search ends when a round has nothing to ask.

A computed cell that no consistent pattern allows *contradicts* the monotone model in its line
(noise, or a real feature the model cannot represent). The search then goes back to the
contradicting cell's unknown neighbours in that line, then in the crossing line. Once all its
neighbours are computed and agree with each other against it, the cell is an isolated
outlier: it keeps its measured regime, and the grid is inferred without it. Otherwise the line
infers nothing (its cells are computed unless the crossing lines determine them). A row and a column that infer
different regimes for a cell send that cell to be computed. Cells with no measured regime
(NaN LMC or CKA: a diverged retraining) constrain nothing.

A computed cell whose regime is *unsettled* is *near* a boundary: the intervals for its mean
LMC and CKA (threeregime.uncertainty, the same `candidates` the study's table and phase diagram
show), each at least ± `lmc_margin` / `cka_margin` wide, reach a regime across it (on the
demo, cells within 0.02 of ε changed regime in 8 of 17 cases when only the retrain seeds
changed); a cell with one pair, which has no interval, is near by its margins alone
(`unsettled_near`). It keeps its measured regime, but for inference it allows every regime it
is unsettled between, so nothing is extrapolated from it: its unknown neighbours are
computed or determined by other cells. Every computed cell carries the
reason it was chosen, every inferred cell the rule that determined it.

Pure functions on (row, column) indices; `advance` maps a study's values to them and back for
the workflow (one call per round, see rules/adaptive.smk).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .regimes import MISSING, NAMES as REGIMES

CODE = {name: i for i, name in enumerate(REGIMES)}
DEFAULT_PER_ROUND = 2  # fewest cells on the synthetic diagrams (README "Adaptive search")
# A cell with |LMC - ε| below this is near the Regime-I boundary (README "Adaptive search": on the
# demo's two measured grids, 0.0075 / 0.01 / 0.0125 computed 20-29 / 26-28 / 28 of 48 cells and
# labelled 45-47 / 47 / 47 as the full grid, 0 computed 20 and labelled 44-45). CKA: off.
DEFAULT_LMC_MARGIN = 0.01
DEFAULT_CKA_MARGIN = 0.0

Cell = tuple[int, int]
PIN = ("column", "both", "none")  # which boundaries must rest on computed cells on both sides


@functools.lru_cache(maxsize=None)
def line_patterns(n: int) -> np.ndarray:
    """Every labelling of a line of n cells the monotone model allows, as codes (0 = I,
    1 = II-A, 2 = II-B), one row per pattern, in a fixed (sorted) order."""
    if n < 1:
        raise ValueError(f"a line has at least one cell, got {n}")
    out = set()
    for n_one in range(n + 1):
        for one_first in (True, False):
            m = n - n_one
            for n_a in range(m + 1):
                for a_first in (True, False):
                    two = [1] * n_a + [2] * (m - n_a) if a_first else [2] * (m - n_a) + [1] * n_a
                    out.add(tuple([0] * n_one + two if one_first else two + [0] * n_one))
    return np.array(sorted(out), dtype=np.int8)


def _lines(shape) -> list[tuple[str, int, list[Cell]]]:
    rows, cols = shape
    return ([("row", r, [(r, c) for c in range(cols)]) for r in range(rows)]
            + [("column", c, [(r, c) for r in range(rows)]) for c in range(cols)])


@dataclass
class Plan:
    """The state of the search after the cells in `computed`, and the cells it asks for next."""

    shape: tuple[int, int]
    labels: dict[Cell, str]                 # every cell with a regime: measured or inferred
    inferred_from: dict[Cell, str]          # skipped cells: the line that determined them
    next: list[tuple[Cell, str]]            # cells to compute in the next round, with why
    outliers: set[Cell] = field(default_factory=set)      # computed, isolated, left out of inference
    contradicted: list[str] = field(default_factory=list)  # lines whose computed cells break the model
    undetermined: list[Cell] = field(default_factory=list)  # skipped and not (yet) inferred

    @property
    def done(self) -> bool:
        return not self.next


BIT = {name: 1 << i for i, name in enumerate(REGIMES)}
ANY = 7          # a cell that may still be any regime
II = BIT["II-A"] | BIT["II-B"]


def _orientation(computed: dict[Cell, str], outliers: set[Cell], high: str, low: str, among=REGIMES):
    """The direction in which `high` (vs `low`) grows along rows and columns, read from the
    computed cells of one column (row) that differ; None unless every such pair agrees and the
    computed cells respect the product order it implies (then `high` cells dominate `low` ones)."""
    cells = [(c, n) for c, n in computed.items() if n in among and c not in outliers]
    his = [c for c, n in cells if n == high]
    los = [c for c, n in cells if n in low]
    votes: list[set[int]] = [set(), set()]
    for h in his:
        for lo in los:
            for axis in (0, 1):
                if h[1 - axis] == lo[1 - axis] and h[axis] != lo[axis]:
                    votes[axis].add(1 if h[axis] > lo[axis] else -1)
    if any(len(v) != 1 for v in votes):
        return None
    sr, sc = votes[0].pop(), votes[1].pop()
    for h in his:
        for lo in los:
            if sr * (lo[0] - h[0]) >= 0 and sc * (lo[1] - h[1]) >= 0:
                return None  # a low cell dominates a high one: not a monotone staircase
    return sr, sc


def _infer(shape, computed: dict[Cell, str], outliers: set[Cell], blocked: set[Cell], near: dict[Cell, tuple]):
    """Narrow every skipped cell's possible regimes until nothing changes: by the consistent
    patterns of its row and column, and by the staircase (product-order) rule of each
    boundary whose orientation the computed cells show.

    Returns (masks grid of possible regimes, {cell: rule that last narrowed it}, lines with
    no consistent pattern, cells narrowed to nothing)."""
    mask = np.full(shape, ANY, dtype=np.int8)
    for cell, name in computed.items():
        if name in CODE and cell not in outliers:
            mask[cell] = _bits(name, near.get(cell, ()))
    free = np.ones(shape, dtype=bool)  # cells the rules may narrow: skipped and not blocked
    for cell in list(computed) + list(blocked):
        free[cell] = False
    stairs = []
    unsure = outliers | {c for c, other in near.items() if other}  # no staircase from either
    o = _orientation(computed, unsure, "I", ("II-A", "II-B"))
    if o:
        stairs.append((o, BIT["I"], II, "the Regime-I staircase"))
    o = _orientation(computed, unsure, "II-B", ("II-A",), among=("II-A", "II-B"))
    if o:
        stairs.append((o, BIT["II-B"], BIT["II-A"], "the II-A/II-B staircase"))
    rows, cols = np.indices(shape)
    source: dict[Cell, str] = {}
    broken: set[tuple[str, int]] = set()
    changed = True
    while changed:
        changed = False
        broken = set()

        def narrow(where: np.ndarray, keep: np.ndarray, why: str) -> None:
            nonlocal changed
            new = np.where(where & free, mask & keep, mask)
            for r, c in zip(*np.nonzero(new != mask)):
                source[(int(r), int(c))] = why
                changed = True
            mask[...] = new

        for kind, i, cells in _lines(shape):
            idx = tuple(np.array(cells).T)
            pats = line_patterns(len(cells))
            ok = pats[np.all(((1 << pats) & mask[idx]) != 0, axis=1)]
            if not len(ok):
                broken.add((kind, i))
                continue
            allowed = np.bitwise_or.reduce(1 << ok, axis=0).astype(np.int8)
            where = np.zeros(shape, dtype=bool)
            where[idx] = True
            keep = np.full(shape, ANY, dtype=np.int8)
            keep[idx] = allowed
            narrow(where, keep, f"{kind} {i}")
        for (sr, sc), hi, lo, name in stairs:
            # a cell known to be `hi` makes every cell it is dominated by `hi` (or outside the
            # two), a cell known to be `lo` every cell it dominates `lo`
            for r, c in zip(*np.nonzero(mask == hi)):
                above = (sr * (rows - r) >= 0) & (sc * (cols - c) >= 0)
                narrow(above, np.int8(ANY & ~lo), f"{name} from ({r}, {c})")
            for r, c in zip(*np.nonzero((mask != 0) & ((mask & ~lo) == 0))):
                below = (sr * (rows - r) <= 0) & (sc * (cols - c) <= 0)
                narrow(below, np.int8(ANY & ~hi), f"{name} from ({r}, {c})")
    empty = {(int(r), int(c)) for r, c in zip(*np.nonzero(mask == 0))}
    return mask, source, broken, empty


def _bits(name: str, near=()) -> int:
    """The mask of a computed cell: its regime, and the regimes it is near (Regimes.near)."""
    out = BIT[name]
    for other in near:
        out |= BIT[other]
    return out


def _computed_codes(shape, computed, outliers, cells, near) -> np.ndarray:
    return np.array([_bits(computed[c], near.get(c, ())) if c in computed and computed[c] in CODE
                     and c not in outliers else ANY for c in cells], dtype=np.int8)


def _consistent_masks(patterns: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return patterns[np.all(((1 << patterns) & masks) != 0, axis=1)]


def plan(shape: tuple[int, int], computed: dict[Cell, str], per_round: int = DEFAULT_PER_ROUND,
         pin: str = "column", near: dict[Cell, tuple] | None = None) -> Plan:
    """What is known after the cells in `computed` ({(row, col): regime or "missing"}), and
    which cells to compute next (none when every cell is computed or inferred). `near`: the
    computed cells within their margins of another regime ({cell: Regimes.near(...)}).

    Rows and columns must be in the order of their axis values (either direction).

    The phases, each a function: the start cells (`_start_cells`, first round only); the
    check (`_check_conflicts`: inference, and the cells it cannot trust); the labels it yields
    (`_inferred_cells`); the cells to compute next: the check's (`_check_cells`), then those
    that bisect the most (`_bisection_cells`), and once nothing is undetermined those that pin
    the boundaries (`_pin_cells`)."""
    near = _validated_near(shape, computed, per_round, pin, near)
    rows, cols = shape
    if not computed:
        return Plan(shape, {}, {}, _start_cells(shape),
                    undetermined=[(r, c) for r in range(rows) for c in range(cols)])
    checks = _check_conflicts(shape, computed, near)
    inferred = _inferred_cells(checks.mask, computed)
    labels = {**computed, **inferred}
    inferred_from = {cell: checks.source[cell] for cell in inferred}
    undetermined = [(r, c) for r in range(rows) for c in range(cols) if (r, c) not in labels]
    nxt = _check_cells(checks, computed)
    nxt += _bisection_cells(checks.mask, undetermined, nxt,
                            limit=max(per_round, len(checks.queue) + len(checks.blocked)))
    if not nxt and pin != "none":
        nxt = _pin_cells(inferred, labels, computed, pin)
    return Plan(shape, labels, inferred_from, nxt, checks.outliers, checks.contradicted, undetermined)


def _validated_near(shape, computed: dict[Cell, str], per_round: int, pin: str,
                    near: dict[Cell, tuple] | None) -> dict[Cell, tuple]:
    """Check `plan`'s arguments (ValueError on the first bad one) and return `near` as
    {computed cell: tuple of regimes}: near entries of skipped cells are dropped, since only
    a measured value can be near a boundary."""
    rows, cols = shape
    if rows < 1 or cols < 1:
        raise ValueError(f"the grid needs at least one row and one column, got {shape}")
    if per_round < 1:
        raise ValueError(f"per_round must be at least 1, got {per_round}")
    if pin not in PIN:
        raise ValueError(f"pin must be one of {PIN}, got {pin!r}")
    for cell, name in computed.items():
        if not (0 <= cell[0] < rows and 0 <= cell[1] < cols):
            raise ValueError(f"computed cell {cell} is outside the {rows} x {cols} grid")
        if name not in CODE and name != MISSING:
            raise ValueError(f"cell {cell} has regime {name!r}; expected one of {REGIMES} or {MISSING!r}")
    near = {cell: tuple(other) for cell, other in (near or {}).items() if cell in computed}
    for cell, other in near.items():
        if not set(other) <= set(REGIMES):
            raise ValueError(f"cell {cell} is near {other!r}; expected regimes among {REGIMES}")
    return near


def _start_cells(shape) -> list[tuple[Cell, str]]:
    """Start phase (nothing computed yet): the grid's four corners (the ends of its outer
    load columns) and its middle cell, each once (a grid of one row or column has fewer
    distinct corners). With nothing measured every pattern is still consistent, so there is
    nothing to bisect yet; the corners show which end of each line a boundary's regimes lie
    at, the middle cell splits both axes."""
    rows, cols = shape
    start = [((0, 0), "start: corner"), ((0, cols - 1), "start: corner"), ((rows - 1, 0), "start: corner"),
             ((rows - 1, cols - 1), "start: corner"), ((rows // 2, cols // 2), "start: middle")]
    seen: dict[Cell, str] = {}
    for cell, why in start:
        seen.setdefault(cell, why)
    return list(seen.items())


@dataclass
class _Checks:
    """What the check phase leaves to the rest of `plan`."""

    mask: np.ndarray              # possible regimes of every cell (bits), after the last inference
    source: dict[Cell, str]       # skipped cells: the rule that last narrowed them
    outliers: set[Cell]           # computed cells left out of inference: isolated against their neighbours
    blocked: dict[Cell, str]      # skipped cells the rules disagree on: computed, not inferred
    queue: dict[Cell, str]        # skipped neighbours of computed cells that break their line's model
    contradicted: list[str]       # lines whose computed cells no pattern allows


def _check_conflicts(shape, computed: dict[Cell, str], near: dict[Cell, tuple]) -> _Checks:
    """Check phase: infer (`_infer`), then look for what the monotone model cannot explain,
    and infer again with it taken out, until a pass finds nothing new.

    * A skipped cell the rules leave no regime is blocked (computed, and not narrowed again).
    * A line with no consistent pattern whose computed cells alone fit the model has crossing
      lines that disagree on its skipped cells: those are blocked (`_check_crossing_lines`).
    * A line whose computed cells alone break the model is contradicted: its contradicting
      cells' skipped neighbours are queued, and a cell all of whose neighbours are computed
      and agree against it becomes an outlier (`_check_contradiction`).

    A pass runs again only when it blocked a cell or found an outlier; both sets only grow
    and are bounded by the grid, so the loop ends. This is how the search stops trusting
    inference where the measured cells contradict it, and goes back to measure instead."""
    outliers: set[Cell] = set()
    blocked: dict[Cell, str] = {}
    queue: dict[Cell, str] = {}
    while True:
        mask, source, broken, empty = _infer(shape, computed, outliers, set(blocked), near)
        restart = False
        for cell in sorted(empty - set(blocked)):
            blocked[cell] = f"check: {source.get(cell, 'the rules')} leaves it no regime"
            restart = True
        contradicted = []
        for kind, i, cells in _lines(shape):
            if (kind, i) not in broken:
                continue
            known = _computed_codes(shape, computed, outliers, cells, near)
            if len(_consistent_masks(line_patterns(len(cells)), known)):
                restart |= _check_crossing_lines(kind, i, cells, computed, source, blocked)
            else:
                contradicted.append(f"{kind} {i}")
                restart |= _check_contradiction(kind, i, cells, known, shape, computed, outliers, queue)
        if not restart:
            break
    return _Checks(mask, source, outliers, blocked, queue, contradicted)


def _check_crossing_lines(kind: str, i: int, cells: list[Cell], computed: dict[Cell, str],
                          source: dict[Cell, str], blocked: dict[Cell, str]) -> bool:
    """Check phase, a broken line whose computed cells fit the model: the cells inferred by
    crossing lines do not, so the row and the column models disagree there; those cells are
    blocked (to be computed). Returns whether any cell was newly blocked."""
    found = False
    for cell in cells:
        if (cell not in computed and cell in source and source[cell] != f"{kind} {i}"
                and cell not in blocked):
            blocked[cell] = f"check: {source[cell]} and {kind} {i} infer different regimes"
            found = True
    return found


def _check_contradiction(kind: str, i: int, cells: list[Cell], known: np.ndarray, shape,
                         computed: dict[Cell, str], outliers: set[Cell], queue: dict[Cell, str]) -> bool:
    """Check phase, a line whose computed cells (codes `known`) no pattern allows. Its
    suspects are the computed cells without which the line fits (all its computed cells if
    none). Each suspect's skipped neighbours are queued: in the line first, in the crossing
    line once those are computed. A suspect whose neighbours are all computed and share one
    regime other than its own is an isolated outlier, measured but left out of inference.
    Returns whether an outlier was found (the inference must run again)."""
    rows, cols = shape
    pats = line_patterns(len(cells))
    suspects = []
    for j, cell in enumerate(cells):
        if known[j] == ANY:
            continue
        without = known.copy()
        without[j] = ANY
        if len(_consistent_masks(pats, without)):
            suspects.append(j)
    targets = suspects or [j for j in range(len(cells)) if known[j] != ANY]
    found = False
    for j in targets:
        cell = cells[j]
        # its neighbours in the line first, then (for a single suspect) in the crossing line
        beside = [cells[k] for k in (j - 1, j + 1) if 0 <= k < len(cells)]
        nbrs = [(cell[0] + dr, cell[1] + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                if 0 <= cell[0] + dr < rows and 0 <= cell[1] + dc < cols]
        unknown = [n for n in (beside if any(n not in computed for n in beside) else nbrs)
                   if n not in computed]
        for n in unknown:
            queue.setdefault(n, f"check: neighbour of {cell} ({computed[cell]}), which breaks the "
                                f"monotone order of {kind} {i}")
        measured = [computed[n] for n in nbrs if n in computed and n not in outliers]
        if (j in suspects and not unknown and len(measured) == len(nbrs) and len(set(measured)) == 1
                and measured[0] != computed[cell]):
            outliers.add(cell)  # isolated: all its neighbours agree against it
            found = True
    return found


def _inferred_cells(mask: np.ndarray, computed: dict[Cell, str]) -> dict[Cell, str]:
    """The skipped cells the check phase's inference left with one regime, in row-major order."""
    single = {BIT[name]: name for name in REGIMES}
    return {(int(r), int(c)): single[int(mask[r, c])] for r, c in zip(*np.nonzero(np.isin(mask, list(single))))
            if (int(r), int(c)) not in computed}


def _check_cells(checks: _Checks, computed: dict[Cell, str]) -> list[tuple[Cell, str]]:
    """The check phase's cells, asked first and all in one round (whatever `per_round`):
    the queued neighbours of contradicting cells, then the blocked cells, each once."""
    out: list[tuple[Cell, str]] = []
    for cell, why in list(checks.queue.items()) + list(checks.blocked.items()):
        if cell not in computed and cell not in dict(out):
            out.append((cell, why))
    return out


def _bisection_cells(mask: np.ndarray, undetermined: list[Cell], asked: list[tuple[Cell, str]],
                     limit: int) -> list[tuple[Cell, str]]:
    """Bisection phase: the undetermined cells (not already `asked`) that cut the most of
    their column's and row's consistent patterns (`_cut`), best first, at most one per row
    and column (counting the asked cells) and until `asked` and these hold `limit` cells.
    Scoring a cell by the patterns it rules out whatever regime it turns out to have makes
    each computed cell narrow the boundaries' positions as much as it surely can (bisection
    on both axes); one cell per row and column keeps a round's cells from telling about the
    same line twice."""
    busy_rows = {c[0] for c, _ in asked}
    busy_cols = {c[1] for c, _ in asked}
    taken = dict(asked)
    scored = []
    for cell in undetermined:
        if cell in taken:
            continue
        score, parts = _cut(cell, mask)
        scored.append((-score, cell, parts))
    scored.sort()
    out: list[tuple[Cell, str]] = []
    for neg, cell, parts in scored:
        if len(asked) + len(out) >= limit:
            break
        if (asked or out) and (cell[0] in busy_rows or cell[1] in busy_cols):
            continue
        why = (f"bisection: {' and '.join(parts)} (cuts {-neg:.2f} of their consistent patterns)" if parts
               else "fallback: no monotone line determines it")
        out.append((cell, why))
        busy_rows.add(cell[0])
        busy_cols.add(cell[1])
    if undetermined and not asked and not out:  # unreachable by construction; never stop with unknown cells
        out.append((undetermined[0], "fallback: undetermined"))
    return out


def _cut(cell: Cell, mask: np.ndarray) -> tuple[float, list[str]]:
    """How much computing `cell` narrows its column's and its row's consistent patterns: the
    sum over the two lines of the fraction of patterns ruled out in the worst case over the
    regime it turns out to have, and the lines with a positive fraction."""
    rows, cols = mask.shape
    score, parts = 0.0, []
    for kind, i, cells in (("column", cell[1], [(r, cell[1]) for r in range(rows)]),
                           ("row", cell[0], [(cell[0], c) for c in range(cols)])):
        idx = tuple(np.array(cells).T)
        ok = _consistent_masks(line_patterns(len(cells)), mask[idx])
        if not len(ok):
            continue
        at = ok[:, cells.index(cell)]
        cut = (len(ok) - np.bincount(at, minlength=3).max()) / len(ok)
        if cut > 0:
            score += cut
            parts.append(f"{kind} {i}")
    return score, parts


def _pin_cells(inferred: dict[Cell, str], labels: dict[Cell, str], computed: dict[Cell, str],
               pin: str) -> list[tuple[Cell, str]]:
    """Pin phase (every cell computed or inferred): each inferred cell next to a cell of
    another regime in its column (`pin="both"`: or its row) is computed, so that a boundary,
    or a noisy cell's wrong extrapolation, always rests on measured cells on both sides."""
    steps = ((1, 0), (0, 1)) if pin == "both" else ((1, 0),)
    out: list[tuple[Cell, str]] = []
    for (r, c), name in sorted(inferred.items()):
        for dr, dc in steps:
            for n in ((r + dr, c + dc), (r - dr, c - dc)):
                other = labels.get(n)
                if other in CODE and other != name and (r, c) not in dict(out):
                    out.append(((r, c), f"pin: boundary {name} | {other} next to "
                                        f"{'computed' if n in computed else 'inferred'} {n}"))
    return out


@dataclass
class Run:
    """A whole search against known regimes (for tests and benchmarks of the search itself)."""

    plan: Plan
    rounds: int
    computed: dict[Cell, tuple[int, str]]   # cell -> (round, reason)

    def agreement(self, truth) -> float:
        """Fraction of all cells whose final regime equals `truth`'s."""
        t = np.asarray(truth, dtype=object)
        return float(np.mean([self.plan.labels.get((r, c)) == t[r, c]
                              for r in range(t.shape[0]) for c in range(t.shape[1])]))


def search(truth, per_round: int = DEFAULT_PER_ROUND, pin: str = "column", max_rounds: int = 1000,
           near: dict[Cell, tuple] | None = None) -> Run:
    """Run the search to the end, reading each requested cell's regime from `truth` (a 2-D
    array of regime names or "missing"), as the workflow would compute it; `near`: the
    regimes each cell's measurement is within its margins of (Regimes.near), for any cell."""
    t = np.asarray(truth, dtype=object)
    computed: dict[Cell, str] = {}
    why: dict[Cell, tuple[int, str]] = {}
    for rnd in range(max_rounds + 1):
        p = plan(t.shape, computed, per_round, pin, near)
        if p.done:
            return Run(p, rnd, why)
        for cell, reason in p.next:
            computed[cell] = str(t[cell])
            why[cell] = (rnd, reason)
    raise RuntimeError(f"the search did not finish in {max_rounds} rounds")


# --- the workflow's view: a study's values and one round at a time ------------------------------

def in_values(text: str, temperatures, loads) -> str:
    """A reason in grid indices ("row 1", "column 3", "(1, 3)") told in the study's values."""
    import re

    text = re.sub(r"\((\d+), (\d+)\)", lambda m: f"({temperatures[int(m[1])]:g}, {loads[int(m[2])]:g})", text)
    text = re.sub(r"\brow (\d+)", lambda m: f"the row at temperature {temperatures[int(m[1])]:g}", text)
    return re.sub(r"\bcolumn (\d+)", lambda m: f"the column at load {loads[int(m[1])]:g}", text)


def _near_of(rows: list[dict], temps, lds) -> dict[Cell, tuple]:
    return {(temps.index(float(r["temperature"])), lds.index(float(r["load"]))): tuple(r.get("near", ()))
            for r in rows}


def advance(state: dict | None, measured: dict[tuple[float, float], dict], temperatures, loads,
            per_round: int = DEFAULT_PER_ROUND, pin: str = "column") -> dict:
    """One round of the workflow's search, as JSON-able data.

    state: the previous round's return value (None for the first round). measured: the cells
    the previous round asked for, {(temperature, load): {"regime", "lmc", "cka", ..., and
    optionally "near": the regimes it is within its margins of}}.
    Returns {"round", "temperatures", "loads", "computed": [...], "next": [...], "done"}:
    computed rows carry their values, the round they were computed in and why; next rows the
    cells to compute now and why."""
    temps = sorted(float(v) for v in temperatures)
    lds = sorted(float(v) for v in loads)
    if state is None:
        rnd, computed_rows, asked = 0, [], {}
    else:
        if [float(v) for v in state["temperatures"]] != temps or [float(v) for v in state["loads"]] != lds:
            raise ValueError("the previous round was made for another grid; delete its round files and rerun")
        rnd = state["round"] + 1
        computed_rows = [dict(r) for r in state["computed"]]
        asked = {(float(r["temperature"]), float(r["load"])): r["reason"] for r in state["next"]}
    if set(measured) != set(asked):
        raise ValueError(f"measured cells {sorted(measured)} are not the cells the previous round asked for "
                         f"{sorted(asked)}")
    for (t, l), values in sorted(measured.items()):
        computed_rows.append({**values, "temperature": t, "load": l, "round": rnd - 1, "reason": asked[(t, l)]})
    pos = {(t, l): (temps.index(t), lds.index(l)) for t in temps for l in lds}
    computed = {pos[(r["temperature"], r["load"])]: r["regime"] for r in computed_rows}
    p = plan((len(temps), len(lds)), computed, per_round, pin, _near_of(computed_rows, temps, lds))
    return {"round": rnd, "temperatures": temps, "loads": lds, "per_round": per_round, "pin": pin,
            "computed": computed_rows,
            "next": [{"temperature": temps[c[0]], "load": lds[c[1]], "reason": in_values(why, temps, lds)}
                     for c, why in p.next],
            "done": p.done}


def settings_of(config: dict, study: str) -> dict:
    """`studies.<study>.adaptive` (validated by the schema) with the defaults filled in."""
    given = config.get("studies", {}).get(study, {}).get("adaptive", {})
    return {"per_round": int(given.get("per_round", DEFAULT_PER_ROUND)), "pin": str(given.get("pin", "column")),
            "lmc_margin": float(given.get("lmc_margin", DEFAULT_LMC_MARGIN)),
            "cka_margin": float(given.get("cka_margin", DEFAULT_CKA_MARGIN))}


def round_cells(study, state: dict | None) -> list:
    """The cells (one per dense seed) whose metrics the round after `state` reads: those
    `state` asked for, as the study's `CellSpec`s (their paths are the full grid's)."""
    if state is None:
        return []
    return [study.cell(a["temperature"], a["load"], seed) for a in state["next"] for seed in study.dense_seeds]


def measure(study, state: dict, logs: list[str], landscapes: list[str], lmc_margin: float = DEFAULT_LMC_MARGIN,
            cka_margin: float = DEFAULT_CKA_MARGIN) -> dict[tuple[float, float], dict]:
    """The metrics and regime of every cell `state` asked for, read from its files as the full
    grid's table reads them (threeregime.tables: means over dense seeds, retrain seeds and pairs),
    and the regimes each is within its margins of ("near", Regimes.near)."""
    import pandas as pd

    from .tables import cell_key, cell_rows, summarize

    cells = round_cells(study, state)
    if len(cells) != len(logs) or len(cells) != len(landscapes):
        raise ValueError(f"{len(cells)} cells asked for, but {len(logs)} logs and {len(landscapes)} landscape files")
    values = [(float(a["temperature"]), float(a["load"])) for a in state["next"] for _ in study.dense_seeds]
    rows = []
    for (t, l), c, log, land in zip(values, cells, logs, landscapes):
        rows += cell_rows(cell_key(study, t, l, c), log, land)
    summary = summarize(pd.DataFrame(rows), study.regimes)
    out = {}
    for s in summary.to_dict("records"):
        values = {k: (float(s[k]) if k != "regime" else str(s[k])) for k in ("regime", "lmc", "cka", "cka_logit",
                                                                             "test_error", "bleu", "lmc_lo", "lmc_hi",
                                                                             "cka_lo", "cka_hi")}
        values["near"] = unsettled_near(study.regimes, values, lmc_margin, cka_margin)
        out[(float(s["temperature"]), float(s["load"]))] = values
    return out


def unsettled_near(regimes, values: dict, lmc_margin: float = DEFAULT_LMC_MARGIN,
                   cka_margin: float = DEFAULT_CKA_MARGIN) -> list[str]:
    """The regimes other than its own that a computed cell is unsettled towards: the table's
    `candidates` (threeregime.uncertainty's intervals for its mean LMC and CKA), each interval
    at least ± its margin wide; a cell with one pair (no interval) by its margins alone, so a
    two-copy study can still be searched. values: regime, lmc, cka, lmc_lo, lmc_hi, cka_lo, cka_hi."""
    def widened(mean, lo, hi, margin):
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return mean - margin, mean + margin
        return min(lo, mean - margin), max(hi, mean + margin)

    lmc, cka = values["lmc"], values["cka"]
    if values["regime"] not in CODE or not (math.isfinite(lmc) and math.isfinite(cka)):
        return []
    box = regimes.candidates(lmc, cka, widened(lmc, values.get("lmc_lo", math.nan), values.get("lmc_hi", math.nan),
                                               lmc_margin),
                             widened(cka, values.get("cka_lo", math.nan), values.get("cka_hi", math.nan), cka_margin))
    return [n for n in box if n != values["regime"]]


def cell_table(state: dict, study_name: str = "", temperature_axis: str = "", load_axis: str = ""):
    """Every cell of the grid after the last round: computed (with values, round, reason) or
    skipped (inferred regime and the rule of the search that determined it)."""
    import pandas as pd

    temps, lds = state["temperatures"], state["loads"]
    computed = {(float(r["temperature"]), float(r["load"])): r for r in state["computed"]}
    codes = {(temps.index(t), lds.index(l)): r["regime"] for (t, l), r in computed.items()}
    p = plan((len(temps), len(lds)), codes, state.get("per_round", DEFAULT_PER_ROUND), state.get("pin", "column"),
             _near_of(state["computed"], temps, lds))

    rows = []
    for i, t in enumerate(temps):
        for j, l in enumerate(lds):
            base = {"study": study_name, "temperature_axis": temperature_axis, "temperature": t,
                    "load_axis": load_axis, "load": l}
            r = computed.get((t, l))
            if r is not None:
                rows.append({**base, "computed": True, "regime": r["regime"], "round": int(r["round"]),
                             "reason": r["reason"], "outlier": (i, j) in p.outliers, "near": ",".join(r.get("near", ())),
                             **{k: float(r.get(k, math.nan)) for k in ("lmc", "cka", "cka_logit", "test_error",
                                                                               "bleu")}})
            else:
                rule = p.inferred_from.get((i, j))
                rows.append({**base, "computed": False, "regime": p.labels.get((i, j), "undetermined"), "round": -1,
                             "reason": f"inferred from {in_values(rule, temps, lds)}" if rule else "undetermined",
                             "outlier": False, "near": "", "lmc": math.nan, "cka": math.nan, "cka_logit": math.nan,
                             "test_error": math.nan, "bleu": math.nan})
    return pd.DataFrame(rows)
