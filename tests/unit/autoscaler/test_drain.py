"""Scale-down planning: least-busy first, busy workers only after their drain time."""

from __future__ import annotations

import pytest

from tandem.autoscaler.drain import Worker, plan_drain

pytestmark = pytest.mark.unit

NOW = 10_000.0
MAX_DRAIN_S = 600.0


def worker(pod: str, calls: int | None, **kwargs: object) -> Worker:
    return Worker(pod=pod, worker_id=pod, ready=True, calls_active=calls, **kwargs)  # type: ignore[arg-type]


def test_the_least_busy_workers_are_asked_to_drain_first() -> None:
    workers = [worker("a", 5), worker("b", 0), worker("c", 2), worker("d", None)]
    plan = plan_drain(workers, desired=2, replicas=4, now=NOW, max_drain_s=MAX_DRAIN_S)
    assert [w.pod for w in plan.start] == ["b", "c"]
    assert plan.replicas == 4  # nobody leaves before confirming the drain
    assert plan.release == ()


def test_an_idle_drained_worker_is_released_and_replicas_drop() -> None:
    drained = worker("b", 0, reports_draining=True, drain_started_at=NOW - 5)
    plan = plan_drain([worker("a", 5), drained], desired=1, replicas=2, now=NOW, max_drain_s=MAX_DRAIN_S)
    assert [w.pod for w in plan.release] == ["b"]
    assert plan.replicas == 1


def test_a_busy_worker_stays_until_its_drain_time_is_up() -> None:
    busy = worker("b", 1, reports_draining=True, drain_started_at=NOW - MAX_DRAIN_S + 1)
    plan = plan_drain([worker("a", 5), busy], desired=1, replicas=2, now=NOW, max_drain_s=MAX_DRAIN_S)
    assert plan.replicas == 2
    assert [w.pod for w in plan.waiting] == ["b"]
    later = plan_drain([worker("a", 5), busy], desired=1, replicas=2, now=NOW + 1, max_drain_s=MAX_DRAIN_S)
    assert later.replicas == 1
    assert [w.pod for w in later.release] == ["b"]


def test_a_worker_that_never_reported_and_is_not_ready_may_go_at_once() -> None:
    starting = Worker(pod="s", worker_id="s", ready=False, calls_active=None)
    plan = plan_drain([worker("a", 3), starting], desired=1, replicas=2, now=NOW, max_drain_s=MAX_DRAIN_S)
    assert plan.replicas == 1
    assert [w.pod for w in plan.release] == ["s"]


def test_draining_workers_resume_when_demand_returns() -> None:
    draining = worker("b", 1, reports_draining=True, drain_started_at=NOW - 5)
    plan = plan_drain([worker("a", 5), draining], desired=3, replicas=2, now=NOW, max_drain_s=MAX_DRAIN_S)
    assert plan.replicas == 3
    assert [w.pod for w in plan.resume] == ["b"]


def test_planning_again_repeats_no_drain_request() -> None:
    draining = worker("b", 1, reports_draining=True, drain_started_at=NOW - 5)
    plan = plan_drain([worker("a", 5), draining], desired=1, replicas=2, now=NOW, max_drain_s=MAX_DRAIN_S)
    assert plan.start == ()
    assert plan.resume == ()
