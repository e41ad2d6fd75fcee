"""Load reports from NATS, aggregated per pool: workers' `WorkerLoadReport`s and other regions'
`RegionCapacity`. Freshness is judged by the operator's own clock at receipt, so a skewed worker
clock cannot make a dead worker look alive; stale reports are ignored, never averaged in."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.v1.media_pb2 import RegionCapacity, WorkerLoadReport


@dataclass(frozen=True)
class PoolLoad:
    """The fresh reports of one pool's workers, keyed by pod name."""

    reports: dict[str, WorkerLoadReport]

    @property
    def calls_active(self) -> int:
        return sum(r.calls_active for r in self.reports.values())

    @property
    def busy(self) -> int:
        return sum(1 for r in self.reports.values() if r.calls_active > 0)

    @property
    def free_calls(self) -> int:
        """Free slots on workers that take calls now."""
        return sum(max(0, r.capacity - r.calls_active) for r in self.reports.values() if r.accepting)


class LoadBook:
    """Latest report of every worker and region, with the local time it arrived (epoch seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._workers: dict[str, tuple[float, WorkerLoadReport]] = {}
        self._regions: dict[tuple[str, str], tuple[float, RegionCapacity]] = {}

    def add_worker_report(self, report: WorkerLoadReport) -> None:
        self._workers[report.worker_id] = (self._clock(), report)

    def add_region_capacity(self, report: RegionCapacity) -> None:
        self._regions[report.region, report.pool] = (self._clock(), report)

    def pool(self, region: str, pool: str, stale_after_s: float) -> PoolLoad:
        """Fresh reports of the pool's workers (arrived within `stale_after_s`), by pod name."""
        horizon = self._clock() - stale_after_s
        for worker_id in [w for w, (at, _) in self._workers.items() if at < horizon - stale_after_s]:
            del self._workers[worker_id]  # long gone: forget it
        return PoolLoad(
            reports={
                report.pod or report.worker_id: report
                for at, report in self._workers.values()
                if at >= horizon and report.region == region and report.pool == pool
            }
        )

    def regions(self, stale_after_s: float) -> list[RegionCapacity]:
        """Every region's latest capacity report that arrived within `stale_after_s`."""
        horizon = self._clock() - stale_after_s
        return [report for at, report in self._regions.values() if at >= horizon]

    async def subscribe(self, bus: Bus) -> None:
        """Feed the book from every region's worker load reports and capacity reports."""

        async def on_worker(report: WorkerLoadReport, _subject: str) -> None:
            self.add_worker_report(report)

        async def on_region(report: RegionCapacity, _subject: str) -> None:
            self.add_region_capacity(report)

        await bus.subscribe(f"{subjects.MEDIA_LOAD}.>", WorkerLoadReport, on_worker)
        await bus.subscribe(f"{subjects.CAPACITY}.*", RegionCapacity, on_region)
