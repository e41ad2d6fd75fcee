"""The test harness: real nats-server and PostgreSQL processes on free ports.

Each test gets its own nats-server (it starts in ~50 ms); PostgreSQL starts once per xdist
worker and each test gets its own database in it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tandem.common.bus import Bus, BusConfig
from tandem.devstack.nats import NatsServer
from tandem.devstack.postgres import PostgresServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = Bus(BusConfig(servers=[nats_server.url], name="test", request_timeout_s=1.0))
    await bus.connect()
    yield bus
    await bus.close()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for this test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
