"""The KV mirror over real NATS: it starts from every key's last value, follows puts, deletes and
purges written by another connection in order, says when it has caught up, and keeps following
across a restart of the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tandem.common.aio import cancel_and_wait
from tandem.common.bus import Bus
from tandem.devstack.nats import NatsServer
from tandem.matchmaking.mirror import BucketMirror, Revision

from .helpers import eventually

pytestmark = pytest.mark.integration

BUCKET = "mirror_test"


@dataclass
class Followed:
    mirror: BucketMirror
    task: asyncio.Task[None]
    # every change the listener heard, and the keys of those heard before the mirror was synced
    heard: list[tuple[str, Revision | None]] = field(default_factory=list)
    before_sync: list[str] = field(default_factory=list)

    def listener(self, key: str, revision: Revision | None) -> None:
        self.heard.append((key, revision))
        if not self.mirror.synced.is_set():
            self.before_sync.append(key)


Follow = Callable[[Bus], Awaitable[Followed]]


@pytest.fixture
async def follow() -> AsyncIterator[Follow]:
    """Start a mirror of the bucket and wait until it is synced; all are stopped at the end."""
    tasks: list[asyncio.Task[None]] = []

    async def start(bus: Bus) -> Followed:
        mirror = BucketMirror(await bus.key_value(BUCKET), BUCKET, bus.js, retry_s=0.1)
        followed = Followed(mirror, asyncio.create_task(mirror.run()))
        tasks.append(followed.task)
        mirror.listeners.append(followed.listener)
        await asyncio.wait_for(mirror.synced.wait(), 5)
        return followed

    yield start
    for task in tasks:
        await cancel_and_wait(task)


async def test_an_empty_bucket_is_synced_at_once_and_changes_are_heard_in_order(
    bus: Bus, other_bus: Bus, follow: Follow
) -> None:
    kv = await other_bus.key_value(BUCKET)
    followed = await follow(bus)
    mirror, heard = followed.mirror, followed.heard
    assert mirror.entries == {}
    first = await kv.put("a", b"1")
    second = await kv.put("a", b"2")
    await kv.put("b", b"3")
    await kv.delete("b")
    await kv.put("c", b"4")
    await kv.purge("c")

    async def all_heard() -> bool:
        return len(heard) == 6

    await eventually(all_heard)
    assert heard == [
        ("a", Revision(b"1", first)), ("a", Revision(b"2", second)), ("b", heard[2][1]), ("b", None),
        ("c", heard[4][1]), ("c", None),
    ]  # fmt: skip
    assert mirror.entries == {"a": Revision(b"2", second)}


async def test_a_bucket_with_keys_is_synced_after_their_last_values(bus: Bus, other_bus: Bus, follow: Follow) -> None:
    kv = await other_bus.key_value(BUCKET)
    for n in range(50):
        await kv.put(f"k{n % 10}", b"%d" % n)
    await kv.delete("k0")
    followed = await follow(bus)
    # synced once every key's last value is in (the old values and the deleted key are not), not before
    last = {f"k{n}": b"%d" % (40 + n) for n in range(1, 10)}
    assert {key: revision.value for key, revision in followed.mirror.entries.items()} == last
    assert sorted(followed.before_sync) == ["k0", *sorted(last)]  # k0's delete is heard too


async def test_a_write_recorded_by_its_writer_is_not_heard_again_from_the_watch(bus: Bus, follow: Follow) -> None:
    kv = await bus.key_value(BUCKET)
    followed = await follow(bus)
    mirror = followed.mirror
    revision = await kv.put("a", b"1")
    mirror.apply("a", b"1", revision)  # as the writer does once the write has landed
    await kv.put("b", b"2")

    async def b_heard() -> bool:
        return "b" in mirror.entries

    await eventually(b_heard)
    assert [key for key, _ in followed.heard] == ["a", "b"]


async def test_the_mirror_follows_on_after_the_server_restarts(
    nats_server: NatsServer, bus: Bus, other_bus: Bus, follow: Follow
) -> None:
    kv = await other_bus.key_value(BUCKET)
    await kv.put("a", b"1")
    followed = await follow(bus)
    nats_server.stop()
    await asyncio.sleep(0.5)
    nats_server.start()  # same port and store

    async def written_and_heard() -> bool:
        try:
            await kv.put("a", b"2")
        except Exception:  # the writer still reconnecting
            return False
        return followed.mirror.entries.get("a", Revision(b"", 0)).value == b"2"

    await eventually(written_and_heard, timeout_s=20)
