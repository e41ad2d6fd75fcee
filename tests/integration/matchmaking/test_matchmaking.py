"""Matchmaking over real NATS: presence requests, reservation, explicit release, pausing, affinity,
restart, fencing against the real bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats.errors
import pytest

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.common.http import HttpServer
from tandem.matchmaking.app import MatchmakingApp
from tandem.matchmaking.mirror import BucketMirror
from tandem.matchmaking.presence import PresenceBook, PresenceEntry
from tandem.matchmaking.settings import Settings
from tandem.matchmaking.shards import FencedOut
from tandem.v1 import calls_pb2, client_pb2, common_pb2, matchmaking_pb2, orders_pb2

from .helpers import announce, answer, eventually, match_request, release, wait_for_host

pytestmark = pytest.mark.integration


Start = Callable[..., Awaitable[MatchmakingApp]]


@pytest.fixture
async def start_matchmaking(bus: Bus) -> AsyncIterator[Start]:
    """Start an in-process matchmaking app on the test's bus; all are stopped at the end."""
    apps: list[MatchmakingApp] = []

    async def start(instance: str = "mm-test", **settings: object) -> MatchmakingApp:
        app = MatchmakingApp(Settings(**settings), instance)  # type: ignore[arg-type]
        apps.append(app)
        await app.start(bus, HttpServer("127.0.0.1", 0))
        assert app.presence is not None
        await asyncio.wait_for(app.presence.synced.wait(), 5)
        return app

    yield start
    for app in apps:
        await app.stop()


async def test_a_host_is_reserved_for_one_call_and_freed_by_its_release(bus: Bus, start_matchmaking: Start) -> None:
    await start_matchmaking()
    await announce(bus, "h1")
    first = await wait_for_host(bus, "c1")
    assert first.host_id == "h1"
    queued = await answer(bus, match_request("c2", "s2", "en", "US", 0.5))
    assert queued.queued.position == 1

    await release(bus, "h1", "c1")
    assert (await wait_for_host(bus, "c2", shopper="s2")).host_id == "h1"


async def test_a_host_outside_the_shoppers_language_or_market_is_never_offered(
    bus: Bus, start_matchmaking: Start
) -> None:
    await start_matchmaking()
    await announce(bus, "de-host", language="de", markets=("DE",))
    await announce(bus, "en-jp", language="en", markets=("JP",))
    result = await answer(bus, match_request("c1", "s1", "en", "DE", 0.5))
    assert result.HasField("queued")
    assert (await wait_for_host(bus, "c2", language="de", market="DE")).host_id == "de-host"


async def test_presence_survives_a_matchmaking_restart(bus: Bus, start_matchmaking: Start) -> None:
    first = await start_matchmaking()
    await announce(bus, "h-restart", language="ja")
    await first.stop()
    await start_matchmaking()
    assert (await wait_for_host(bus, "c-after", language="ja")).host_id == "h-restart"


async def test_the_host_a_shopper_bought_from_is_preferred(bus: Bus, start_matchmaking: Start) -> None:
    app = await start_matchmaking()
    await announce(bus, "stranger", language="de")
    await asyncio.sleep(0.01)
    await announce(bus, "seller", language="de")  # less idle than the stranger
    order = orders_pb2.OrderPlaced(order_id="o1", shopper_id="loyal", host_id="seller")
    await bus.publish_fact(subjects.join(subjects.ORDER_EVENTS, "o1"), order, msg_id="o1")
    assert app.affinity is not None
    affinity = app.affinity

    async def knows() -> bool:
        return bool(affinity.previous_hosts("loyal"))

    await eventually(knows)
    result = await wait_for_host(bus, "c-loyal", shopper="loyal", language="de")
    assert (result.host_id, result.returning_customer) == ("seller", True)
    assert (await wait_for_host(bus, "c-new", shopper="newcomer", language="de")).host_id == "stranger"


async def test_a_host_missing_calls_in_a_row_is_paused_and_told(bus: Bus, start_matchmaking: Start) -> None:
    await start_matchmaking(pause_after_misses=2)
    notices: list[client_pb2.Envelope] = []

    async def on_notice(envelope: client_pb2.Envelope, _: str) -> None:
        notices.append(envelope)

    await bus.subscribe(subjects.join(subjects.SIGNALING_DELIVER, "h1"), client_pb2.Envelope, on_notice)
    await announce(bus, "h1")
    for n, outcome in enumerate((matchmaking_pb2.HOST_OUTCOME_DECLINED, matchmaking_pb2.HOST_OUTCOME_RING_TIMEOUT)):
        await wait_for_host(bus, f"c{n}")
        await release(bus, "h1", f"c{n}", outcome)

    async def told() -> bool:
        return bool(notices)

    await eventually(told)
    assert notices[0].WhichOneof("payload") == "host_availability"
    assert not notices[0].host_availability.available
    waiting = await answer(bus, match_request("c9", "s9", "en", "US", 0.5))
    assert waiting.HasField("queued"), "a paused host was offered"
    await announce(bus, "h1")  # the host comes back
    assert (await wait_for_host(bus, "c9", shopper="s9")).host_id == "h1"


async def test_a_pause_notice_the_connection_refuses_leaves_the_pause_and_the_next_releases(
    bus: Bus, start_matchmaking: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_matchmaking(pause_after_misses=1)
    assert app.bus is not None

    async def refused(*_: Any) -> None:
        raise nats.errors.OutboundBufferLimitError  # as while NATS is away with a full buffer

    monkeypatch.setattr(app.bus, "publish", refused)
    await announce(bus, "h1")
    await announce(bus, "h2")
    first, second = await wait_for_host(bus, "c1"), await wait_for_host(bus, "c2", shopper="s2")
    await release(bus, first.host_id, "c1", matchmaking_pb2.HOST_OUTCOME_DECLINED)
    kv = await bus.key_value(subjects.PRESENCE_BUCKET)
    paused = matchmaking_pb2.HostPresence.FromString((await kv.get(first.host_id)).value or b"")
    assert paused.status == matchmaking_pb2.HOST_STATUS_AWAY
    await release(bus, second.host_id, "c2")  # the release loop goes on
    assert (await wait_for_host(bus, "c3", shopper="s3")).host_id == second.host_id


async def test_a_reservation_with_an_older_lease_token_is_refused_by_the_bucket_record(bus: Bus) -> None:
    kv = await bus.key_value(subjects.PRESENCE_BUCKET)
    book = PresenceBook(BucketMirror(kv, subjects.PRESENCE_BUCKET, bus.js), bus, pause_after_misses=3, max_items=32)

    async def current() -> PresenceEntry:
        entry = await kv.get("h1")
        assert entry.value is not None
        return PresenceEntry(matchmaking_pb2.HostPresence.FromString(entry.value), entry.revision or 0)

    update = matchmaking_pb2.PresenceUpdate(
        host_id="h1", availability=client_pb2.HostAvailability(available=True, languages=["en"], markets=["US"])
    )
    await book.announce(update, time.time_ns())
    [reserved] = await book.reserve_all([(await current(), "c-new")], "local.en", 7, time.time_ns())
    assert isinstance(reserved, int)
    await book.release(matchmaking_pb2.HostRelease(host_id="h1", call_id="c-new"), time.time_ns())
    [refused] = await book.reserve_all([(await current(), "c-stale")], "local.en", 6, time.time_ns())
    assert isinstance(refused, FencedOut)
    assert (refused.token, refused.fence) == (6, 7)
    assert (await current()).record.status == matchmaking_pb2.HOST_STATUS_AVAILABLE


async def test_asking_again_without_the_host_that_declined_finds_another(bus: Bus, start_matchmaking: Start) -> None:
    await start_matchmaking()
    await announce(bus, "h1")
    await announce(bus, "h2")
    first = await wait_for_host(bus, "c1")
    request = match_request("c1", "s1", "en", "US", 0.5)
    request.excluded_host_ids.append(first.host_id)
    again = await answer(bus, request)
    assert again.host.host_id not in ("", first.host_id)


async def test_a_release_from_a_stale_mirrored_record_reads_the_bucket_and_frees_the_host(bus: Bus) -> None:
    kv = await bus.key_value(subjects.PRESENCE_BUCKET)
    book = PresenceBook(BucketMirror(kv, subjects.PRESENCE_BUCKET, bus.js), bus, pause_after_misses=3, max_items=32)
    update = matchmaking_pb2.PresenceUpdate(
        host_id="h1", availability=client_pb2.HostAvailability(available=True, languages=["en"], markets=["US"])
    )
    free = await book.announce(update, time.time_ns())
    entry = await kv.get("h1")
    stale = PresenceEntry(free, entry.revision or 0)  # the mirror before it saw the reservation
    [reserved] = await book.reserve_all([(stale, "c1")], "local.en", 1, time.time_ns())
    assert isinstance(reserved, int)

    [written] = await book.release_all(
        [(matchmaking_pb2.HostRelease(host_id="h1", call_id="c1"), stale)], time.time_ns()
    )
    assert isinstance(written, matchmaking_pb2.HostPresence)
    assert written.status == matchmaking_pb2.HOST_STATUS_AVAILABLE
    after = await kv.get("h1")
    assert matchmaking_pb2.HostPresence.FromString(after.value or b"").status == matchmaking_pb2.HOST_STATUS_AVAILABLE


async def test_a_match_request_with_an_invalid_call_id_is_refused_at_once(bus: Bus, start_matchmaking: Start) -> None:
    await start_matchmaking()
    await announce(bus, "h1")
    await wait_for_host(bus, "c-ok")  # the shard has its matcher
    request = match_request("bad id!", "s1", "en", "US", 5.0)
    subject = f"{subjects.MATCH_REQUEST}.{subjects.match_shard('local', 'en')}"
    with pytest.raises(TandemError) as refused:  # a held request would be answered with a queue position
        await bus.request(subject, request, matchmaking_pb2.MatchResult, timeout_s=5)
    assert refused.value.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT


async def test_every_id_signaling_accepts_is_accepted(bus: Bus, start_matchmaking: Start) -> None:
    """Hosts, shoppers and calls are named by the system's one identifier rule (1-128 characters,
    '=' included), the rule signaling checks clients' ids against."""
    await start_matchmaking()
    host, shopper = "host=1", "s" * subjects.MAX_ID_CHARS
    assert (await announce(bus, host)).status == matchmaking_pb2.HOST_STATUS_AVAILABLE
    call = "c=" + "x" * (subjects.MAX_ID_CHARS - 2)
    assert (await wait_for_host(bus, call, shopper=shopper)).host_id == host
    await release(bus, host, call)


async def test_a_shopper_whose_request_is_held_longer_than_the_lapse_stays_in_the_queue(
    bus: Bus, start_matchmaking: Start
) -> None:
    await start_matchmaking(queue_lapse_s=0.5)
    await announce(bus, "h1", language="fi", markets=("FI",))
    await wait_for_host(bus, "c-busy", language="fi", market="FI")  # the shard's one host is now busy
    held = asyncio.ensure_future(answer(bus, match_request("c1", "s1", "fi", "FI", 3.0)))  # held 2.4 s
    await asyncio.sleep(1.0)
    second = await answer(bus, match_request("c2", "s2", "fi", "FI", 0.2))
    assert second.queued.position == 2, "the held shopper left the queue while waiting"
    first = await held
    assert first.queued.position == 1


async def test_a_host_matched_to_a_shopper_not_yet_told_is_freed_when_the_shard_changes_matcher(
    bus: Bus, start_matchmaking: Start
) -> None:
    first = await start_matchmaking()
    await announce(bus, "h1")
    await wait_for_host(bus, "c-busy")
    queued = await answer(bus, match_request("c1", "s1", "en", "US", 0.01))  # no request held from now on
    assert queued.HasField("queued")
    await release(bus, "h1", "c-busy")  # the next batch matches c1, whose request has ended

    async def matched_untold() -> bool:
        entry = first._records.get("h1")
        return entry is not None and entry.record.call_id == "c1"

    await eventually(matched_untold)
    await first.stop()  # before c1 asks again: it will ask the next matcher, which knows nothing of it
    await start_matchmaking()
    assert (await wait_for_host(bus, "c2", shopper="s2")).host_id == "h1"


async def test_a_hold_whose_call_is_gone_is_freed_by_the_audit_and_a_live_calls_hold_is_kept(
    bus: Bus, start_matchmaking: Start
) -> None:
    calls = await bus.key_value(subjects.CALLS_BUCKET)
    app = await start_matchmaking(hold_audit_s=0.3)
    await announce(bus, "h1")
    await announce(bus, "h2")
    lost = (await wait_for_host(bus, "c-lost")).host_id  # its release will never come
    live = (await wait_for_host(bus, "c-live", shopper="s2")).host_id
    record = calls_pb2.CallRecord(call_id="c-live", host_id=live, state=common_pb2.CALL_STATE_CONNECTED)
    await calls.put("c-live", record.SerializeToString())

    def status(host_id: str) -> int:
        return app._records[host_id].record.status

    async def freed() -> bool:
        return status(lost) == matchmaking_pb2.HOST_STATUS_AVAILABLE

    await eventually(freed)
    assert status(live) == matchmaking_pb2.HOST_STATUS_BUSY
    assert (await wait_for_host(bus, "c-next", shopper="s3")).host_id == lost
    await asyncio.sleep(1.0)  # three more rounds
    assert status(live) == matchmaking_pb2.HOST_STATUS_BUSY


async def test_a_stopping_instance_hands_its_shards_over_at_once_not_when_its_membership_expires(
    bus: Bus, start_matchmaking: Start
) -> None:
    lease = {"lease_ttl_s": 10.0, "lease_renew_s": 0.25}  # membership would last 10 s
    first = await start_matchmaking("mm-a", **lease)
    second = await start_matchmaking("mm-b", **lease)
    await announce(bus, "h1")
    shard = subjects.match_shard("local", "en")

    async def settled() -> bool:
        return (shard in first.matchers) != (shard in second.matchers)

    await eventually(settled)
    holder, other = (first, second) if shard in first.matchers else (second, first)
    stopped = time.monotonic()
    await holder.stop()

    async def taken() -> bool:
        return shard in other.matchers

    await eventually(taken, timeout_s=10.0)
    assert time.monotonic() - stopped < lease["lease_ttl_s"] / 2, "the shard waited for the membership to expire"


async def test_an_availability_over_the_item_limit_is_refused_not_cut(bus: Bus, start_matchmaking: Start) -> None:
    await start_matchmaking(max_availability_items=4)
    markets = ("US", "GB", "DE", "FR", "JP")
    with pytest.raises(TandemError) as refused:
        await announce(bus, "h-many", markets=markets)
    assert refused.value.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT
    assert "markets has 5 entries; the limit is 4" in refused.value.message
    assert tuple((await announce(bus, "h-many", markets=markets[:4])).markets) == markets[:4]


async def test_releases_arriving_together_are_each_answered_and_free_their_hosts(
    bus: Bus, start_matchmaking: Start
) -> None:
    """Releases are applied a pass at a time: every one of a pass gets its own answer, a repeated
    release of one host and an invalid one among them included."""
    await start_matchmaking()
    hosts = ["h1", "h2", "h3"]
    for host in hosts:
        await announce(bus, host)
    matched = {(await wait_for_host(bus, f"c{n}", shopper=f"s{n}")).host_id: f"c{n}" for n in range(len(hosts))}
    assert sorted(matched) == hosts
    done = matchmaking_pb2.HOST_OUTCOME_COMPLETED
    releases = [matchmaking_pb2.HostRelease(host_id=h, call_id=c, outcome=done) for h, c in matched.items()]
    releases.append(releases[0])
    releases.append(matchmaking_pb2.HostRelease(host_id="no such host!", call_id="c0", outcome=done))
    answers = await asyncio.gather(
        *(bus.request(subjects.MATCH_RELEASE, r, matchmaking_pb2.HostPresence, timeout_s=5) for r in releases),
        return_exceptions=True,
    )
    assert all(isinstance(a, matchmaking_pb2.HostPresence) and a.host_id == r.host_id
               for a, r in zip(answers[:4], releases, strict=False))  # fmt: skip
    refused = answers[4]
    assert isinstance(refused, TandemError)
    assert refused.code == common_pb2.ERROR_CODE_INVALID_ARGUMENT
    kv = await bus.key_value(subjects.PRESENCE_BUCKET)
    for host in hosts:
        record = matchmaking_pb2.HostPresence.FromString((await kv.get(host)).value or b"")
        assert (record.status, record.call_id) == (matchmaking_pb2.HOST_STATUS_AVAILABLE, "")


async def test_a_stopping_instance_refuses_releases_so_they_go_to_another(bus: Bus, start_matchmaking: Start) -> None:
    app = await start_matchmaking()
    await announce(bus, "h1")
    assert (await wait_for_host(bus, "c1")).host_id == "h1"
    await app.stop()
    done = matchmaking_pb2.HostRelease(host_id="h1", call_id="c1", outcome=matchmaking_pb2.HOST_OUTCOME_COMPLETED)
    with pytest.raises(TandemError) as refused:
        await bus.request(subjects.MATCH_RELEASE, done, matchmaking_pb2.HostPresence, timeout_s=5)
    assert refused.value.code == common_pb2.ERROR_CODE_UNAVAILABLE
    assert "stopping" in str(refused.value)


async def test_the_release_pass_in_flight_when_an_instance_stops_is_applied_and_answered(
    bus: Bus, start_matchmaking: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_matchmaking()
    await announce(bus, "h1")
    assert (await wait_for_host(bus, "c1")).host_id == "h1"
    assert app.book is not None
    apply, entered, gate = app.book.release_all, asyncio.Event(), asyncio.Event()

    async def held_at_the_gate(*args: Any) -> list[matchmaking_pb2.HostPresence | Exception | None]:
        entered.set()  # the pass is in flight: its writes wait until the instance is stopping
        await gate.wait()
        return await apply(*args)

    monkeypatch.setattr(app.book, "release_all", held_at_the_gate)
    done = matchmaking_pb2.HostRelease(host_id="h1", call_id="c1", outcome=matchmaking_pb2.HOST_OUTCOME_COMPLETED)
    answer = asyncio.create_task(bus.request(subjects.MATCH_RELEASE, done, matchmaking_pb2.HostPresence, timeout_s=5))
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(app.stop())
    await asyncio.sleep(0.2)
    gate.set()
    await stopping
    assert (await answer).status == matchmaking_pb2.HOST_STATUS_AVAILABLE


async def test_an_undecodable_presence_record_fails_its_own_host_alone(bus: Bus, start_matchmaking: Start) -> None:
    """A record no release, reservation or mirror can read (a defect, an operator's hand) costs the
    service that host only: its release is refused, others' go on, and the mirror keeps following."""
    await start_matchmaking()
    await announce(bus, "h1")
    assert (await wait_for_host(bus, "c1")).host_id == "h1"
    kv = await bus.key_value(subjects.PRESENCE_BUCKET)
    await kv.put("hx", b"\xff\xff\xff")
    done = matchmaking_pb2.HOST_OUTCOME_COMPLETED
    bad, good = await asyncio.gather(
        bus.request(subjects.MATCH_RELEASE, matchmaking_pb2.HostRelease(host_id="hx", call_id="cx", outcome=done),
                    matchmaking_pb2.HostPresence, timeout_s=5),
        bus.request(subjects.MATCH_RELEASE, matchmaking_pb2.HostRelease(host_id="h1", call_id="c1", outcome=done),
                    matchmaking_pb2.HostPresence, timeout_s=5),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(bad, TandemError)
    assert bad.code == common_pb2.ERROR_CODE_MALFORMED_MESSAGE
    assert isinstance(good, matchmaking_pb2.HostPresence)
    assert good.status == matchmaking_pb2.HOST_STATUS_AVAILABLE
    await announce(bus, "h2", language="de")  # after the bad record: the watch still follows the bucket
    assert (await wait_for_host(bus, "c2", shopper="s2", language="de")).host_id == "h2"
