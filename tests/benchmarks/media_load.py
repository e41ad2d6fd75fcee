"""Load generator for the media worker's capacity benchmark (run as its own process).

Each call is two aiortc parties negotiated with the worker over NATS (allocate, offer, answer).
Once a party is connected its media is not produced by aiortc: pre-encoded VP8 640x480 30 fps and
20 ms Opus packets are replayed straight onto its SRTP session and UDP socket, each party at its own
phase, and what comes back is counted from the RTP header (the header is not encrypted: marker bit
and payload type) without decrypting or decoding. That keeps the generator several times cheaper
per packet than the worker, so it is not the bottleneck. The worker's CPU time comes from
/proc/<pid>/stat and its event-loop lag from its /metrics.

    python tests/benchmarks/media_load.py prepare MATERIAL
    python tests/benchmarks/media_load.py run MATERIAL --nats URL --worker-pid PID --metrics URL \
        --levels 10,20,40 --settle 3 --seconds 6

prints one JSON object per level on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import pickle
import random
import struct
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from prometheus_client.parser import text_string_to_metric_families

from tandem.common import subjects
from tandem.common.bus import Bus, BusConfig
from tandem.v1 import media_pb2

FPS = 30
SECONDS = 10
WIDTH, HEIGHT = 640, 480
VIDEO_BITRATE = 1_200_000
OPUS_BITRATE = 32_000
TICK_S = 0.005
REGION = "bench"


@dataclass
class Material:
    video: list[list[bytes]]
    """RTP payloads of each frame (VP8 descriptor included), a keyframe every 2 s."""
    audio: list[bytes]
    """20 ms Opus packets."""


def prepare(path: Path) -> None:
    """Encode 10 s of moving, noisy 640x480 video and of noise-modulated tones, once."""
    rng = np.random.default_rng(2024)
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.bit_rate = VIDEO_BITRATE
    encoder.framerate = fractions.Fraction(FPS, 1)
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.gop_size = 2 * FPS
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    base = rng.integers(0, 256, (HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    packer = Vp8Encoder()
    video = []
    for n in range(FPS * SECONDS):
        y, x = (n * 3) % HEIGHT, (n * 5) % WIDTH
        picture = base[y : y + HEIGHT, x : x + WIDTH].copy()
        picture[:, :, 1] = np.uint8((n * 4) % 256)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        frame.time_base = encoder.time_base
        for packet in encoder.encode(frame):
            payloads, _ = packer.pack(packet)
            video.append(payloads)
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format, opus.bit_rate = 48000, "mono", "s16", OPUS_BITRATE
    opus.time_base = fractions.Fraction(1, 48000)
    audio: list[bytes] = []
    for n in range(50 * SECONDS):
        t = (np.arange(960) + n * 960) / 48000
        tone = np.sin(2 * np.pi * (180 + 40 * np.sin(t)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        samples = ((tone + 0.05 * rng.standard_normal(960)) * 8000).astype(np.int16).reshape(1, -1)
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        sound.sample_rate, sound.pts = 48000, n * 960
        audio.extend(bytes(p) for p in opus.encode(sound))
    path.write_bytes(pickle.dumps({"video": video, "audio": audio}))
    sizes = [sum(len(p) for p in f) for f in video]
    summary = {"frames": len(video), "video_kbps": sum(sizes) * 8 / SECONDS / 1000, "audio_packets": len(audio)}
    print(json.dumps(summary))


def load(path: Path) -> Material:
    return Material(**pickle.loads(path.read_bytes()))


class Idle(MediaStreamTrack):
    """A sender's track that yields nothing: the generator writes the packets itself."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Event().wait()
        raise MediaStreamError


@dataclass
class Stream:
    ssrc: int
    payload_type: int
    sequence: int = field(default_factory=lambda: random.randrange(1 << 15))
    timestamp: int = field(default_factory=lambda: random.randrange(1 << 31))


class Party:
    """One side of one call: negotiated by aiortc, then fed and counted directly on its socket."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver(Idle("audio"), direction="sendrecv")
        video = self.pc.addTransceiver(Idle("video"), direction="sendrecv")
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        video.setCodecPreferences([c for c in capabilities if c.mimeType == "video/VP8" or is_rtx(c)])
        self.received = {"audio": 0, "video": 0}
        self.sent = {"audio": 0, "video": 0, "packets": 0}
        self.phase = random.random()
        self.frame = random.randrange(FPS * SECONDS)
        self.packet = random.randrange(50 * SECONDS)

    async def connect(self, bus: Bus, worker: str, call_id: str, leg: media_pb2.Leg.ValueType) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = media_pb2.MediaOffer(call_id=call_id, leg=leg, sdp=self.pc.localDescription.sdp)
        subject = subjects.join(subjects.MEDIA_WORKER, worker, "offer")
        answer = await bus.request(subject, offer, media_pb2.MediaAnswer, timeout_s=10)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))

    def take_over(self) -> None:
        """Once connected: send on the SRTP session and socket directly; count what arrives."""
        transceivers = {t.kind: t for t in self.pc.getTransceivers()}
        dtls = transceivers["video"].receiver.transport
        self._srtp = dtls._tx_srtp
        pair = dtls.transport._connection._nominated[1]
        self._socket, self._addr = pair.protocol.transport, pair.remote_addr
        self.streams = {
            kind: Stream(t.sender._ssrc, next(c.payloadType or 0 for c in t._codecs if not is_rtx(c)))
            for kind, t in transceivers.items()
        }
        kinds = {s.payload_type: kind for kind, s in self.streams.items()}
        protocol, original = pair.protocol, pair.protocol.datagram_received
        received = self.received

        def count(data: bytes, addr: tuple[Any, ...]) -> None:
            if 128 <= data[0] < 192:
                second = data[1]
                if not 192 <= second <= 223:  # RTP: count; RTCP from the worker is not needed here
                    kind = kinds.get(second & 0x7F)
                    if kind == "audio" or (kind == "video" and second & 0x80):
                        received[kind] += 1
                return
            original(data, addr)  # STUN consent checks and DTLS

        setattr(protocol, "datagram_received", count)  # noqa: B010

    def _send(self, stream: Stream, payload: bytes, marker: bool) -> None:
        second = (0x80 if marker else 0) | stream.payload_type
        header = struct.pack("!BBHII", 0x80, second, stream.sequence, stream.timestamp, stream.ssrc)
        stream.sequence = (stream.sequence + 1) & 0xFFFF
        self.sent["packets"] += 1
        self._socket.sendto(self._srtp.protect(header + payload), self._addr)

    def send_frame(self, material: Material) -> None:
        stream = self.streams["video"]
        payloads = material.video[self.frame % len(material.video)]
        for i, payload in enumerate(payloads):
            self._send(stream, payload, i == len(payloads) - 1)
        stream.timestamp = (stream.timestamp + 90000 // FPS) & 0xFFFFFFFF
        self.frame += 1
        self.sent["video"] += 1

    def send_audio(self, material: Material) -> None:
        stream = self.streams["audio"]
        self._send(stream, material.audio[self.packet % len(material.audio)], False)
        stream.timestamp = (stream.timestamp + 960) & 0xFFFFFFFF
        self.packet += 1
        self.sent["audio"] += 1


@dataclass
class Call:
    shopper: Party
    host: Party


def worker_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def lag_buckets(metrics_url: str) -> dict[float, float]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "tandem_event_loop_lag_seconds":
            return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}
    return {}


def p99_ms(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound of the histogram bucket holding the 99th percentile of the window's samples."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts[float("inf")]
    for le, cumulative in counts.items():
        if total and cumulative >= 0.99 * total:
            return le * 1000
    return 0.0


async def pace(calls: list[Call], material: Material, stop: asyncio.Event) -> None:
    """Every party sends a frame every 1/30 s and an audio packet every 20 ms, at its own phase."""
    start = time.monotonic()
    parties = [p for c in calls for p in (c.shopper, c.host)]
    base = {id(p): (p.sent["video"], p.sent["audio"]) for p in parties}
    while not stop.is_set():
        now = time.monotonic() - start
        for party in parties:
            video, audio = base[id(party)]
            while (party.sent["video"] - video + party.phase) / FPS <= now:
                party.send_frame(material)
            while (party.sent["audio"] - audio + party.phase) * 0.02 <= now:
                party.send_audio(material)
        await asyncio.sleep(TICK_S)


async def run(args: argparse.Namespace) -> None:
    material = load(Path(args.material))
    bus = Bus(BusConfig(servers=[args.nats], name="media-load", request_timeout_s=10.0))
    await bus.connect()
    calls: list[Call] = []
    for level in (int(x) for x in args.levels.split(",")):
        stop = asyncio.Event()
        while len(calls) < level:
            call_id = f"load-{len(calls)}"
            allocated = await bus.request(
                subjects.join(subjects.MEDIA_ALLOCATE, REGION), media_pb2.MediaAllocate(call_id=call_id),
                media_pb2.MediaAllocated, timeout_s=10,
            )  # fmt: skip
            call = Call(Party(), Party())
            await call.shopper.connect(bus, allocated.worker.worker_id, call_id, media_pb2.LEG_SHOPPER)
            await call.host.connect(bus, allocated.worker.worker_id, call_id, media_pb2.LEG_HOST)
            for party in (call.shopper, call.host):
                for _ in range(200):
                    if party.pc.connectionState == "connected":
                        break
                    await asyncio.sleep(0.05)
                party.take_over()
            calls.append(call)
        pacer = asyncio.create_task(pace(calls, material, stop))
        await asyncio.sleep(args.settle)
        parties = [p for c in calls for p in (c.shopper, c.host)]
        sent0 = {id(p): dict(p.sent) for p in parties}
        got0 = {id(p): dict(p.received) for p in parties}
        cpu0, wall0, lag0 = worker_cpu_s(args.worker_pid), time.monotonic(), lag_buckets(args.metrics)
        mine0 = time.process_time()
        await asyncio.sleep(args.seconds)
        cpu1, wall1, lag1 = worker_cpu_s(args.worker_pid), time.monotonic(), lag_buckets(args.metrics)
        mine1 = time.process_time()
        result: dict[str, float] = {"calls": level}
        for kind in ("video", "audio"):
            expected = sum(p.sent[kind] - sent0[id(p)][kind] for p in parties)
            got = sum(p.received[kind] - got0[id(p)][kind] for p in parties)
            result[f"{kind}_loss"] = max(0.0, 1 - got / expected) if expected else 1.0
            result[f"{kind}_sent_per_s"] = expected / (wall1 - wall0)
        packets = sum(p.sent["packets"] - sent0[id(p)]["packets"] for p in parties)
        result["packets_per_s"] = packets / (wall1 - wall0)
        result["worker_cores"] = (cpu1 - cpu0) / (wall1 - wall0)
        result["generator_cores"] = (mine1 - mine0) / (wall1 - wall0)
        result["lag_p99_ms"] = p99_ms(lag0, lag1)
        result["parties_silent"] = sum(1 for p in parties if p.received["video"] == got0[id(p)]["video"])
        stop.set()
        await pacer
        print(json.dumps(result), flush=True)
        if result["video_loss"] > args.stop_loss or result["lag_p99_ms"] > args.stop_lag_ms:
            break
    for call in calls:
        await call.shopper.pc.close()
        await call.host.pc.close()
    await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("material")
    runner = sub.add_parser("run")
    runner.add_argument("material")
    runner.add_argument("--nats", required=True)
    runner.add_argument("--worker-pid", type=int, required=True)
    runner.add_argument("--metrics", required=True)
    runner.add_argument("--levels", required=True)
    runner.add_argument("--settle", type=float, default=3.0)
    runner.add_argument("--seconds", type=float, default=6.0)
    runner.add_argument("--stop-loss", type=float, default=0.10, help="stop ramping past this frame loss")
    runner.add_argument("--stop-lag-ms", type=float, default=250.0, help="stop ramping past this loop lag")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(Path(args.material))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
