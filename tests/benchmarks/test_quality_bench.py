"""What measuring call quality costs the media worker, beside the work it rides on, in one run:

- per received RTP packet: what the quality tap adds (a receiver whose own handling is a no-op,
  with and without the tap) beside aiortc's receive path (statistics, NACK generator, jitter
  buffer, the decoder queue; a decoder thread decoding beside it) for real Opus and VP8 packets;
  audio packets carry the audio-level header extension, as aiortc's and browsers' senders send it;
- per received frame: `CallQuality.frame_decoded` (freeze or gap detector, frame size) beside
  decoding that frame (Opus 20 ms at 48 kHz, VP8 320x240).

Run: `make bench PYTEST_ARGS="-k quality"` (prints the table; numbers go in docs/benchmarks.md).
"""

from __future__ import annotations

import fractions
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpCodecParameters
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

from tandem.media.quality import CallQuality, QualityConfig, QualityReporter
from tandem.media.rtpstats import ReceiverTap
from tandem.v1 import media_pb2

ROUNDS = 5
SECONDS_OF_MEDIA = 20
CODECS = {
    "audio": RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111),
    "video": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96),
}


def audio_frames(n: int) -> list[av.AudioFrame]:
    frames = []
    for i in range(n):
        t = (np.arange(960) + 960 * i) / 48_000
        samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, 960 * i, fractions.Fraction(1, 48_000)
        frames.append(frame)
    return frames


def video_frames(n: int) -> list[av.VideoFrame]:
    frames = []
    for i in range(n):
        image = np.full((240, 320, 3), 200, dtype=np.uint8)
        image[:, (4 * i) % 320 : (4 * i) % 320 + 16] = 255
        image[(7 * i) % 240 :: 17, :] = (i * 13) % 256  # some texture, so frames are not trivially small
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = 3000 * i, fractions.Fraction(1, 90_000)
        frames.append(frame)
    return frames


def rtp_packets(kind: str) -> list[RtpPacket]:
    """Real encoded media, packetised as aiortc's sender does."""
    frames: list[av.AudioFrame] | list[av.VideoFrame] = (
        audio_frames(50 * SECONDS_OF_MEDIA) if kind == "audio" else video_frames(30 * SECONDS_OF_MEDIA)
    )
    encoder = get_encoder(CODECS[kind])
    packets: list[RtpPacket] = []
    for frame in frames:
        payloads, timestamp = encoder.encode(frame, force_keyframe=not packets)
        for j, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=CODECS[kind].payloadType or 0, sequence_number=len(packets) % 65536,
                timestamp=timestamp, ssrc=0x1234, marker=int(j == len(payloads) - 1), payload=payload,
            )  # fmt: skip
            if kind == "audio":
                packet.extensions.audio_level = (False, 30)
            packets.append(packet)
    return packets


async def receive_us_per_packet(kind: str, packets: list[RtpPacket]) -> float:
    """aiortc's own receive path, µs per packet."""
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver(kind).receiver
        receiver._track = RemoteStreamTrack(kind)  # as setRemoteDescription does
        await receiver.receive(RTCRtpReceiveParameters(codecs=[CODECS[kind]]))
        start = time.perf_counter()
        for packet in packets:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
        return (time.perf_counter() - start) / len(packets) * 1e6
    finally:
        await pc.close()


async def tap_us_per_packet(kind: str, packets: list[RtpPacket]) -> float:
    """What the quality tap adds per packet: a receiver whose own handling is a no-op, with and
    without the tap (isolates the tap from the receive path's noise)."""
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver(kind).receiver

        async def nothing(packet: RtpPacket, arrival_time_ms: int) -> None:
            return None

        costs = []
        for tapped in (False, True):
            receiver._handle_rtp_packet = nothing  # type: ignore[method-assign]
            if tapped:
                ReceiverTap(receiver, CODECS[kind].clockRate, -50.0)
            start = time.perf_counter()
            for packet in packets:
                await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
            costs.append((time.perf_counter() - start) / len(packets) * 1e6)
        return costs[1] - costs[0]
    finally:
        await pc.close()


def per_call_us(work: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        work()
    return (time.perf_counter() - start) / n * 1e6


def opus_stream() -> tuple[list[Any], Any]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "mono", "s16"
    packets = [p for frame in audio_frames(500) for p in encoder.encode(frame)] + list(encoder.encode(None))
    return packets, av.CodecContext.create("opus", "r")


def vp8_stream() -> tuple[list[Any], Any]:
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90_000)
    frames = [f.reformat(format="yuv420p") for f in video_frames(300)]
    packets = [p for frame in frames for p in encoder.encode(frame)] + list(encoder.encode(None))
    return packets, av.CodecContext.create("libvpx", "r")


def decode_and_observe_us(stream: tuple[list[Any], Any], quality: CallQuality) -> tuple[float, float]:
    """µs per frame: decoding it (PyAV, as aiortc's decoders do), and `frame_decoded` on it."""
    packets, decoder = stream
    decoded: list[av.frame.Frame] = []
    start = time.perf_counter()
    for packet in packets:
        decoded += decoder.decode(packet)
    decode_us = (time.perf_counter() - start) / len(decoded) * 1e6
    frames = iter(decoded * 10)
    observe_us = per_call_us(lambda: quality.frame_decoded(media_pb2.LEG_SHOPPER, next(frames)), len(decoded) * 10)
    return decode_us, observe_us


async def test_what_measuring_quality_costs() -> None:
    rows = []
    for kind in ("audio", "video"):
        packets = rtp_packets(kind)
        receive, tap = [], []
        for _ in range(ROUNDS):  # interleaved, so drifting machine load hits both alike
            receive.append(await receive_us_per_packet(kind, packets))
            tap.append(await tap_us_per_packet(kind, packets))
        rows.append((f"{kind} RTP packet received", statistics.median(tap), "aiortc receive path",
                     statistics.median(receive)))  # fmt: skip

    quality = CallQuality("bench", QualityReporter("bench", QualityConfig()), QualityConfig())
    pc = RTCPeerConnection()
    for kind in ("audio", "video"):
        pc.addTransceiver(kind)
    quality.attach(media_pb2.LEG_SHOPPER, pc)
    for kind, stream in (("audio", opus_stream()), ("video", vp8_stream())):
        decode_us, observe_us = decode_and_observe_us(stream, quality)
        rows.append((f"{kind} frame received", observe_us, f"{kind} decode", decode_us))
    await quality.close()
    await pc.close()

    print(f"\ncall-quality cost, {datetime.now(UTC):%Y-%m-%d}, median of {ROUNDS} rounds for packets")
    print(f"{'what':<28} {'quality µs':>11} {'baseline':<22} {'µs':>8} {'ratio':>7}")
    for what, cost, baseline, base_us in rows:
        print(f"{what:<28} {cost:>11.2f} {baseline:<22} {base_us:>8.2f} {cost / base_us:>7.3f}")
