"""The scaling decision as a pure function: examples and properties."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.autoscaler.decision import Decision, History, Observation, Reason, Sample, decide, history_horizon
from tandem.autoscaler.spec import PoolSpec, parse_spec

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def make_spec(per_worker: int = 8, **autoscaling: Any) -> PoolSpec:
    scaling: dict[str, Any] = {"minWorkers": 2, "maxWorkers": 20, "buffer": {"calls": 4}}
    scaling.update(autoscaling)
    return parse_spec(
        {"region": "eu", "image": "w", "capacity": {"callsPerWorker": per_worker}, "autoscaling": scaling}
    )


def run(spec: PoolSpec, calls: list[int], start_workers: int, step_s: float = 15) -> list[Decision]:
    """Decide every `step_s` seconds, the Deployment following each decision at once."""
    history, workers, decisions = History(), start_workers, []
    for i, load in enumerate(calls):
        now = NOW + timedelta(seconds=i * step_s)
        decision = decide(Observation(calls_active=load, current_workers=workers), spec, history, now)
        history = history.record(now.timestamp(), decision.recommendation, decision.workers, history_horizon(spec))
        workers = decision.workers
        decisions.append(decision)
    return decisions


def test_load_plus_buffer_sets_the_workers() -> None:
    decision = decide(Observation(calls_active=60, current_workers=8), make_spec(), History(), NOW)
    assert decision.workers == 8  # 64 calls wanted; 8 workers of 8 calls
    decision = decide(Observation(calls_active=61, current_workers=8), make_spec(), History(), NOW)
    assert (decision.workers, decision.reason) == (9, Reason.LOAD)


def test_percent_buffer_keeps_that_share_of_capacity_free() -> None:
    spec = make_spec(buffer={"percent": 20})
    decision = decide(Observation(calls_active=64, current_workers=10), spec, History(), NOW)
    assert decision.required_calls == 80
    assert decision.workers == 10


def test_scale_up_is_rate_limited_like_the_hpa() -> None:
    spec = make_spec(maxWorkers=100, behavior={"tolerance": 0})
    decision = decide(Observation(calls_active=400, current_workers=2), spec, History(), NOW)
    assert (decision.workers, decision.reason) == (6, Reason.RATE_LIMITED)  # +4 pods beats +100 %
    assert decision.limited


def test_scale_down_waits_for_the_stabilization_window() -> None:
    decisions = run(make_spec(), [100] * 4 + [10] * 30, start_workers=13)
    workers = [d.workers for d in decisions]
    assert workers[:4] == [13] * 4
    # The last high recommendation (at 45 s) holds for the 300 s window: until 345 s. Then down
    # to the recommendation plus the 10 % tolerance, so noise after it does not scale straight up.
    assert workers[4:23] == [13] * 19
    assert workers[23:] == [3] * 11
    assert decisions[5].reason is Reason.STABILIZING


def test_a_schedule_raises_the_floor_in_its_time_zone() -> None:
    schedule = {"name": "jakarta-evening", "cron": "0 18 * * *", "timeZone": "Asia/Jakarta"}
    spec = make_spec(schedules=[{**schedule, "durationMinutes": 240, "minWorkers": 12}])
    evening = datetime(2026, 3, 2, 11, 30, tzinfo=UTC)  # 18:30 in Jakarta
    decision = decide(Observation(calls_active=0, current_workers=2), spec, History(), evening)
    assert (decision.workers, decision.reason, decision.detail) == (12, Reason.SCHEDULE, "jakarta-evening")
    morning = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert decide(Observation(calls_active=0, current_workers=2), spec, History(), morning).workers == 2


def test_stale_reports_never_scale_down_and_apply_the_fallback_floor() -> None:
    spec = make_spec(fallback={"afterSeconds": 30, "minWorkers": 6})
    stale = Observation(calls_active=0, current_workers=9, metrics_stale=True)
    assert decide(stale, spec, History(), NOW).workers == 9
    stale = Observation(calls_active=0, current_workers=3, metrics_stale=True)
    decision = decide(stale, spec, History(), NOW)
    assert (decision.workers, decision.reason) == (6, Reason.METRICS_STALE)


def test_demand_beyond_max_is_offered_as_spillover() -> None:
    decision = decide(Observation(calls_active=170, current_workers=20), make_spec(), History(), NOW)
    assert (decision.workers, decision.reason, decision.limited) == (20, Reason.MAX_WORKERS, True)
    assert decision.spillover_out_calls == 174 - 160


def test_neighbours_spillover_counts_in_desired_capacity() -> None:
    observation = Observation(calls_active=20, current_workers=4, spillover_in_calls=40)
    assert decide(observation, make_spec(), History(), NOW).workers == 8


@st.composite
def specs(draw: st.DrawFn) -> PoolSpec:
    low = draw(st.integers(0, 10))
    return make_spec(
        per_worker=draw(st.sampled_from([1, 4, 8, 16])),
        minWorkers=low,
        maxWorkers=low + draw(st.integers(1, 60)),
        buffer={"calls": draw(st.integers(0, 50)), "percent": draw(st.integers(0, 50))},
        behavior={
            "tolerance": draw(st.sampled_from([0.0, 0.1, 0.25])),
            "scaleDown": {"stabilizationWindowSeconds": draw(st.sampled_from([0, 60, 300]))},
        },
    )


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Up to 30 past syncs within the last 10 minutes, oldest first."""
    ages = sorted(draw(st.lists(st.integers(1, 600), max_size=30, unique=True)), reverse=True)
    at = [NOW.timestamp() - age for age in ages]
    return History(
        recommendations=tuple(Sample(t, draw(st.integers(0, 80))) for t in at),
        decisions=tuple(Sample(t, draw(st.integers(0, 80))) for t in at),
    )


observations = st.builds(
    Observation,
    calls_active=st.integers(0, 1500),
    current_workers=st.integers(0, 80),
    metrics_stale=st.booleans(),
    spillover_in_calls=st.integers(0, 300),
)


@given(specs(), observations, histories())
@settings(max_examples=400, deadline=None)
def test_never_below_min_nor_above_max(spec: PoolSpec, observation: Observation, history: History) -> None:
    decision = decide(observation, spec, history, NOW)
    assert spec.autoscaling.min_workers <= decision.workers <= spec.autoscaling.max_workers


@given(specs(), observations, histories())
@settings(max_examples=400, deadline=None)
def test_never_scales_down_below_what_live_calls_occupy(
    spec: PoolSpec, observation: Observation, history: History
) -> None:
    decision = decide(observation, spec, history, NOW)
    if decision.workers < observation.current_workers and observation.current_workers <= spec.autoscaling.max_workers:
        assert decision.workers * spec.capacity.calls_per_worker >= observation.calls_active


@given(specs(), st.integers(0, 1500), st.integers(0, 80))
@settings(max_examples=200, deadline=None)
def test_constant_load_converges_without_oscillation(spec: PoolSpec, calls: int, start: int) -> None:
    workers = [d.workers for d in run(spec, [calls] * 60, start_workers=start)]
    steps = [b - a for a, b in zip([start, *workers], workers, strict=False) if b != a]
    flips = sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))
    assert flips == 0, workers
    assert workers[-1] == workers[-2]  # settled
