"""Instant connect, measured with bots over real services: tap → host ringing and host accept →
first remote video frame at the shopper, p50 / p95 over 20+ consultations, each beside a baseline
measured in the same run:

- tap → ringing vs. a bare WebSocket ping → pong through the same signaling instance (the floor
  any message exchange pays);
- accept → first video vs. two aiortc peers negotiating directly in one process, offer → first
  remote video frame (the floor of WebRTC itself, with no server in between).

Run: `make bench PYTEST_ARGS=-k connect` (prints the table; numbers go in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from tandem.devstack.bots import Bot, dev_token
from tandem.devstack.consultation import connect_bots, run_consultation
from tandem.devstack.demo import temporary_stack
from tandem.devstack.media import PatternTrack, ToneTrack
from tandem.v1 import client_pb2

CONSULTATIONS = 24
PINGS = 100


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def ping_rtt_ms(url: str) -> list[float]:
    bot = Bot(url, await dev_token(url, "shopper", "bench-pinger"), binary=True, name="pinger")
    await bot.connect()
    samples = []
    for _ in range(PINGS):
        start = time.perf_counter()
        await bot.send(ping=client_pb2.Ping())
        await bot.expect("pong")
        samples.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.06)  # stay under the per-connection rate limit (20 frames/s)
    await bot.close()
    return samples


async def direct_p2p_first_video_ms() -> float:
    """Two aiortc peers in one process: offer → first decoded remote video frame."""
    caller, callee = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    first = asyncio.Event()

    @callee.on("track")
    def on_track(track):  # type: ignore[no-untyped-def]
        if track.kind == "video":

            async def read() -> None:
                await track.recv()
                first.set()

            asyncio.ensure_future(read())  # noqa: RUF006 - ends with the peer connection

    start = time.perf_counter()
    caller.addTrack(ToneTrack(440))
    caller.addTrack(PatternTrack(40))
    callee.addTrack(ToneTrack(660))
    callee.addTrack(PatternTrack(200))
    await caller.setLocalDescription(await caller.createOffer())
    await callee.setRemoteDescription(caller.localDescription)
    await callee.setLocalDescription(await callee.createAnswer())
    await caller.setRemoteDescription(callee.localDescription)
    await asyncio.wait_for(first.wait(), 20)
    elapsed = (time.perf_counter() - start) * 1000
    await caller.close()
    await callee.close()
    return elapsed


@pytest.mark.timeout(900)
async def test_connect_times(tmp_path: Path) -> None:
    async with temporary_stack(tmp_path) as url:
        rtt = await ping_rtt_ms(url)
        p2p = [await direct_p2p_first_video_ms() for _ in range(CONSULTATIONS)]
        ring, first_video = [], []
        for i in range(CONSULTATIONS):
            host, shopper = await connect_bots(url, f"bench{i}")
            timeline = await run_consultation(host, shopper, language="eo", buy=False)
            await host.close()
            await shopper.close()
            ring.append(timeline.ms("requested", "host ringing"))
            first_video.append(timeline.ms("accepted", "first remote video at shopper"))

    rows = [
        ("tap -> host ringing", ring, "ws ping -> pong", rtt),
        ("accept -> first video @ shopper", first_video, "aiortc p2p offer -> first video", p2p),
    ]
    print(f"\n{'stage (n=' + str(CONSULTATIONS) + ')':<34}{'p50 ms':>9}{'p95 ms':>9}   {'baseline':<34}{'p50 ms':>9}"
          f"{'p95 ms':>9}{'ratio p50':>11}")  # fmt: skip
    for name, samples, base_name, base in rows:
        (p50, p95), (b50, b95) = percentiles(samples), percentiles(base)
        print(f"{name:<34}{p50:9.1f}{p95:9.1f}   {base_name:<34}{b50:9.1f}{b95:9.1f}{p50 / b50:11.2f}")
    assert len(ring) == len(first_video) == CONSULTATIONS
