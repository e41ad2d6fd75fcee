"""A whole Tandem per test module: nats-server, a PostgreSQL database, two signaling instances,
matchmaking, a media worker and orders, as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from tandem.devstack.bots import Bot, dev_token
from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.devstack.postgres import PostgresServer
from tandem.devstack.stack import SIGNALING_DEV_ENV, ServiceSpec, Supervisor, standard_services, supervised
from tandem.v1 import client_pb2, common_pb2


@dataclass
class Tandem:
    nats: NatsServer
    database_url: str
    signaling_urls: list[str]
    bots: list[Bot]
    services: dict[str, str]  # name -> base URL of /healthz, /readyz, /metrics
    log: Path  # every service's output
    supervisor: Supervisor

    async def not_ready(self) -> list[str]:
        """The services whose /readyz is not 200."""
        async with aiohttp.ClientSession() as http:
            statuses = {}
            for name, url in self.services.items():
                async with http.get(f"{url}/readyz") as response:
                    statuses[name] = response.status
        return [name for name, status in statuses.items() if status != 200]

    def tracebacks(self) -> int:
        return self.log.read_text().count("Traceback")

    async def worker_metric(self, name: str, **labels: str) -> float:
        """A sample of the media worker's /metrics (summed over the labels not given)."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.services['media-worker']}/metrics") as response:
            text = await response.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    async def bot(self, role: str, user: str, *, instance: int = 0, binary: bool = False) -> Bot:
        url = self.signaling_urls[instance]
        bot = Bot(url, await dev_token(url, role, user), binary=binary, name=user)
        await bot.connect()
        self.bots.append(bot)
        return bot


# Short timers so failure paths show quickly.
FAST = {
    "signaling": {
        "TANDEM_SIGNALING_RING_TIMEOUT_S": "2",
        "TANDEM_SIGNALING_QUEUE_TIMEOUT_S": "4",
        "TANDEM_SIGNALING_MATCH_RETRY_S": "0.2",
        "TANDEM_SIGNALING_RECONNECT_GRACE_S": "1",
    },
    "orders": {"TANDEM_ORDERS_OUTBOX_POLL_INTERVAL_S": "0.2"},
}


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture(scope="module")
def module_database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database(f"e2e_{uuid.uuid4().hex[:12]}")


@contextlib.asynccontextmanager
async def running_tandem(
    nats: NatsServer,
    database_url: str,
    logs: Path,
    settings: dict[str, dict[str, str]],
    *,
    second_worker: bool = False,
) -> AsyncIterator[Tandem]:
    """Every service as a real process (two signaling instances, and two media workers when asked),
    with `settings` per service name; checks a clean exit."""
    log = logs / "services.log"
    specs = standard_services([free_port() for _ in range(4)], database_url, **settings)
    specs.append(
        ServiceSpec(
            "signaling-2", "tandem.signaling", "SIGNALING", free_port(), {**SIGNALING_DEV_ENV, **settings["signaling"]}
        )
    )
    if second_worker:
        specs.append(
            ServiceSpec("media-worker-2", "tandem.media", "MEDIA", free_port(), settings.get("media-worker", {}))
        )
    try:
        async with supervised(specs, nats.url, log, drain_timeout_s=3) as supervisor:
            urls = {s.name: s.url for s in specs}
            yield Tandem(nats, database_url, [specs[0].url, specs[4].url], [], urls, log, supervisor)
    finally:
        sys.stderr.write(log.read_text()[-4000:])  # shown by pytest when a test failed
    assert set(supervisor.exit_codes.values()) == {0}, f"a service did not exit cleanly: {supervisor.exit_codes}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tandem(
    module_nats: NatsServer, module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tandem]:
    async with running_tandem(module_nats, module_database, tmp_path_factory.mktemp("logs"), FAST) as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="module")
async def tandem_bots(tandem: Tandem) -> AsyncIterator[Tandem]:
    yield tandem
    for bot in tandem.bots:
        await bot.close()
    tandem.bots.clear()


async def available_host(t: Tandem, user: str, language: str, instance: int = 0) -> Bot:
    host = await t.bot("host", user, instance=instance)
    await host.send(host_availability=client_pb2.HostAvailability(available=True, languages=[language], markets=["DE"]))
    await host.send(ping=client_pb2.Ping())  # frames are handled in order: the availability is stored
    await host.expect("pong")
    return host


async def request_consult(shopper: Bot, language: str) -> str:
    await shopper.send(consult_request=client_pb2.ConsultRequest(category="beauty", language=language, market="DE"))
    return (await shopper.expect("queue_update")).queue_update.call_id


async def ringing_call(
    t: Tandem, suffix: str, language: str, *, host_instance: int = 0, shopper_instance: int = 0
) -> tuple[Bot, Bot, str]:
    """A call ringing a host who alone speaks `language` (host, shopper, call id)."""
    host = await available_host(t, f"host-{suffix}", language, host_instance)
    shopper = await t.bot("shopper", f"shopper-{suffix}", instance=shopper_instance)
    call_id = await request_consult(shopper, language)
    await host.expect("invite", call_id=call_id)
    return host, shopper, call_id


async def connected_call(
    t: Tandem, suffix: str, language: str, *, host_instance: int = 0, shopper_instance: int = 0
) -> tuple[Bot, Bot, str]:
    """A host and a shopper in a CONNECTED call with media flowing (host, shopper, call id)."""
    host, shopper, call_id = await ringing_call(
        t, suffix, language, host_instance=host_instance, shopper_instance=shopper_instance
    )
    await host.send(accept=client_pb2.Accept(call_id=call_id))
    await shopper.expect("call_update", call_id=call_id, state=common_pb2.CALL_STATE_CONNECTING)
    await asyncio.gather(
        shopper.start_media(call_id, tone_hz=440, shade=40), host.start_media(call_id, tone_hz=660, shade=200)
    )
    for bot in (host, shopper):
        await bot.expect("call_update", call_id=call_id, state=common_pb2.CALL_STATE_CONNECTED, timeout_s=30)
    await asyncio.wait_for(asyncio.gather(host.media.first_video.wait(), shopper.media.first_video.wait()), 30)
    return host, shopper, call_id


class Socket:
    """A bare client: JSON frames in and out, nothing else."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, timeout_s: float = 10.0) -> client_pb2.Envelope:
        msg = await self.ws.receive(timeout=timeout_s)
        envelope = client_pb2.Envelope()
        if msg.type == aiohttp.WSMsgType.TEXT:
            json_format.Parse(msg.data, envelope)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            envelope.ParseFromString(msg.data)
        else:
            raise AssertionError(f"socket {msg.type.name}: {msg.data!r} {msg.extra!r}")
        return envelope

    async def until(self, kind: str) -> client_pb2.Envelope:
        for _ in range(20):
            envelope = await self.receive()
            if envelope.WhichOneof("payload") == kind:
                return envelope
        raise AssertionError(f"no {kind}")


async def open_socket(t: Tandem, http: aiohttp.ClientSession, role: str, user: str, *, bearer: bool = False) -> Socket:
    url = t.signaling_urls[0]
    token = await dev_token(url, role, user)
    headers = {"Authorization": f"Bearer {token}"} if bearer else {}
    socket = Socket(await http.ws_connect(url.replace("http", "ws", 1) + "/v1/ws", headers=headers))
    if not bearer:
        await socket.send({"id": "hello-1", "hello": {"token": token}})
        welcome = await socket.receive()
        assert welcome.welcome.session_id
        assert welcome.correlation_id == "hello-1"
    return socket
