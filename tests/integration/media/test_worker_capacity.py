"""The media worker takes calls only while it has capacity, drains on request, reports its load."""

from __future__ import annotations

import asyncio
import time

import pytest

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import NoRespondersError, TandemError
from tandem.common.http import HttpServer
from tandem.media.app import MediaWorkerApp
from tandem.media.settings import Settings
from tandem.v1 import common_pb2, media_pb2

pytestmark = pytest.mark.integration


async def allocate(bus: Bus, call_id: str) -> media_pb2.MediaAllocated:
    return await bus.request(
        subjects.join(subjects.MEDIA_ALLOCATE, "eu"), media_pb2.MediaAllocate(call_id=call_id), media_pb2.MediaAllocated
    )


async def started_worker(bus: Bus, settings: Settings) -> tuple[MediaWorkerApp, list[media_pb2.WorkerLoadReport]]:
    """A worker "w1" taking calls, and the load reports it publishes as they arrive."""
    worker = MediaWorkerApp(settings, "w1")
    reports: list[media_pb2.WorkerLoadReport] = []

    async def collect(report: media_pb2.WorkerLoadReport, _: str) -> None:
        reports.append(report)

    await bus.subscribe(f"{subjects.MEDIA_LOAD}.eu.>", media_pb2.WorkerLoadReport, collect)
    await worker.start(bus, HttpServer("127.0.0.1", 0))
    return worker, reports


async def test_capacity_drain_release_and_load_reports(bus: Bus) -> None:
    worker, reports = await started_worker(bus, Settings(capacity=1, region="eu", report_interval_s=0.1))

    assert (await allocate(bus, "c1")).worker.worker_id == "w1"
    with pytest.raises(NoRespondersError):  # full: the worker left the allocation queue group
        await allocate(bus, "c2")

    worker_subject = subjects.join(subjects.MEDIA_WORKER, "w1", "offer")
    with pytest.raises(TandemError) as bad_sdp:
        await bus.request(
            worker_subject, media_pb2.MediaOffer(call_id="c1", leg=media_pb2.LEG_SHOPPER, sdp="nonsense"),
            media_pb2.MediaAnswer,
        )  # fmt: skip
    assert bad_sdp.value.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT

    release = media_pb2.MediaRelease(call_id="c1", reason=common_pb2.END_REASON_HANGUP)
    await bus.request(subjects.join(subjects.MEDIA_WORKER, "w1", "release"), release, media_pb2.MediaRelease)
    assert (await allocate(bus, "c3")).worker.worker_id == "w1"
    release.call_id = "c3"
    await bus.request(subjects.join(subjects.MEDIA_WORKER, "w1", "release"), release, media_pb2.MediaRelease)
    assert not worker.calls

    drained = await bus.request(
        subjects.join(subjects.MEDIA_WORKER, "w1", "drain"), media_pb2.WorkerDrain(drain=True),
        media_pb2.WorkerLoadReport,
    )  # fmt: skip
    assert (drained.draining, drained.accepting) == (True, False)
    with pytest.raises(NoRespondersError):
        await allocate(bus, "c4")

    await asyncio.sleep(0.3)
    assert reports
    assert reports[-1].worker_id == "w1"
    assert reports[-1].capacity == 1
    assert reports[-1].draining
    await worker.stop()


async def test_a_worker_whose_loop_lags_takes_no_new_calls_until_it_recovers(bus: Bus) -> None:
    settings = Settings(capacity=5, region="eu", report_interval_s=0.1, overload_lag_ms=300)
    worker, reports = await started_worker(bus, settings)
    assert (await allocate(bus, "kept")).worker.worker_id == "w1"

    time.sleep(0.6)  # CPU work blocking the worker's event loop (the test shares the loop)
    async with asyncio.timeout(5):
        while not reports or reports[-1].accepting:
            await asyncio.sleep(0.02)
    assert reports[-1].loop_lag_ms > 300
    assert reports[-1].overloaded
    assert reports[-1].cpu_seconds > 0
    with pytest.raises(NoRespondersError):  # it left the allocation queue group
        await allocate(bus, "new")
    assert "kept" in worker.calls  # the calls it has stay
    assert worker.calls["kept"].video_cap == settings.overload_video_bitrate_bps  # with less video

    async with asyncio.timeout(5):  # calm periods: it takes calls again
        while not reports[-1].accepting:
            await asyncio.sleep(0.02)
    assert (await allocate(bus, "after")).worker.worker_id == "w1"
    assert worker.calls["kept"].video_cap is None
    for call_id in ("kept", "after"):
        release = media_pb2.MediaRelease(call_id=call_id, reason=common_pb2.END_REASON_HANGUP)
        await bus.request(subjects.join(subjects.MEDIA_WORKER, "w1", "release"), release, media_pb2.MediaRelease)
    await worker.stop()
