"""A whole Tandem per test module: nats-server, a PostgreSQL database, two signaling instances,
matchmaking, a media worker and orders, as real processes."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from tandem.devstack.bots import Bot, dev_token
from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.devstack.postgres import PostgresServer
from tandem.devstack.stack import SIGNALING_DEV_ENV, ServiceSpec, standard_services, supervised


@dataclass
class Tandem:
    nats: NatsServer
    database_url: str
    signaling_urls: list[str]
    bots: list[Bot]

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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tandem(
    module_nats: NatsServer, module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tandem]:
    log: Path = tmp_path_factory.mktemp("logs") / "services.log"
    specs = standard_services([free_port() for _ in range(4)], module_database, **FAST)
    specs.append(
        ServiceSpec(
            "signaling-2",
            "tandem.signaling",
            "SIGNALING",
            free_port(),
            {**SIGNALING_DEV_ENV, **FAST["signaling"]},
        )
    )
    try:
        async with supervised(specs, module_nats.url, log, drain_timeout_s=3) as supervisor:
            yield Tandem(module_nats, module_database, [specs[0].url, specs[4].url], [])
    finally:
        sys.stderr.write(log.read_text()[-4000:])  # shown by pytest when a test failed
    assert set(supervisor.exit_codes.values()) == {0}, f"a service did not exit cleanly: {supervisor.exit_codes}"


@pytest_asyncio.fixture(loop_scope="module")
async def tandem_bots(tandem: Tandem) -> AsyncIterator[Tandem]:
    yield tandem
    for bot in tandem.bots:
        await bot.close()
    tandem.bots.clear()
