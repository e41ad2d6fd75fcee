"""The test harness: real nats-server and PostgreSQL processes on free ports.

Each test gets its own nats-server (it starts in ~50 ms); PostgreSQL starts once per xdist
worker and each test gets its own database in it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from tandem.common.bus import Bus, BusConfig
from tandem.devstack.nats import NatsServer
from tandem.devstack.postgres import PostgresServer

# pytest-timeout fails a test that overruns; these backstops end the process when even that cannot
# (a teardown that hangs after the timeout fired, a thread that keeps the interpreter from exiting),
# printing every thread's stack, so a suite never hangs until CI gives up on it.
WATCHDOG_GRACE_S = 60.0
EXIT_GRACE_S = 60.0


def _timeout_s(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    given = item.config.getoption("timeout", None)
    return float(given if given is not None else item.config.getini("timeout") or 0)


def _abort(what: str, code: int) -> None:
    sys.stderr.write(f"\nwatchdog: {what}; every thread's stack:\n")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(code)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    timeout_s = _timeout_s(item)
    if not timeout_s:
        yield
        return
    limit_s = timeout_s + WATCHDOG_GRACE_S
    watchdog = threading.Timer(limit_s, _abort, args=(f"{item.nodeid} still running after {limit_s:.0f} s", 70))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(exitstatus: int) -> None:
    backstop = threading.Timer(
        EXIT_GRACE_S, _abort, args=(f"still not exited {EXIT_GRACE_S:.0f} s after the tests", exitstatus or 70)
    )
    backstop.daemon = True
    backstop.start()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as server:
        yield server


@contextlib.asynccontextmanager
async def _connected(server: NatsServer, name: str) -> AsyncIterator[Bus]:
    bus = Bus(BusConfig(servers=[server.url], name=name, request_timeout_s=1.0))
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    async with _connected(nats_server, "test") as bus:
        yield bus


@pytest.fixture
async def other_bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A second connection to the test's server (what one process writes, another hears)."""
    async with _connected(nats_server, "other") as bus:
        yield bus


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for this test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")
