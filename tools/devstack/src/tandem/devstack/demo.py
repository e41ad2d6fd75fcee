"""`make demo`: one consultation between two bots, against the stack `make up` runs or a
temporary one started for the occasion, with the timeline printed."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tandem.devstack.consultation import connect_bots, run_consultation
from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.devstack.postgres import PostgresServer
from tandem.devstack.stack import is_ready, standard_services, supervised


async def _reachable(url: str) -> bool:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        return await is_ready(http, url)


@contextlib.asynccontextmanager
async def temporary_stack(run_dir: Path, **extra: dict[str, str]) -> AsyncIterator[str]:
    """nats-server, PostgreSQL and every service on free ports; yields signaling's URL."""
    with NatsServer(run_dir / "nats") as nats, PostgresServer(run_dir / "postgres") as postgres:
        specs = standard_services([free_port() for _ in range(4)], postgres.url, **extra)
        async with supervised(specs, nats.url, run_dir / "services.log"):
            yield specs[0].url


async def demo(url: str) -> int:
    if await _reachable(url):
        print(f"using the running stack at {url}")
        return await _one(url)
    print(f"nothing answers at {url}; starting a temporary stack (logs under a temporary folder)")
    with tempfile.TemporaryDirectory(prefix="tandem-demo-") as run_dir:
        async with temporary_stack(Path(run_dir)) as started:
            return await _one(started)


async def _one(url: str) -> int:
    host, shopper = await connect_bots(url, uuid.uuid4().hex[:6])
    try:
        timeline = await run_consultation(host, shopper, language="eo")
    finally:
        await host.close()
        await shopper.close()
    print(f"\nconsultation {timeline.call_id}, order {timeline.order_id}")
    print("\n".join(timeline.lines()))
    print(
        f"\n  tap -> host ringing {timeline.ms('requested', 'host ringing'):.1f} ms, "
        f"accept -> first remote video at shopper {timeline.ms('accepted', 'first remote video at shopper'):.1f} ms"
    )
    return 0
