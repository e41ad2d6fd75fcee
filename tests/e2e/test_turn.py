"""TURN credentials for clients: the welcome carries short-lived ones that a real coturn (shared
secret, the TURN REST API scheme) accepts, a tampered one it refuses, and new ones come before the
old expire."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from aioice import stun
from aioice.turn import create_turn_endpoint

from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.v1 import client_pb2, common_pb2

from .conftest import FAST, Tandem, running_tandem

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET = "turn-shared-secret-for-tests"
TTL_S = 12  # the least a test can wait for a renewal (at three quarters)


@pytest.fixture(scope="module")
def turn_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """coturn on loopback, authenticating with the shared secret."""
    port, logs = free_port(), tmp_path_factory.mktemp("coturn")
    command = [
        "turnserver", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip=127.0.0.1", f"--listening-port={port}",
        "--relay-ip=127.0.0.1", "--allow-loopback-peers", "--use-auth-secret", f"--static-auth-secret={SECRET}",
        "--realm=tandem.test", f"--log-file={logs / 'turn.log'}", "--simple-log", "--no-stdout-log",
        f"--pidfile={logs / 'turn.pid'}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tandem(
    module_nats: NatsServer, module_database: str, turn_port: int, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tandem]:
    signaling = {**FAST["signaling"], "TANDEM_SIGNALING_TURN_URLS": f'["turn:127.0.0.1:{turn_port}"]',
                 "TANDEM_SIGNALING_TURN_SECRET": SECRET, "TANDEM_SIGNALING_TURN_TTL_S": str(TTL_S)}  # fmt: skip
    async with running_tandem(
        module_nats, module_database, tmp_path_factory.mktemp("logs"), {**FAST, "signaling": signaling}
    ) as stack:
        yield stack


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """A relayed address from the TURN server, as a client's ICE agent would ask for it."""
    transport, _ = await create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), username, password)
    try:
        return transport.get_extra_info("sockname")  # type: ignore[no-any-return]
    finally:
        transport.close()


async def test_the_welcome_carries_turn_credentials_the_turn_server_accepts(
    tandem_bots: Tandem, turn_port: int
) -> None:
    host = await tandem_bots.bot("host", "host-behind-nat")
    welcome = host.welcome
    assert welcome is not None
    [server] = welcome.ice_servers.servers
    assert list(server.urls) == [f"turn:127.0.0.1:{turn_port}"]
    expiry, user = server.username.split(":")
    assert user == "host-behind-nat"
    lasts_s = welcome.ice_servers.expires_at.ToDatetime(UTC) - datetime.now(UTC)
    assert 0 < lasts_s.total_seconds() <= TTL_S
    assert int(expiry) == int(welcome.ice_servers.expires_at.ToSeconds())

    relayed = await allocate(turn_port, server.username, server.credential)
    assert relayed[0] == "127.0.0.1"
    with pytest.raises(stun.TransactionFailed):
        await allocate(turn_port, server.username, server.credential[:-4] + "AAA=")
    with pytest.raises(stun.TransactionFailed):  # someone else's name with these credentials
        await allocate(turn_port, f"{expiry}:another-user", server.credential)

    # Before they expire, new credentials arrive on the socket, and they work too.
    renewed = (await host.expect("ice_servers", timeout_s=TTL_S)).ice_servers
    assert renewed.expires_at.ToSeconds() > welcome.ice_servers.expires_at.ToSeconds()
    assert renewed.expires_at.ToDatetime(UTC) > datetime.now(UTC)
    [fresh] = renewed.servers
    assert await allocate(turn_port, fresh.username, fresh.credential)


async def test_a_client_cannot_send_ice_servers(tandem_bots: Tandem) -> None:
    shopper = await tandem_bots.bot("shopper", "shopper-spoofs")
    await shopper.send(ice_servers=client_pb2.IceServers())
    error = (await shopper.expect("error")).error
    assert error.code == common_pb2.ERROR_CODE_UNKNOWN_MESSAGE_TYPE
