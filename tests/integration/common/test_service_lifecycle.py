"""Every service process: health, readiness that follows NATS, clean SIGTERM, bad config."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nats
import pytest

from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.devstack.stack import service_environment

pytestmark = pytest.mark.integration

SERVICES = {
    "matchmaking": "MATCHMAKING",
    "signaling": "SIGNALING",
    "media": "MEDIA",
    "orders": "ORDERS",
}
DRAIN_TIMEOUT_S = 5


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    url: str


async def _status(url: str) -> int:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp,
        ):
            return resp.status
    except aiohttp.ClientError:
        return 0


async def _eventually(url: str, status: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while (last := await _status(url)) != status:
        assert time.monotonic() < deadline, f"{url} answered {last}, expected {status}"
        await asyncio.sleep(0.1)


def service_env(prefix: str, nats_url: str, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    reconnect = {f"TANDEM_{prefix}_NATS_RECONNECT_WAIT_S": "0.2"}
    return service_environment(prefix, nats_url, port, DRAIN_TIMEOUT_S, {**reconnect, **(extra or {})})


@pytest.fixture(params=sorted(SERVICES))
async def service(request: pytest.FixtureRequest, nats_server: NatsServer, database_url: str) -> AsyncIterator[Running]:
    module, prefix = request.param, SERVICES[request.param]
    port = free_port()
    extra = {f"TANDEM_{prefix}_DATABASE_URL": database_url, f"TANDEM_{prefix}_JWT_KEY": "k" * 32}
    env = service_env(prefix, nats_server.url, port, extra)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", f"tandem.{module}", env=env)
    yield Running(proc, f"http://127.0.0.1:{port}")
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_a_service_is_live_ready_and_follows_nats(service: Running, nats_server: NatsServer) -> None:
    await _eventually(f"{service.url}/healthz", 200)
    await _eventually(f"{service.url}/readyz", 200)
    async with aiohttp.ClientSession() as http, http.get(f"{service.url}/metrics") as resp:
        assert "tandem_nats_connected 1.0" in await resp.text()

    nats_server.stop()
    await _eventually(f"{service.url}/readyz", 503)
    assert await _status(f"{service.url}/healthz") == 200  # alive: Kubernetes must not restart it

    nats_server.start()  # same port
    await _eventually(f"{service.url}/readyz", 200)

    started = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(service.proc.wait(), DRAIN_TIMEOUT_S + 5) == 0
    assert time.monotonic() - started < DRAIN_TIMEOUT_S + 2


async def test_a_service_starts_while_nats_is_down_and_becomes_ready(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path / "nats", port=free_port())
    port = free_port()
    env = service_env("MATCHMAKING", nats.url, port)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tandem.matchmaking", env=env)
    try:
        await _eventually(f"http://127.0.0.1:{port}/healthz", 200)
        assert await _status(f"http://127.0.0.1:{port}/readyz") == 503
        nats.start()
        await _eventually(f"http://127.0.0.1:{port}/readyz", 200)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), DRAIN_TIMEOUT_S + 5) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        nats.stop()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("NATS_URL", "http//not a url"), ("NATS_URL", "http://127.0.0.1:1"), ("HTTP_PORT", "70000")],
)
async def test_bad_config_exits_with_one_line_naming_the_setting(setting: str, value: str) -> None:
    env = service_env("MATCHMAKING", "nats://127.0.0.1:1", 0, {f"TANDEM_MATCHMAKING_{setting}": value})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tandem.matchmaking", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1
    assert f"TANDEM_MATCHMAKING_{setting}" in lines[0]


async def _kick(server: NatsServer, client_name: str) -> None:
    """Close a client's connection from the server side (the system account's KICK request)."""
    system = await nats.connect(server.system_url)
    try:
        reply = await system.request("$SYS.REQ.SERVER.PING.CONNZ", json.dumps({"acc": "APP"}).encode(), timeout=2)
        connz = json.loads(reply.data)
        (cid,) = [c["cid"] for c in connz["data"]["connections"] if c.get("name") == client_name]
        server_id = connz["server"]["id"]
        await system.request(f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": cid}).encode(), timeout=2)
    finally:
        await system.close()


async def test_a_service_whose_connection_the_server_closes_reconnects_and_is_ready_again(
    tmp_path: Path,
) -> None:
    with NatsServer(tmp_path / "nats", system_password=uuid.uuid4().hex) as server:
        port = free_port()
        env = service_env(
            "MATCHMAKING",
            server.url,
            port,
            {"TANDEM_MATCHMAKING_INSTANCE_ID": "mm-kicked", "TANDEM_MATCHMAKING_NATS_RECONNECT_WAIT_S": "1"},
        )
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tandem.matchmaking", env=env)
        try:
            await _eventually(f"http://127.0.0.1:{port}/readyz", 200)
            await _kick(server, "mm-kicked")
            await _eventually(f"http://127.0.0.1:{port}/readyz", 503, timeout_s=5)
            await _eventually(f"http://127.0.0.1:{port}/readyz", 200)
            assert proc.returncode is None
        finally:
            proc.kill()
            await proc.wait()
