"""Assignment of a batch: optimal with a linear-assignment solver, greedy beyond a size.

The input is a score matrix (shoppers x hosts, -inf where a host may not take the shopper); the
output pairs each assigned shopper with one host, each host at most once, never an ineligible pair.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
# Cost matrix (minimise) -> (rows, columns) of a full assignment of the smaller side.
Solver = Callable[[FloatArray], tuple[IntArray, IntArray]]

# The cost of an ineligible cell: far above any sum of real scores, so the solver uses one only
# when a row or column could not be assigned otherwise (those pairs are then dropped).
_INFEASIBLE = 1e12


def scipy_solver(cost: FloatArray) -> tuple[IntArray, IntArray]:
    """SciPy's shortest augmenting path (LAPJV-like), on rectangular matrices directly: faster here
    than the `lap` package's LAPJV, which pads them square (docs/benchmarks.md)."""
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.intp), cols.astype(np.intp)


def assign_optimal(scores: FloatArray, solver: Solver) -> list[tuple[int, int]]:
    """The pairs maximising the total score over eligible cells (as many shoppers as possible first)."""
    eligible = np.isfinite(scores)
    rows, cols = solver(np.where(eligible, -scores, _INFEASIBLE))
    kept = eligible[rows, cols]
    return list(zip(rows[kept].tolist(), cols[kept].tolist(), strict=True))


def assign_greedy(scores: FloatArray) -> list[tuple[int, int]]:
    """Shoppers in order of their best score (aging makes that the longest waiting), each taking
    their best free host. O(shoppers x hosts), for batches too big for the solver's window."""
    free = np.ones(scores.shape[1], bool)
    pairs: list[tuple[int, int]] = []
    best = scores.max(axis=1, initial=-np.inf)
    for row in np.argsort(-best, kind="stable"):
        if not np.isfinite(best[row]):
            break
        row_scores = np.where(free, scores[row], -np.inf)
        col = int(np.argmax(row_scores))
        if np.isfinite(row_scores[col]):
            pairs.append((int(row), col))
            free[col] = False
    return pairs


def solver_work(shape: tuple[int, ...]) -> int:
    """What a batch of this shape costs the solver, in the units of `SOLVER_MAX_WORK`: the smaller
    side squared times the larger. Timed on score matrices from the scoring code, SciPy's time grows
    so (about 0.6 ms per million here, docs/benchmarks.md), where shoppers x hosts would let a batch
    of 500 shoppers against 800 hosts take 150 ms, five batch windows."""
    small, large = sorted(shape)
    return small * small * large


def solved_optimally(shape: tuple[int, ...], max_work: int) -> bool:
    """Whether a batch of this shape (eligible rows and columns only) goes to the solver."""
    return solver_work(shape) <= max_work


def assign(scores: FloatArray, solver: Solver, max_work: int) -> list[tuple[int, int]]:
    """Assign a batch: rows and columns without an eligible cell are left out; the rest goes to
    the solver when its `solver_work` is at most `max_work`, else to the greedy pass."""
    if not scores.size:
        return []
    eligible = np.isfinite(scores)
    rows = np.flatnonzero(eligible.any(axis=1))
    cols = np.flatnonzero(eligible.any(axis=0))
    if not len(rows):
        return []
    sub = scores[np.ix_(rows, cols)]
    pairs = assign_optimal(sub, solver) if solved_optimally(sub.shape, max_work) else assign_greedy(sub)
    return [(int(rows[r]), int(cols[c])) for r, c in pairs]
