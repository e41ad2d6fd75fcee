"""Load reports aggregated per pool; stale workers ignored."""

from __future__ import annotations

import pytest

from tandem.autoscaler.load import LoadBook
from tandem.v1.media_pb2 import RegionCapacity, WorkerLoadReport

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(worker: str, calls: int, *, pool: str = "p", accepting: bool = True) -> WorkerLoadReport:
    return WorkerLoadReport(
        worker_id=worker,
        region="eu",
        pool=pool,
        calls_active=calls,
        capacity=8,
        accepting=accepting,
        pod=worker,
    )


def test_fresh_reports_of_the_pool_are_summed_and_stale_ones_ignored() -> None:
    clock = Clock()
    book = LoadBook(clock)
    book.add_worker_report(report("old", 7))
    clock.now += 20
    book.add_worker_report(report("a", 3))
    book.add_worker_report(report("b", 0, accepting=False))
    book.add_worker_report(report("other", 5, pool="q"))
    load = book.pool("eu", "p", stale_after_s=10)
    assert set(load.reports) == {"a", "b"}
    assert (load.calls_active, load.busy, load.free_calls) == (3, 1, 5)


def test_region_reports_expire() -> None:
    clock = Clock()
    book = LoadBook(clock)
    book.add_region_capacity(RegionCapacity(region="us", pool="p"))
    assert [r.region for r in book.regions(stale_after_s=60)] == ["us"]
    clock.now += 61
    assert book.regions(stale_after_s=60) == []
