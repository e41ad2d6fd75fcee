"""Which media workers are alive, from their load reports: a worker whose reports stop is gone
(a worker that drains keeps reporting, so it is never taken for dead)."""

from __future__ import annotations

import time

from nats.aio.subscription import Subscription

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.v1 import media_pb2


class WorkerWatch:
    def __init__(self, silence_s: float) -> None:
        self.silence_s = silence_s
        self._last_report: dict[str, float] = {}

    async def watch(self, bus: Bus, region: str) -> Subscription:
        return await bus.subscribe(
            f"{subjects.join(subjects.MEDIA_LOAD, region)}.*", media_pb2.WorkerLoadReport, self._on_report
        )

    async def _on_report(self, report: media_pb2.WorkerLoadReport, _: str) -> None:
        self.reported(report.worker_id)

    def reported(self, worker_id: str) -> None:
        self._last_report[worker_id] = time.monotonic()

    def silent_for(self, worker_id: str) -> float:
        """Seconds since the worker's last report; 0 for one never heard of."""
        last = self._last_report.get(worker_id)
        return 0.0 if last is None else time.monotonic() - last

    def lost(self, worker_id: str) -> bool:
        """True once a worker that has reported has been silent for `silence_s`."""
        return self.silent_for(worker_id) > self.silence_s
