"""Call quality facts from real calls: two aiortc parties on loopback through a media worker, the
facts read back from JetStream. One clean call; one whose shopper loses 5 % of the RTP packets it
sends and whose camera stalls for a second, and whose host loses 5 % of the packets it is sent."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import is_rtcp
from av import VideoFrame
from prometheus_client import REGISTRY

from tandem.common import subjects
from tandem.common.bus import Bus, decode
from tandem.common.http import HttpServer
from tandem.devstack.media import PatternTrack, ToneTrack
from tandem.devstack.nats import NatsServer
from tandem.media.app import MediaWorkerApp
from tandem.media.quality import AudioProcessing, QualityConfig, QualityReporter
from tandem.media.settings import Settings
from tandem.v1 import common_pb2, media_pb2, quality_pb2

pytestmark = pytest.mark.integration

CALL_S = 7.0
SHOPPER, HOST = media_pb2.LEG_SHOPPER, media_pb2.LEG_HOST
INBOUND, OUTBOUND = quality_pb2.DIRECTION_INBOUND, quality_pb2.DIRECTION_OUTBOUND


class StallingPattern(PatternTrack):
    """The test pattern, whose camera stops for `stall_s` once, after `stall_at` frames."""

    def __init__(self, shade: int, stall_at: int, stall_s: float) -> None:
        super().__init__(shade)
        self.stall_at, self.stall_s = stall_at, stall_s

    async def recv(self) -> VideoFrame:
        if self._n == self.stall_at:
            await asyncio.sleep(self.stall_s)
            self._start += self.stall_s  # then on at the camera's pace, no burst of late frames
        return await super().recv()


def drop_rtp(pc: RTCPeerConnection, way: str, every: int) -> Callable[[], int]:
    """Drop every `every`-th RTP packet of each stream (SSRC; media and retransmissions, not RTCP)
    this party sends (`way` "send") or receives ("receive"), on this peer connection's transport
    only: loss of exactly 1/every, spread evenly (random-like, no bursts). Returns a counter of the
    packets dropped."""
    transport = pc.getTransceivers()[0].sender.transport
    method = {"send": "_send_rtp", "receive": "_handle_rtp_data"}[way]
    passed_on = getattr(transport, method)
    seen: collections.Counter[bytes] = collections.Counter()

    async def lossy(data: bytes, *args: Any, **kwargs: Any) -> None:
        if not is_rtcp(data):
            ssrc = data[8:12]
            seen[ssrc] += 1
            if seen[ssrc] % every == 0:
                return
        await passed_on(data, *args, **kwargs)

    setattr(transport, method, lossy)
    return lambda: sum(n // every for n in seen.values())


@dataclass
class Party:
    pc: RTCPeerConnection
    received: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await self.pc.close()


async def join(
    bus: Bus, call_id: str, leg: media_pb2.Leg.ValueType, video: MediaStreamTrack,
    before_answer: Callable[[RTCPeerConnection], object] = lambda _: None,
) -> Party:  # fmt: skip
    """A party that offers a tone and `video` to worker w1 and reads what it is sent."""
    party = Party(RTCPeerConnection(RTCConfiguration(iceServers=[])))

    async def read(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                party.received[track.kind] += 1

    party.pc.on("track", lambda track: party.readers.append(asyncio.create_task(read(track))))
    party.pc.addTrack(ToneTrack(440.0 if leg == SHOPPER else 660.0))
    party.pc.addTrack(video)
    await party.pc.setLocalDescription(await party.pc.createOffer())
    answer = await bus.request(
        subjects.join(subjects.MEDIA_WORKER, "w1", "offer"),
        media_pb2.MediaOffer(call_id=call_id, leg=leg, sdp=party.pc.localDescription.sdp),
        media_pb2.MediaAnswer,
        timeout_s=10.0,
    )
    before_answer(party.pc)
    await party.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
    return party


@pytest.fixture
async def worker(bus: Bus) -> AsyncIterator[MediaWorkerApp]:
    app = MediaWorkerApp(Settings(region="eu", quality_interval_s=1.0), "w1")
    await app.start(bus, HttpServer("127.0.0.1", 0))
    yield app
    await app.stop()


@dataclass
class CallFacts:
    windows: list[quality_pb2.MediaQuality]
    summary: quality_pb2.MediaQualitySummary

    def of(
        self, leg: media_pb2.Leg.ValueType, direction: quality_pb2.Direction.ValueType
    ) -> quality_pb2.LegQualitySummary:
        (found,) = [s for s in self.summary.legs if (s.total.leg, s.total.direction) == (leg, direction)]
        return found


async def stream_messages(bus: Bus, subject: str, expected_at_least: int) -> list[bytes]:
    sub = await bus.js.pull_subscribe(subject, stream=subjects.QUALITY_STREAM.name)
    data: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        while True:
            msgs = await sub.fetch(100, timeout=1.0 if len(data) < expected_at_least else 0.3)
            data += [m.data for m in msgs]
    await sub.unsubscribe()
    return data


async def run_call(
    bus: Bus, call_id: str, shopper_video: MediaStreamTrack,
    shopper_transport: Callable[[RTCPeerConnection], object] = lambda _: None,
    host_transport: Callable[[RTCPeerConnection], object] = lambda _: None,
    during: Callable[[], object] = lambda: None,
) -> CallFacts:  # fmt: skip
    await bus.request(
        subjects.join(subjects.MEDIA_ALLOCATE, "eu"), media_pb2.MediaAllocate(call_id=call_id),
        media_pb2.MediaAllocated,
    )  # fmt: skip
    shopper = await join(bus, call_id, SHOPPER, shopper_video, shopper_transport)
    host = await join(bus, call_id, HOST, PatternTrack(40), host_transport)
    during()
    await asyncio.sleep(CALL_S)
    assert min(shopper.received["video"], host.received["video"]) > 30, "media did not flow both ways"
    await bus.request(
        subjects.join(subjects.MEDIA_WORKER, "w1", "release"),
        media_pb2.MediaRelease(call_id=call_id, reason=common_pb2.END_REASON_HANGUP), media_pb2.MediaRelease,
        timeout_s=10.0,
    )  # fmt: skip
    await shopper.close()
    await host.close()
    windows = [
        decode(quality_pb2.MediaQuality, data)
        for data in await stream_messages(bus, subjects.join(subjects.QUALITY_WINDOWS, call_id), 16)
    ]
    (summary,) = [
        decode(quality_pb2.MediaQualitySummary, data)
        for data in await stream_messages(bus, subjects.join(subjects.QUALITY_SUMMARIES, call_id), 1)
    ]
    return CallFacts(windows, summary)


def report(name: str, facts: CallFacts) -> None:
    for s in facts.summary.legs:
        t = s.total
        print(
            f"{name} {media_pb2.Leg.Name(t.leg)} {quality_pb2.Direction.Name(t.direction)}: rtt {t.rtt_ms:.1f} ms, "
            f"audio loss {t.audio.rtp.loss_fraction:.3f} jitter {t.audio.rtp.jitter_ms:.1f} ms MOS {t.audio.mos:.2f} "
            f"(min {s.mos_min:.2f}) level {t.audio.level_dbfs:.1f} dBFS talk {t.audio.talk_time_s:.1f} s "
            f"gaps {t.audio.gaps}; video loss {t.video.rtp.loss_fraction:.3f} {t.video.frame_rate:.1f} fps "
            f"{t.video.width}x{t.video.height} {t.video.rtp.bitrate_bps / 1000:.0f} kbit/s nacks {t.video.rtp.nacks} "
            f"plis {t.video.rtp.plis} freezes {t.video.freezes} ({t.video.freeze_duration_s:.2f} s)"
        )


async def test_quality_facts_of_a_clean_call_and_a_lossy_stalling_one(bus: Bus, worker: MediaWorkerApp) -> None:
    def metric(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    mos_samples = metric("tandem_media_quality_mos_count", direction="DIRECTION_INBOUND")
    frozen_s = metric("tandem_media_quality_freeze_seconds_sum")
    unpublished = metric("tandem_media_quality_publish_failures_total", fact="window")
    # The host's direction is processed by the call-audio DSP, which reports what it finds.
    dsp = AudioProcessing(echo_detected=True, erle_db=21.5, noise_floor_dbfs=-62.0)
    clean = await run_call(
        bus, "clean", PatternTrack(200), during=lambda: worker.calls["clean"].quality.audio_processing(HOST, dsp)
    )
    dropped: list[Callable[[], int]] = []
    lossy = await run_call(
        bus, "lossy", StallingPattern(200, stall_at=90, stall_s=1.0),
        lambda pc: dropped.append(drop_rtp(pc, "send", every=20)),
        lambda pc: dropped.append(drop_rtp(pc, "receive", every=20)),
    )  # fmt: skip
    report("clean", clean)
    report("lossy", lossy)
    assert all(count() > 0 for count in dropped)
    # A window the stream did not acknowledge in time (a busy machine) is counted, never lost silently.
    failed = metric("tandem_media_quality_publish_failures_total", fact="window") - unpublished

    # Windows every second for each leg and direction, numbered, each a second or so long.
    for leg in (SHOPPER, HOST):
        for direction in (INBOUND, OUTBOUND):
            seq = [w.sequence for w in clean.windows if (w.leg, w.direction) == (leg, direction)]
            assert seq == sorted(set(seq))  # in order, each once
            assert seq[0] == 1
            assert seq[-1] <= len(seq) + failed  # none missing but those counted as unpublished
            assert len(seq) + failed >= CALL_S - 2
    assert all(w.worker_id == "w1" and w.call_id == "clean" for w in clean.windows)
    assert {w.audio.codec for w in clean.windows} == {"opus"}
    assert {w.video.codec for w in clean.windows} == {"vp8"}

    # Plausible figures on loopback (the machine may be busy: CPU starvation shows as jitter, fewer
    # frames and freezes, never as packet loss): what arrived at the worker from the shopper ...
    inbound = clean.of(SHOPPER, INBOUND).total
    duration_s = inbound.window_end.ToMicroseconds() / 1e6 - inbound.window_start.ToMicroseconds() / 1e6
    assert CALL_S - 1.0 < duration_s < CALL_S + 3.0
    assert inbound.audio.rtp.loss_fraction < 0.01
    assert -15.0 < inbound.audio.level_dbfs < -12.0  # a sine at 0.3 of full scale: -13.5 dBFS
    assert 0.3 * duration_s < inbound.audio.talk_time_s <= duration_s  # the tone never stops
    assert (inbound.video.width, inbound.video.height) == (320, 240)
    assert 3.0 < inbound.video.frame_rate <= 31.0  # 30 fps sent
    assert 10_000 < inbound.video.rtp.bitrate_bps < 3_000_000
    assert 0.0 < inbound.rtt_ms < 250.0
    assert 3.8 < inbound.audio.mos <= 4.5
    # ... and what the host's receiver reports of what the worker sent it.
    outbound = clean.of(HOST, OUTBOUND).total
    assert outbound.audio.rtp.packets > 100
    assert outbound.audio.rtp.loss_fraction < 0.01
    assert outbound.video.rtp.bitrate_bps > 10_000
    assert not outbound.audio.HasField("level_dbfs")  # the worker hears no party's playback

    processed = clean.of(HOST, INBOUND).total.audio
    assert (processed.echo_detected, processed.erle_db, processed.noise_floor_dbfs) == (True, 21.5, -62.0)
    assert all(w.audio.erle_db == 21.5 for w in clean.windows if (w.leg, w.direction) == (HOST, INBOUND))
    assert not inbound.audio.HasField("erle_db")  # the shopper's direction was not processed

    # 5 % of the shopper's packets lost: higher loss, lower MOS, NACKs.
    lossy_inbound = lossy.of(SHOPPER, INBOUND)
    assert 0.02 < lossy_inbound.total.audio.rtp.loss_fraction < 0.10
    assert lossy_inbound.total.video.rtp.loss_fraction > 0.02
    assert lossy_inbound.total.video.rtp.nacks > 0
    assert lossy_inbound.total.audio.mos < inbound.audio.mos - 0.2
    # The one-second stall is a freeze at least that long, in one window.
    stall = max(
        (w.video for w in lossy.windows if (w.leg, w.direction) == (SHOPPER, INBOUND)),
        key=lambda video: video.freeze_duration_s,
    )
    assert stall.freezes >= 1
    assert stall.freeze_duration_s >= 0.95
    assert lossy_inbound.total.video.freeze_duration_s >= stall.freeze_duration_s
    # The host lost 5 % of what the worker sent it: its receiver reports say so, and it asked again.
    lossy_outbound = lossy.of(HOST, OUTBOUND)
    assert 0.02 < lossy_outbound.total.audio.rtp.loss_fraction < 0.10
    assert lossy_outbound.total.video.rtp.nacks > 0
    assert lossy_outbound.total.audio.mos < outbound.audio.mos - 0.2

    # The same windows went into the Prometheus histograms.
    windows_in = sum(1 for f in (clean, lossy) for w in f.windows if w.direction == INBOUND)
    assert windows_in <= metric("tandem_media_quality_mos_count", direction="DIRECTION_INBOUND") - mos_samples
    assert metric("tandem_media_quality_mos_count", direction="DIRECTION_INBOUND") - mos_samples <= windows_in + failed
    assert metric("tandem_media_quality_freeze_seconds_sum") - frozen_s >= stall.freeze_duration_s
    # The host's uplink was clean.
    assert lossy.of(HOST, INBOUND).total.audio.rtp.loss_fraction < 0.01


async def test_a_summary_survives_a_nats_restart_and_lands_once(
    bus: Bus, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = QualityReporter("w1", QualityConfig(summary_attempts=6))
    await reporter.start(bus)
    summary = quality_pb2.MediaQualitySummary(call_id="restart", worker_id="w1")
    summary.legs.add().total.CopyFrom(quality_pb2.MediaQuality(call_id="restart", leg=SHOPPER, direction=INBOUND))
    nats_server.stop()
    reporter.publish_summary(summary)  # as a call released while the bus is down
    await asyncio.sleep(1.5)
    nats_server.start()
    subject = subjects.join(subjects.QUALITY_SUMMARIES, "restart")
    for _ in range(300):
        if bus.connected:
            info = await bus.js.stream_info(subjects.QUALITY_STREAM.name, subjects_filter=subject)
            if (info.state.subjects or {}).get(subject):
                break
        await asyncio.sleep(0.1)
    await reporter.stop(timeout_s=5.0)
    (data,) = await stream_messages(bus, subject, 1)
    assert decode(quality_pb2.MediaQualitySummary, data) == summary
    assert any(r.message == "quality summary not published" for r in caplog.records)  # it took a retry
