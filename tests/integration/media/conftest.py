"""Real aiortc parties on loopback for the worker's media tests, with taps on their transports.

A party's taps are set on its own transport instance (test code observing a real peer): what it
sends before SRTP, what it receives after SRTP, and a loss filter on what it sends.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import is_rtx
from aiortc.codecs.vpx import vp8_depayload
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtpPacket, is_rtcp
from av import AudioFrame, VideoFrame

from tandem.media.call import CallOptions, MediaCall
from tandem.media.legs import Leg
from tandem.media.quality import CallQuality, QualityConfig, QualityReporter
from tandem.v1 import media_pb2

VIDEO_FPS = 30


def unreported(call_id: str) -> CallQuality:
    """A call's quality kept but never published (no bus)."""
    return QualityReporter("test-worker", QualityConfig()).for_call(call_id)


class MovingPicture(MediaStreamTrack):
    """320x240 video whose content changes every frame, so every frame is a different VP8 frame."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        rng = np.random.default_rng(7)
        self._noise = rng.integers(0, 255, (240 * 2, 320, 3), dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        await asyncio.sleep(1 / VIDEO_FPS)
        offset = (self._n * 4) % 240
        frame = VideoFrame.from_ndarray(self._noise[offset : offset + 240], format="rgb24")
        frame.pts = self._n * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


class Voice(MediaStreamTrack):
    """A 440 Hz tone in 20 ms frames at 48 kHz."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0

    async def recv(self) -> AudioFrame:
        await asyncio.sleep(0.02)
        t = (np.arange(960) + self._n * 960) / 48000
        samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


@dataclass
class Tap:
    """What one party's transport carried."""

    sent: list[RtpPacket] = field(default_factory=list)
    received: list[RtpPacket] = field(default_factory=list)
    rtcp_received: list[object] = field(default_factory=list)
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(10))
    dropped: int = 0


class Party:
    """One aiortc peer connection sending a moving picture and a voice (a tone unless given),
    counting what it plays and handing the audio it hears to `on_audio`."""

    def __init__(
        self,
        video_codecs: tuple[str, ...] = ("video/VP8", "video/H264"),
        voice: MediaStreamTrack | None = None,
        on_audio: Callable[[AudioFrame], None] | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tap = Tap()
        self.frames: dict[str, int] = defaultdict(int)
        self.on_audio = on_audio
        self._consumers: list[asyncio.Task[None]] = []
        self.pc.addTransceiver(voice or Voice(), direction="sendrecv")
        video = self.pc.addTransceiver(MovingPicture(), direction="sendrecv")
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        wanted = [c for mime in video_codecs for c in capabilities if c.mimeType == mime]
        video.setCodecPreferences(wanted + [c for c in capabilities if is_rtx(c)])

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._consumers.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames[track.kind] += 1
                if self.on_audio is not None and isinstance(frame, AudioFrame):
                    self.on_audio(frame)
        except MediaStreamError:
            return

    async def connect(self, call: MediaCall, leg: Leg) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await call.answer(leg, self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self._tap(self.dtls)

    @property
    def dtls(self) -> RTCDtlsTransport:
        return self.pc.getTransceivers()[0].receiver.transport

    def payload_types(self, mime: str) -> set[int]:
        codecs = [c for t in self.pc.getTransceivers() for c in t._codecs]
        return {c.payloadType for c in codecs if c.mimeType.lower() == mime and c.payloadType is not None}

    def _tap(self, dtls: RTCDtlsTransport) -> None:
        tap, extensions = self.tap, dtls._rtp_header_extensions_map
        send, handle_rtp, handle_rtcp = dtls._send_rtp, dtls._handle_rtp_data, dtls._handle_rtcp_data

        async def tapped_send(data: bytes) -> None:
            if not is_rtcp(data):
                tap.sent.append(RtpPacket.parse(data, extensions))
                if tap.loss and tap.rng.random() < tap.loss:
                    tap.dropped += 1
                    return
            await send(data)

        async def tapped_rtp(data: bytes, arrival_time_ms: int) -> None:
            tap.received.append(RtpPacket.parse(data, extensions))
            await handle_rtp(data, arrival_time_ms=arrival_time_ms)

        async def tapped_rtcp(data: bytes) -> None:
            tap.rtcp_received.extend(RtcpPacket.parse(data))
            await handle_rtcp(data)

        setattr(dtls, "_send_rtp", tapped_send)  # noqa: B010
        setattr(dtls, "_handle_rtp_data", tapped_rtp)  # noqa: B010
        setattr(dtls, "_handle_rtcp_data", tapped_rtcp)  # noqa: B010

    async def send_rtcp(self, packet: RtcpPsfbPacket) -> None:
        await self.dtls._send_rtp(bytes(packet))

    def video_sender_ssrc(self) -> int:
        return next(t.sender._ssrc for t in self.pc.getTransceivers() if t.kind == "video")

    async def close(self) -> None:
        for task in self._consumers:
            task.cancel()
        await self.pc.close()


def vp8_frames(packets: list[RtpPacket], payload_types: set[int]) -> dict[int, bytes]:
    """Complete VP8 frames by RTP timestamp, depacketised (RFC 7741)."""
    by_timestamp: dict[int, dict[int, RtpPacket]] = defaultdict(dict)
    for packet in packets:
        if packet.payload_type in payload_types:
            by_timestamp[packet.timestamp][packet.sequence_number] = packet
    frames = {}
    for timestamp, parts in by_timestamp.items():
        ordered = [parts[s] for s in sorted(parts, key=lambda s: (s - min(parts)) & 0xFFFF)]
        contiguous = all((b.sequence_number - a.sequence_number) & 0xFFFF == 1 for a, b in itertools.pairwise(ordered))
        if contiguous and ordered[-1].marker:
            frames[timestamp] = b"".join(vp8_depayload(p.payload) for p in ordered)
    return frames


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@dataclass
class Call:
    call: MediaCall
    shopper: Party
    host: Party
    events: list[tuple[Leg, int, str]]


CallFactory = Callable[..., Awaitable[Call]]


@pytest.fixture
async def media_call() -> object:
    made: list[Call] = []

    async def make(
        options: CallOptions | None = None,
        shopper: Party | None = None,
        host: Party | None = None,
    ) -> Call:
        events: list[tuple[Leg, int, str]] = []
        call = MediaCall(
            "call-1", RTCConfiguration(iceServers=[]), options or CallOptions(),
            lambda leg, kind, detail: events.append((leg, kind, detail)), unreported("call-1"),
        )  # fmt: skip
        made.append(result := Call(call, shopper or Party(), host or Party(), events))
        await result.shopper.connect(call, media_pb2.LEG_SHOPPER)
        await result.host.connect(call, media_pb2.LEG_HOST)
        return result

    yield make
    for c in made:
        await c.shopper.close()
        await c.host.close()
        await c.call.close()
