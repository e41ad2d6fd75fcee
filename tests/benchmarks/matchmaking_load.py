"""Load generator for the matchmaking benchmark's throughput part (run as its own process).

Open-loop shoppers asking like signaling, each in its own task; prints one JSON object (offered/s,
matched/s, unanswered, latencies). It imports only the bus and the messages, not the matcher (its
SciPy and NumPy take seconds of CPU to import, which a load process would spend beside the matcher
on a 2-core machine).

    python tests/benchmarks/matchmaking_load.py NATS_URL RATE DURATION_S HOLD_S TAG
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time

from google.protobuf.timestamp_pb2 import Timestamp

from tandem.common import subjects
from tandem.common.bus import Bus, BusConfig
from tandem.common.errors import BusTimeoutError, TandemError
from tandem.v1 import matchmaking_pb2

LANGUAGES = ("en", "es", "pt", "de", "ja", "vi")
"""The shards the benchmark's hosts are announced in and its shoppers ask in (one per language)."""

# How long a shopper of the throughput part goes on asking after timed-out requests (signaling asks
# until its queue timeout, longer than a rate's run can wait for).
THROUGHPUT_PATIENCE_S = 10.0


async def offer(
    bus: Bus, rate: float, duration_s: float, hold_s: float, tag: str
) -> tuple[float, float, int, list[float]]:
    """Open-loop shoppers at `rate` per second, each asking like signaling until matched, holding the
    host for `hold_s`, then releasing it. Returns offered/s, matched/s, unanswered (requests that
    timed out; their shopper asked again), latencies (s, first request to the host)."""
    latencies: list[float] = []
    unanswered = 0
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal unanswered
        since = Timestamp()
        since.GetCurrentTime()
        call_id = f"b{tag}-{n}"
        language = LANGUAGES[n % len(LANGUAGES)]
        request = matchmaking_pb2.MatchRequest(
            call_id=call_id, shopper_id=f"s{tag}-{n}", language=language, market="US", category="beauty",
            requested_at=since, wait_ms=1000,
        )  # fmt: skip
        subject = f"{subjects.MATCH_REQUEST}.local.{language}"
        started = time.perf_counter()
        while True:
            try:
                result = await bus.request(subject, request, matchmaking_pb2.MatchResult, timeout_s=1.0)
            except BusTimeoutError:
                # Like signaling: ask again (a host matched meanwhile is in the answer), for a while.
                unanswered += 1
                if time.perf_counter() - started > THROUGHPUT_PATIENCE_S:
                    return
                continue
            except TandemError:
                unanswered += 1
                return
            if result.HasField("host"):
                break
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(hold_s)
        done = matchmaking_pb2.HostRelease(
            host_id=result.host.host_id, call_id=call_id, outcome=matchmaking_pb2.HOST_OUTCOME_COMPLETED
        )
        for attempt in range(5):  # like signaling, until matchmaking has heard (a lost release leaks the host)
            try:
                await bus.request(subjects.MATCH_RELEASE, done, matchmaking_pb2.HostPresence)
                return
            except TandemError:
                await asyncio.sleep(0.2 * 2**attempt)

    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < duration_s:
        while n < int((time.perf_counter() - started) * rate):
            task = asyncio.create_task(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        await asyncio.sleep(0.005)
    sent_s = time.perf_counter() - started
    if pending:
        await asyncio.wait(pending, timeout=30)
    await asyncio.sleep(2.0)  # hosts released before the next rate
    return n / sent_s, len(latencies) / sent_s, unanswered, latencies


if __name__ == "__main__":

    async def _generate(url: str, rate: str, duration_s: str, hold_s: str, tag: str) -> None:
        bus = Bus(BusConfig(servers=[url], name=f"bench-{tag}", request_timeout_s=5.0))
        await bus.connect()
        # A full collection stalls this process 40-180 ms at 2,000 requests/s (measured with a
        # gc.callbacks probe), which would count as the matcher's latency: a run of a few seconds
        # frees what it makes by reference counting, so the collector sits it out.
        gc.freeze()
        gc.disable()
        offered, matched, unanswered, latencies = await offer(bus, float(rate), float(duration_s), float(hold_s), tag)
        await bus.close()
        print(json.dumps({"offered": offered, "matched": matched, "unanswered": unanswered, "latencies": latencies}))

    asyncio.run(_generate(*sys.argv[1:6]))
