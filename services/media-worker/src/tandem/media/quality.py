"""Call quality (QoE) per leg and direction, as data.

Every few seconds each call samples its legs: aiortc's RTP statistics and the packets' audio
levels (through `rtpstats` taps) and the frames the call saw arrive. Each leg and direction
becomes a `MediaQuality` fact on JetStream (RTT, jitter, loss, NACKs, PLIs, bitrate, frame rate,
resolution, freezes, audio gaps, level, talk time, an E-model MOS) and a sample in the Prometheus
histograms; when the call is released, a `MediaQualitySummary` covers the whole call.

The call feeds frame arrivals through `CallQuality.frame_arrived` (one call per received frame,
decoded or still encoded) or wraps a received track with `CallQuality.observed`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

import nats.errors
from aiortc import MediaStreamTrack, RTCPeerConnection
from av import AudioFrame, VideoFrame
from av.frame import Frame
from av.packet import Packet
from prometheus_client import Counter, Histogram

from tandem.common import subjects
from tandem.common.aio import TaskSet
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.media import emodel
from tandem.media.forwarding import Inbound, Outbound
from tandem.media.legs import Leg, other
from tandem.media.rtpstats import ForwardedReceiverTap, ReceiverTap, RtpCounters, SenderTap, negotiated_codec
from tandem.media.settings import Settings
from tandem.media.stalls import AUDIO_GAP_S, AudioGapDetector, FreezeDetector, StallCounts
from tandem.v1 import media_pb2, quality_pb2

logger = logging.getLogger(__name__)

Direction: TypeAlias = quality_pb2.Direction.ValueType
DIRECTIONS: tuple[Direction, Direction] = (quality_pb2.DIRECTION_INBOUND, quality_pb2.DIRECTION_OUTBOUND)

_LABELS = ("direction", "kind")
RTT = Histogram(
    "tandem_media_quality_rtt_seconds", "Round-trip time per leg and window", ["direction"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
)  # fmt: skip
JITTER = Histogram(
    "tandem_media_quality_jitter_seconds", "RTP interarrival jitter per stream and window", _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16),
)  # fmt: skip
LOSS = Histogram(
    "tandem_media_quality_loss_ratio", "Packet loss fraction per stream and window", _LABELS,
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)  # fmt: skip
BITRATE = Histogram(
    "tandem_media_quality_bitrate_bps", "RTP payload bitrate per stream and window", _LABELS,
    buckets=(8e3, 16e3, 32e3, 64e3, 128e3, 256e3, 512e3, 1e6, 2e6, 4e6),
)  # fmt: skip
MOS = Histogram(
    "tandem_media_quality_mos", "E-model MOS of the audio per leg, direction and window", ["direction"],
    buckets=(1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4),
)  # fmt: skip
FRAME_RATE = Histogram(
    "tandem_media_quality_frame_rate", "Received video frames per second per leg and window",
    buckets=(1, 5, 10, 15, 20, 25, 30, 60),
)  # fmt: skip
FREEZE = Histogram(
    "tandem_media_quality_freeze_seconds", "Received video frozen (W3C definition) per leg and window",
    buckets=(0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)  # fmt: skip
AUDIO_GAP = Histogram(
    "tandem_media_quality_audio_gap_seconds", "Received audio in gaps over 200 ms per leg and window",
    buckets=(0.0, 0.25, 0.5, 1.0, 2.0, 5.0),
)  # fmt: skip
CALL_MOS_MIN = Histogram(
    "tandem_media_call_mos_min", "Worst window's MOS of a call, per leg and direction", ["direction"],
    buckets=(1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.4),
)  # fmt: skip
PUBLISH_FAILURES = Counter(
    "tandem_media_quality_publish_failures_total", "Quality facts the stream did not acknowledge", ["fact"]
)


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """``interval_s``: window length, s; ``talk_threshold_dbfs``: received audio at least this
    loud is talk (from a sender that marks no voice activity); ``jitter_buffer_ms``: least
    jitter-buffer delay in the E-model's one-way delay; ``summary_attempts``: publishes of a
    summary before it is given up (and logged)."""

    interval_s: float = 5.0
    talk_threshold_dbfs: float = -50.0
    jitter_buffer_ms: float = 40.0
    summary_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityConfig:
        return cls(
            interval_s=settings.quality_interval_s,
            talk_threshold_dbfs=settings.quality_talk_threshold_dbfs,
            jitter_buffer_ms=settings.quality_jitter_buffer_ms,
            summary_attempts=settings.quality_summary_attempts,
        )


@dataclass(frozen=True, slots=True)
class StreamTotals:
    """Cumulative figures of one stream (one leg, direction and kind) since it began."""

    rtp: RtpCounters = field(default_factory=RtpCounters)
    stalls: StallCounts = field(default_factory=StallCounts)
    width: int = 0
    height: int = 0


@dataclass(frozen=True, slots=True)
class AudioProcessing:
    """What the call-audio DSP says about a direction it processes (absent: not processed)."""

    echo_detected: bool | None = None
    erle_db: float | None = None
    noise_floor_dbfs: float | None = None


class _ReceivedFrames:
    """Frame arrivals of one received track (mutable: this runs for every frame)."""

    def __init__(self, kind: str) -> None:
        self.stalls = FreezeDetector() if kind == "video" else AudioGapDetector()
        self.width = self.height = 0

    def arrived(self, at_s: float, width: int, height: int) -> None:
        self.stalls.arrived(at_s)
        if width:
            self.width, self.height = width, height

    def totals(self, rtp: RtpCounters) -> StreamTotals:
        return StreamTotals(rtp=rtp, stalls=self.stalls.counts, width=self.width, height=self.height)


@dataclass
class _Worst:
    mos_min: float = math.inf
    audio_loss_max: float = 0.0
    video_loss_max: float = 0.0
    rtt_max_ms: float = 0.0


@dataclass
class _Stream:
    """One leg and direction: the totals at the last window's end, and the call so far."""

    started_m: float
    started_at: datetime
    window_m: float
    window_at: datetime
    before: dict[str, StreamTotals] = field(default_factory=dict)
    sequence: int = 0
    worst: _Worst = field(default_factory=_Worst)
    rtt_ms_sum: float = 0.0
    jitter_s_sum: dict[str, float] = field(default_factory=dict)


class _LegTaps:
    """The taps and frame arrivals of one leg's peer connection."""

    def __init__(self, pc: RTCPeerConnection, config: QualityConfig, attached_m: float, attached_at: datetime) -> None:
        self.attached_m, self.attached_at = attached_m, attached_at
        self.receivers: dict[str, ReceiverTap | ForwardedReceiverTap] = {}
        self.senders: dict[str, SenderTap] = {}
        self.codecs: dict[str, str] = {}
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            name, clock_rate = negotiated_codec(transceiver)
            self.codecs[kind] = name
            if transceiver.receiver is not None and kind not in self.receivers:
                self.receivers[kind] = ReceiverTap(transceiver.receiver, clock_rate, config.talk_threshold_dbfs)
            if transceiver.sender is not None and transceiver.sender.track is not None and kind not in self.senders:
                self.senders[kind] = SenderTap(transceiver.sender, clock_rate)
        self.frames = {kind: _ReceivedFrames(kind) for kind in self.receivers}
        self.processing = AudioProcessing()

    async def totals(self) -> dict[Direction, dict[str, StreamTotals]]:
        inbound = {kind: self.frames[kind].totals(tap.counters()) for kind, tap in self.receivers.items()}
        outbound = {kind: StreamTotals(rtp=await tap.counters()) for kind, tap in self.senders.items()}
        return {quality_pb2.DIRECTION_INBOUND: inbound, quality_pb2.DIRECTION_OUTBOUND: outbound}


class CallQuality:
    """Quality of one call: attach each leg's peer connection once negotiated, feed frame
    arrivals, `close()` before the peer connections close (it publishes the summary)."""

    def __init__(self, call_id: str, reporter: QualityReporter, config: QualityConfig) -> None:
        self.call_id = call_id
        self._reporter = reporter
        self._config = config
        self._clock = time.monotonic
        self._legs: dict[Leg, _LegTaps] = {}
        self._streams: dict[tuple[Leg, Direction], _Stream] = {}
        self._tasks = TaskSet(f"quality-{call_id}")
        self._sampler: asyncio.Task[None] | None = None
        self._started_at = datetime.now(UTC)
        self._sampled: tuple[float, datetime] | None = None  # the previous sample: monotonic s, UTC
        self.closed = False

    def attach(self, leg: Leg, pc: RTCPeerConnection) -> None:
        """Start measuring a leg whose offer was answered (its transceivers are negotiated)."""
        if self.closed or leg in self._legs:
            return
        self._legs[leg] = _LegTaps(pc, self._config, self._clock(), datetime.now(UTC))
        if self._sampler is None:
            self._sampler = self._tasks.spawn(self._sample_forever(), name=f"quality-{self.call_id}")

    def detach(self, leg: Leg) -> None:
        """Forget a leg that was released (a ringing host who did not take the call): what it
        sent while ringing was never part of the call."""
        self._legs.pop(leg, None)
        for direction in DIRECTIONS:
            self._streams.pop((leg, direction), None)

    def frame_arrived(self, leg: Leg, kind: str, *, width: int = 0, height: int = 0) -> None:
        """A frame of `kind` ("audio", "video") from `leg`'s party arrived, decoded or still encoded;
        ``width``/``height``: its size in pixels, 0 when unknown. Call once per frame."""
        taps = self._legs.get(leg)
        frames = taps.frames.get(kind) if taps is not None else None
        if frames is None:
            return
        frames.arrived(self._clock(), width, height)

    def frame_decoded(self, leg: Leg, frame: Frame) -> None:
        """`frame_arrived` for a decoded aiortc frame."""
        if isinstance(frame, VideoFrame):
            self.frame_arrived(leg, "video", width=frame.width, height=frame.height)
        elif isinstance(frame, AudioFrame):
            self.frame_arrived(leg, "audio")

    def observed(self, leg: Leg, track: MediaStreamTrack) -> MediaStreamTrack:
        """`track` as a track whose every received frame is fed to `frame_decoded`."""
        return _ObservedTrack(track, lambda frame: self.frame_decoded(leg, frame))

    def forwarded(self, source: Leg, kind: str, inbound: Inbound, outbound: Outbound) -> None:
        """A direction the worker forwards itself: what `source`'s party sends is measured on
        `inbound`, what the other party is sent on `outbound` (aiortc's taps see neither)."""
        into, out = self._legs.get(source), self._legs.get(other(source))
        if into is not None and kind in into.receivers:
            clock_rate = inbound.media.send_codec.clockRate
            threshold = self._config.talk_threshold_dbfs
            into.receivers[kind] = ForwardedReceiverTap(
                inbound,
                kind,
                clock_rate,
                threshold,
                lambda width, height: self.frame_arrived(source, kind, width=width, height=height),
            )
        if out is not None and kind in out.senders:
            out.senders[kind].forwarded = outbound

    def audio_processing(self, leg: Leg, report: AudioProcessing) -> None:
        """The call-audio DSP's latest findings on the audio received from `leg`."""
        if (taps := self._legs.get(leg)) is not None:
            taps.processing = report

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.interval_s)
            await self._sample_safely()

    async def _sample_safely(self) -> None:
        try:
            await self.sample()
        except Exception:  # a leg torn down mid-sample must neither end the measurements nor the call
            logger.exception("quality sample failed", extra={"call_id": self.call_id})

    async def sample(self) -> None:
        """Close the current window of every leg and direction; its facts are published in the
        background (a slow stream never holds up the call)."""
        now_m, now = self._clock(), datetime.now(UTC)
        facts = []
        previous, self._sampled = self._sampled, (now_m, now)
        for leg, taps in self._legs.items():
            totals = await taps.totals()
            rtt_ms = _rtt_ms(totals[quality_pb2.DIRECTION_OUTBOUND])
            # A stream's first window began at the previous sample, or when its leg was attached.
            start = previous if previous is not None and previous[0] > taps.attached_m else None
            start_m, start_at = start or (taps.attached_m, taps.attached_at)
            for direction in DIRECTIONS:
                stream = self._streams.get((leg, direction))
                if stream is None:
                    if not any(t.rtp.packets or t.rtp.lost for t in totals[direction].values()):
                        continue  # no media this way yet
                    stream = _Stream(started_m=start_m, started_at=start_at, window_m=start_m, window_at=start_at)
                    self._streams[(leg, direction)] = stream
                fact = self._window(leg, direction, stream, totals[direction], taps, rtt_ms, now_m, now)
                if fact is not None:
                    facts.append(fact)
        if facts:
            self._reporter.publish_windows(facts)

    def _window(self, leg: Leg, direction: Direction, stream: _Stream, totals: dict[str, StreamTotals],
                taps: _LegTaps, rtt_ms: float, now_m: float,
                now: datetime) -> quality_pb2.MediaQuality | None:  # fmt: skip
        duration = now_m - stream.window_m
        if duration <= 0.0:
            return None
        stream.sequence += 1
        fact = self._fact(leg, direction, totals, stream.before, taps, duration, rtt_ms, {})
        _set_window(fact, stream.sequence, stream.window_at, now)
        _observe(fact)
        self._remember(stream, fact, totals)
        stream.before, stream.window_m, stream.window_at = dict(totals), now_m, now
        return fact

    def _remember(self, stream: _Stream, fact: quality_pb2.MediaQuality, totals: dict[str, StreamTotals]) -> None:
        w = stream.worst
        if fact.HasField("audio"):
            w.mos_min = min(w.mos_min, fact.audio.mos)
            w.audio_loss_max = max(w.audio_loss_max, fact.audio.rtp.loss_fraction)
        if fact.HasField("video"):
            w.video_loss_max = max(w.video_loss_max, fact.video.rtp.loss_fraction)
        w.rtt_max_ms = max(w.rtt_max_ms, fact.rtt_ms)
        stream.rtt_ms_sum += fact.rtt_ms
        for kind, t in totals.items():
            stream.jitter_s_sum[kind] = stream.jitter_s_sum.get(kind, 0.0) + t.rtp.jitter_s

    def _fact(self, leg: Leg, direction: Direction, now: dict[str, StreamTotals], before: dict[str, StreamTotals],
              taps: _LegTaps, duration_s: float, rtt_ms: float,
              jitter_s: dict[str, float]) -> quality_pb2.MediaQuality:  # fmt: skip
        """The figures between two totals; `jitter_s` overrides the latest jitter (summaries)."""
        fact = quality_pb2.MediaQuality(
            call_id=self.call_id, leg=leg, direction=direction, rtt_ms=rtt_ms, worker_id=self._reporter.worker_id
        )
        for kind, t in now.items():
            b = before.get(kind, StreamTotals())
            rtp = _rtp(t.rtp, b.rtp, duration_s, jitter_s.get(kind, t.rtp.jitter_s))
            stalls = t.stalls - b.stalls
            codec = taps.codecs.get(kind, "")
            if kind == "audio":
                audio = fact.audio
                audio.rtp.CopyFrom(rtp)
                audio.codec = codec
                audio.gaps, audio.gap_duration_s = stalls.stalls, stalls.stall_s
                audio.talk_time_s = t.rtp.talk_s - b.rtp.talk_s
                if (metered := t.rtp.level_packets - b.rtp.level_packets) > 0:
                    power = (t.rtp.level_power - b.rtp.level_power) / metered
                    audio.level_dbfs = 10.0 * math.log10(max(power, 1e-13))
                if direction == quality_pb2.DIRECTION_INBOUND:
                    _set_processing(audio, taps.processing)
                model_codec = emodel.CODECS.get(codec, emodel.OPUS)
                audio.delay_ms = (
                    rtt_ms / 2.0 + model_codec.delay_ms + max(self._config.jitter_buffer_ms, 2.0 * rtp.jitter_ms)
                )
                if rtp.packets or duration_s <= AUDIO_GAP_S:
                    rating = emodel.rate_call(audio.delay_ms, rtp.loss_fraction, model_codec)
                    audio.r_factor, audio.mos = rating.r, rating.mos
                else:  # nothing was heard for longer than a gap: the worst rating, not the loss-free one
                    audio.r_factor, audio.mos = 0.0, emodel.mos_from_r(0.0)
            else:
                video = fact.video
                video.rtp.CopyFrom(rtp)
                video.codec = codec
                video.frames = stalls.frames
                video.frame_rate = stalls.frames / duration_s
                video.width, video.height = t.width, t.height
                video.freezes, video.freeze_duration_s = stalls.stalls, stalls.stall_s
        return fact

    def summary(self) -> quality_pb2.MediaQualitySummary:
        """Every leg and direction that carried media, over the whole call."""
        ended = datetime.now(UTC)
        summary = quality_pb2.MediaQualitySummary(call_id=self.call_id, worker_id=self._reporter.worker_id)
        summary.started_at.FromDatetime(self._started_at)
        summary.ended_at.FromDatetime(ended)
        for (leg, direction), stream in self._streams.items():
            if not (n := stream.sequence):
                continue
            jitter = {kind: total / n for kind, total in stream.jitter_s_sum.items()}
            total = self._fact(
                leg, direction, stream.before, {}, self._legs[leg], max(stream.window_m - stream.started_m, 1e-9),
                stream.rtt_ms_sum / n, jitter,
            )  # fmt: skip
            _set_window(total, n, stream.started_at, stream.window_at)
            w = stream.worst
            leg_summary = quality_pb2.LegQualitySummary(
                total=total, mos_min=0.0 if math.isinf(w.mos_min) else w.mos_min,
                audio_loss_max=w.audio_loss_max, video_loss_max=w.video_loss_max, rtt_max_ms=w.rtt_max_ms,
            )  # fmt: skip
            summary.legs.append(leg_summary)
        return summary

    async def close(self) -> None:
        """Take the last window, publish the summary (in the background, retried); idempotent."""
        if self.closed:
            return
        self.closed = True
        await self._tasks.cancel_all()
        await self._sample_safely()
        summary = self.summary()
        for leg in summary.legs:
            if leg.total.HasField("audio"):
                CALL_MOS_MIN.labels(quality_pb2.Direction.Name(leg.total.direction)).observe(leg.mos_min)
        if summary.legs:
            self._reporter.publish_summary(summary)


class QualityReporter:
    """A worker's quality facts to JetStream: windows best effort (the next one follows), the
    summary retried with backoff until the stream acknowledges it."""

    def __init__(self, worker_id: str, config: QualityConfig) -> None:
        self.worker_id = worker_id
        self.config = config
        self._bus: Bus | None = None
        self._tasks = TaskSet("quality-facts")

    async def start(self, bus: Bus) -> None:
        self._bus = bus
        await bus.ensure_stream(subjects.QUALITY_STREAM)

    def for_call(self, call_id: str) -> CallQuality:
        return CallQuality(call_id, self, self.config)

    def publish_windows(self, facts: list[quality_pb2.MediaQuality]) -> None:
        self._tasks.spawn(self._publish_windows(facts), name=f"quality-windows-{facts[0].call_id}")

    async def _publish_windows(self, facts: list[quality_pb2.MediaQuality]) -> None:
        if self._bus is None:
            return
        for fact in facts:
            leg, direction = media_pb2.Leg.Name(fact.leg), quality_pb2.Direction.Name(fact.direction)
            try:
                await self._bus.publish_fact(
                    subjects.join(subjects.QUALITY_WINDOWS, fact.call_id), fact,
                    msg_id=f"{self.worker_id}.{fact.call_id}.{leg}.{direction}.{fact.sequence}",
                )  # fmt: skip
            except (TandemError, nats.errors.Error) as exc:
                PUBLISH_FAILURES.labels("window").inc()
                logger.warning("quality window not published", extra={"call_id": fact.call_id, "error": str(exc)})

    def publish_summary(self, summary: quality_pb2.MediaQualitySummary) -> None:
        self._tasks.spawn(self._publish_summary(summary), name=f"quality-summary-{summary.call_id}")

    async def _publish_summary(self, summary: quality_pb2.MediaQualitySummary) -> None:
        bus = self._bus
        if bus is None:
            return
        subject = subjects.join(subjects.QUALITY_SUMMARIES, summary.call_id)
        for attempt in range(1, self.config.summary_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
            try:
                await bus.publish_fact(subject, summary, msg_id=f"{self.worker_id}.{summary.call_id}.summary")
                return
            except (TandemError, nats.errors.Error) as exc:
                logger.warning(
                    "quality summary not published",
                    extra={"call_id": summary.call_id, "attempt": attempt, "error": str(exc)},
                )
        PUBLISH_FAILURES.labels("summary").inc()
        logger.error("quality summary given up", extra={"call_id": summary.call_id})

    async def stop(self, timeout_s: float) -> None:
        """Give facts still being published `timeout_s` to land, then cancel them."""
        await self._tasks.wait(timeout_s)
        await self._tasks.cancel_all()


class _ObservedTrack(MediaStreamTrack):
    """A received track whose frames are shown to an observer on their way through."""

    def __init__(self, track: MediaStreamTrack, observe: Callable[[Frame], None]) -> None:
        super().__init__()
        self.kind = track.kind
        self._track = track
        self._observe = observe

    async def recv(self) -> Frame | Packet[Any]:
        frame = await self._track.recv()
        if isinstance(frame, Frame):
            self._observe(frame)
        return frame


def _rtp(now: RtpCounters, before: RtpCounters, duration_s: float, jitter_s: float) -> quality_pb2.RtpQuality:
    packets = max(0, now.packets - before.packets)
    lost = max(0, now.lost - before.lost)
    return quality_pb2.RtpQuality(
        packets=packets,
        packets_lost=lost,
        loss_fraction=lost / (packets + lost) if packets + lost else 0.0,
        jitter_ms=1000.0 * jitter_s,
        bitrate_bps=8.0 * max(0, now.bytes - before.bytes) / duration_s,
        nacks=max(0, now.nacks - before.nacks),
        plis=max(0, now.plis - before.plis),
    )


def _rtt_ms(outbound: dict[str, StreamTotals]) -> float:
    """The leg's RTT: the mean over its senders that have measured one, ms; 0 before any."""
    rtts = [t.rtp.rtt_s for t in outbound.values() if t.rtp.rtt_s is not None]
    return 1000.0 * sum(rtts) / len(rtts) if rtts else 0.0


def _set_window(fact: quality_pb2.MediaQuality, sequence: int, start: datetime, end: datetime) -> None:
    fact.sequence = sequence
    fact.window_start.FromDatetime(start)
    fact.window_end.FromDatetime(end)


def _set_processing(audio: quality_pb2.AudioQuality, report: AudioProcessing) -> None:
    if report.echo_detected is not None:
        audio.echo_detected = report.echo_detected
    if report.erle_db is not None:
        audio.erle_db = report.erle_db
    if report.noise_floor_dbfs is not None:
        audio.noise_floor_dbfs = report.noise_floor_dbfs


def _observe(fact: quality_pb2.MediaQuality) -> None:
    """The window into the Prometheus histograms."""
    direction = quality_pb2.Direction.Name(fact.direction)
    if fact.rtt_ms:
        RTT.labels(direction).observe(fact.rtt_ms / 1000.0)
    streams = [("audio", fact.audio.rtp)] if fact.HasField("audio") else []
    streams += [("video", fact.video.rtp)] if fact.HasField("video") else []
    for kind, rtp in streams:
        JITTER.labels(direction, kind).observe(rtp.jitter_ms / 1000.0)
        LOSS.labels(direction, kind).observe(rtp.loss_fraction)
        BITRATE.labels(direction, kind).observe(rtp.bitrate_bps)
    if fact.HasField("audio"):
        MOS.labels(direction).observe(fact.audio.mos)
    if fact.direction == quality_pb2.DIRECTION_INBOUND:
        if fact.HasField("video"):
            FRAME_RATE.observe(fact.video.frame_rate)
            FREEZE.observe(fact.video.freeze_duration_s)
        if fact.HasField("audio"):
            AUDIO_GAP.observe(fact.audio.gap_duration_s)
