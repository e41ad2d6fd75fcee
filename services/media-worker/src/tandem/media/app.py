"""The media worker on the bus: takes calls while it has capacity, answers each leg's offer,
reports its load, drains on request or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Literal

from google.protobuf import empty_pb2
from nats.aio.subscription import Subscription
from prometheus_client import Counter, Gauge

from tandem.common import subjects
from tandem.common.aio import LoopLagMonitor, TaskSet
from tandem.common.bus import Bus
from tandem.common.http import HttpServer
from tandem.common.service import BaseApp
from tandem.media.announce import announce
from tandem.media.call import CallOptions, MediaCall
from tandem.media.dsp.pipeline import PipelineConfig, warm_up
from tandem.media.errors import CallNotOnWorkerError, InvalidAudioProcessingError, UnknownLegError, WorkerFullError
from tandem.media.legs import LEGS, Leg
from tandem.media.quality import QualityConfig, QualityReporter
from tandem.media.settings import Settings
from tandem.v1 import common_pb2, media_pb2

logger = logging.getLogger(__name__)

CALLS_ACTIVE = Gauge("tandem_media_calls_active", "Calls on this worker")
CALLS_TOTAL = Counter("tandem_media_calls_total", "Calls taken by this worker")
OVERLOADED = Gauge("tandem_media_overloaded", "1 while the worker takes no new calls because its event loop lags")
MAX_NOISE_ATTENUATION_DB = 60.0


class MediaWorkerApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.rtc_configuration = settings.rtc_configuration()
        self.worker_id = instance
        self.calls: dict[str, MediaCall] = {}
        self.draining = False
        self.overloaded = False
        """Its event loop lagged over `overload_lag_ms`: it keeps its calls and takes no new ones."""
        self._lag_ms = 0.0
        self.tasks = TaskSet("media-worker")
        self.lag = LoopLagMonitor()
        self.quality = QualityReporter(instance, QualityConfig.from_settings(settings))
        self._bus: Bus | None = None
        self._allocate_sub: Subscription | None = None
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def bus(self) -> Bus:
        assert self._bus is not None
        return self._bus

    def _worker_subject(self, verb: str) -> str:
        return subjects.join(subjects.MEDIA_WORKER, self.worker_id, verb)

    async def start(self, bus: Bus, http: HttpServer) -> None:
        # Compile (or load from the cache) the DSP kernels before taking a call, off the event loop;
        # the service reports ready only once start() has returned.
        await asyncio.to_thread(warm_up)
        self._bus = bus
        await self.quality.start(bus)
        await bus.serve(self._worker_subject("offer"), media_pb2.MediaOffer, self.offer, queue="worker")
        await bus.serve(self._worker_subject("candidate"), media_pb2.MediaCandidate, self.candidate, queue="worker")
        await bus.serve(self._worker_subject("open"), media_pb2.MediaOpen, self.open, queue="worker")
        await bus.serve(self._worker_subject("release"), media_pb2.MediaRelease, self.release, queue="worker")
        await bus.serve(self._worker_subject("drain"), media_pb2.WorkerDrain, self.drain, queue="worker")
        await self._update_intake()
        self.tasks.spawn(self.lag.run(), name="loop-lag")
        self.tasks.spawn(self._report_load_forever(), name="load-report")

    # --- intake: subscribed to the allocation queue group only while it can take a call ---------

    @property
    def accepting(self) -> bool:
        return not self.draining and not self.overloaded and len(self.calls) < self.settings.capacity

    async def _update_intake(self) -> None:
        if self.accepting and self._allocate_sub is None:
            self._allocate_sub = await self.bus.serve(
                subjects.join(subjects.MEDIA_ALLOCATE, self.settings.region),
                media_pb2.MediaAllocate,
                self.allocate,
                queue=f"media-{self.settings.region}",
            )
        elif not self.accepting and self._allocate_sub is not None:
            sub, self._allocate_sub = self._allocate_sub, None
            await sub.unsubscribe()

    async def allocate(self, request: media_pb2.MediaAllocate) -> media_pb2.MediaAllocated:
        if not self.accepting:
            # A request already in flight when we reached capacity: say so; signaling retries.
            raise WorkerFullError(self.settings.capacity)
        if request.call_id not in self.calls:
            call_id = request.call_id
            call = MediaCall(
                call_id, self.rtc_configuration, self.call_options(request),
                lambda leg, kind, detail: self._media_event(call_id, leg, kind, detail),
                self.quality.for_call(call_id),
            )  # fmt: skip
            self.calls[request.call_id] = call
            self.idle.clear()
            CALLS_TOTAL.inc()
            CALLS_ACTIVE.set(len(self.calls))
            self.tasks.spawn(self._expire_unoffered(call), name=f"expire-{call.call_id}")
            await self._update_intake()
            logger.info("call allocated", extra={"call_id": request.call_id})
        return media_pb2.MediaAllocated(
            call_id=request.call_id,
            worker=media_pb2.AllocatedWorker(worker_id=self.worker_id, region=self.settings.region),
        )

    def _call(self, call_id: str) -> MediaCall:
        call = self.calls.get(call_id)
        if call is None:
            raise CallNotOnWorkerError(call_id)
        return call

    async def offer(self, offer: media_pb2.MediaOffer) -> media_pb2.MediaAnswer:
        if offer.leg not in LEGS:
            raise UnknownLegError(offer.leg)
        call = self._call(offer.call_id)
        sdp = await (call.restart_leg if offer.restart else call.answer)(offer.leg, offer.sdp)
        return media_pb2.MediaAnswer(
            call_id=offer.call_id, leg=offer.leg, sdp=announce(sdp, self.settings.announced_address)
        )

    async def candidate(self, message: media_pb2.MediaCandidate) -> empty_pb2.Empty:
        await self._call(message.call_id).add_candidate(message.leg, message.candidate)
        return empty_pb2.Empty()

    async def open(self, request: media_pb2.MediaOpen) -> empty_pb2.Empty:
        self._call(request.call_id).open()
        return empty_pb2.Empty()

    async def release(self, request: media_pb2.MediaRelease) -> media_pb2.MediaRelease:
        if request.leg != media_pb2.LEG_UNSPECIFIED:
            if request.leg not in LEGS:
                raise UnknownLegError(request.leg)
            if (held := self.calls.get(request.call_id)) is not None:
                await held.release_leg(request.leg)
                logger.info("leg released", extra={"call_id": request.call_id, "leg": media_pb2.Leg.Name(request.leg)})
            return request
        call = self.calls.pop(request.call_id, None)
        if call is not None:
            await call.close()
            CALLS_ACTIVE.set(len(self.calls))
            if not self.calls:
                self.idle.set()
            logger.info("call released", extra={"call_id": request.call_id})
            await self._update_intake()
        return request

    async def drain(self, request: media_pb2.WorkerDrain) -> media_pb2.WorkerLoadReport:
        self.draining = request.drain
        await self._update_intake()
        logger.info("drain changed", extra={"draining": self.draining})
        return self.load_report()

    async def _expire_unoffered(self, call: MediaCall) -> None:
        """Release a call signaling has lost track of: held longer than any ringing lasts, or its
        legs not both offered in time after it opened."""
        try:
            await asyncio.wait_for(call.opened.wait(), self.settings.hold_timeout_s)
        except TimeoutError:
            why = "held and never opened"
        else:
            await asyncio.sleep(self.settings.offer_timeout_s)
            why = "legs never offered"
        if self.calls.get(call.call_id) is call and not (call.opened.is_set() and call.offered):
            logger.warning("call released: %s", why, extra={"call_id": call.call_id})
            await self.release(media_pb2.MediaRelease(call_id=call.call_id, reason=common_pb2.END_REASON_MEDIA_FAILURE))

    def call_options(self, request: media_pb2.MediaAllocate) -> CallOptions:
        """The call's media handling: the worker's settings, the request's audio processing where given."""
        settings = self.settings
        default = settings.pipeline_config()

        def audio(field: Literal["shopper_audio", "host_audio"]) -> PipelineConfig | None:
            if not request.HasField(field):
                return default
            processing: media_pb2.AudioProcessing = getattr(request, field)
            if not processing.enabled:
                return None
            if not 0.0 <= processing.noise_attenuation_db <= MAX_NOISE_ATTENUATION_DB:
                raise InvalidAudioProcessingError(field, MAX_NOISE_ATTENUATION_DB)
            return PipelineConfig(
                sample_rate=settings.audio_sample_rate, echo_cancellation=processing.echo_cancellation,
                gain_control=processing.gain_control, noise_attenuation_db=processing.noise_attenuation_db,
            )  # fmt: skip

        return CallOptions(
            frame_queue=settings.frame_queue,
            forward=settings.forward_media,
            limits=settings.forwarding_limits(),
            audio={
                media_pb2.LEG_SHOPPER: audio("shopper_audio"),
                media_pb2.LEG_HOST: audio("host_audio"),
            },
            opus_bitrate_bps=settings.opus_bitrate_bps,
            opus_complexity=settings.opus_complexity,
            held=request.held,
        )

    def _media_event(self, call_id: str, leg: Leg, kind: media_pb2.MediaEvent.Kind.ValueType, detail: str) -> None:
        event = media_pb2.MediaEvent(call_id=call_id, leg=leg, kind=kind, detail=detail[:200])
        event.at.FromDatetime(datetime.now(UTC))
        self.tasks.spawn(self.bus.publish(subjects.join(subjects.MEDIA_EVENTS, call_id), event))

    # --- load ----------------------------------------------------------------------------------

    def load_report(self) -> media_pb2.WorkerLoadReport:
        report = media_pb2.WorkerLoadReport(
            worker_id=self.worker_id,
            region=self.settings.region,
            pool=self.settings.pool,
            pod=self.settings.pod,
            calls_active=len(self.calls),
            capacity=self.settings.capacity,
            accepting=self.accepting,
            draining=self.draining,
            loop_lag_ms=self._lag_ms,
            cpu_seconds=time.process_time(),
            overloaded=self.overloaded,
        )
        report.reported_at.FromDatetime(datetime.now(UTC))
        return report

    def _judge_load(self, lag_ms: float) -> None:
        """Protect the calls it has: over the lag limit, stop taking calls and ask every party for less
        video; back under half, resume."""
        self._lag_ms = lag_ms
        limit = self.settings.overload_lag_ms
        overloaded = bool(limit) and (lag_ms > limit or (self.overloaded and lag_ms > limit / 2))
        if overloaded != self.overloaded:
            self.overloaded = overloaded
            OVERLOADED.set(int(overloaded))
            logger.warning("overloaded" if overloaded else "load back to normal", extra={"loop_lag_ms": round(lag_ms)})
            cap = self.settings.overload_video_bitrate_bps if overloaded else None
            for call in self.calls.values():
                call.shed_video(cap)

    async def _report_load_forever(self) -> None:
        subject = subjects.join(subjects.MEDIA_LOAD, self.settings.region, self.worker_id)
        while True:
            self._judge_load(self.lag.take_max_ms())
            await self._update_intake()
            if self.bus.connected:
                await self.bus.publish(subject, self.load_report())
            await asyncio.sleep(self.settings.report_interval_s)

    async def stop(self) -> None:
        """Stop taking calls, then wait for live calls to end (up to the drain timeout)."""
        self.draining = True
        await self._update_intake()
        await self.idle.wait()
        await self.quality.stop(self.settings.request_timeout_s)
        await self.tasks.cancel_all()


def build_app(settings: Settings, instance: str) -> MediaWorkerApp:
    return MediaWorkerApp(settings, instance)
