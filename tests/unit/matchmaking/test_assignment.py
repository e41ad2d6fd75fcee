"""Batch assignment: one host per shopper and one shopper per host, eligible pairs only, optimal."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tandem.matchmaking.assignment import assign, assign_greedy, scipy_solver, solver_work

pytestmark = pytest.mark.unit

cells = st.one_of(st.just(-np.inf), st.floats(0, 500, allow_nan=False))
matrices = st.tuples(st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=cells)
)


def best(scores: np.ndarray) -> tuple[int, float]:
    """Brute force: the most eligible pairs, then the highest total."""
    n, m = scores.shape
    found = (0, 0.0)
    for perm in itertools.permutations(range(max(n, m)), min(n, m)):
        pairs = zip(range(n), perm, strict=False) if n <= m else zip(perm, range(m), strict=False)
        feasible = [(r, c) for r, c in pairs if np.isfinite(scores[r, c])]
        found = max(found, (len(feasible), float(sum(scores[r, c] for r, c in feasible))))
    return found


def check_valid(scores: np.ndarray, pairs: list[tuple[int, int]]) -> None:
    rows, cols = [r for r, _ in pairs], [c for _, c in pairs]
    assert len(set(rows)) == len(rows), "a shopper got two hosts"
    assert len(set(cols)) == len(cols), "a host got two shoppers"
    assert all(np.isfinite(scores[r, c]) for r, c in pairs), "an ineligible pair"


@settings(max_examples=300, deadline=None)
@given(matrices)
def test_the_solver_assigns_eligible_pairs_once_and_optimally(scores: np.ndarray) -> None:
    pairs = assign(scores, scipy_solver, max_work=10**9)
    check_valid(scores, pairs)
    count, total = best(scores)
    assert len(pairs) == count
    assert sum(scores[r, c] for r, c in pairs) == pytest.approx(total)


@settings(max_examples=300, deadline=None)
@given(matrices)
def test_the_greedy_pass_assigns_eligible_pairs_once(scores: np.ndarray) -> None:
    check_valid(scores, assign(scores, scipy_solver, max_work=0))


def test_greedy_serves_the_best_row_first() -> None:
    scores = np.array([[10.0, 9.0], [100.0, -np.inf]])
    assert sorted(assign_greedy(scores)) == [(0, 1), (1, 0)]


def test_the_solver_runs_up_to_its_work_limit_and_the_greedy_pass_beyond() -> None:
    # Row 0 has the best single cell, so greedy gives it column 0 and row 1 takes its 1 point;
    # the solver gives row 1 column 0 and row 0 column 1 (9 + 9 > 10 + 1).
    scores = np.array([[10.0, 9.0, -np.inf], [9.0, 1.0, -np.inf]])  # the third column drops out: 2 x 2
    assert solver_work((2, 3)) == solver_work((3, 2)) == 2 * 2 * 3
    assert sorted(assign(scores, scipy_solver, max_work=solver_work((2, 2)))) == [(0, 1), (1, 0)]
    assert sorted(assign(scores, scipy_solver, max_work=solver_work((2, 2)) - 1)) == [(0, 0), (1, 1)]
