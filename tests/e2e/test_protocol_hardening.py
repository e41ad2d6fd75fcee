"""Bad input against the real stack: each frame gets a clear error, the socket stays open, every
service stays ready, and nothing logs a traceback. One test per bug found trying Tandem as a user."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tandem.devstack.bots import dev_token
from tandem.v1 import client_pb2, common_pb2

from .conftest import Socket, Tandem, available_host, connected_call, open_socket, request_consult

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

S = common_pb2


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def assert_alive(t: Tandem, socket: Socket) -> None:
    await socket.send({"id": "ping-alive", "ping": {"sentAtMs": "1"}})
    assert (await socket.until("pong")).correlation_id == "ping-alive"
    assert await t.not_ready() == []
    assert t.tracebacks() == 0


async def expect_error(
    socket: Socket, code: common_pb2.ErrorCode.ValueType, correlation_id: str
) -> client_pb2.Envelope:
    envelope = await socket.until("error")
    assert (S.ErrorCode.Name(envelope.error.code), envelope.correlation_id) == (S.ErrorCode.Name(code), correlation_id)
    assert len(envelope.error.message) <= 200
    return envelope


async def test_a_call_id_that_cannot_be_a_subject_is_refused_and_nothing_goes_down(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    socket = await open_socket(tandem_bots, http, "shopper", "shopper-dos")
    for call_id in ["c" * 4100, "a*b", "a>b", "a\tb", "a.b", "a b", "ü", ""]:
        await socket.send({"id": "x", "hangup": {"callId": call_id}})
        await expect_error(socket, S.ERROR_CODE_INVALID_ARGUMENT, "x")
    await assert_alive(tandem_bots, socket)


async def test_with_a_bearer_token_the_first_frame_is_answered_not_swallowed(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    pinger = await open_socket(tandem_bots, http, "shopper", "shopper-bearer-ping", bearer=True)
    await pinger.send({"id": "p1", "ping": {"sentAtMs": "7"}})
    assert (await pinger.receive()).HasField("welcome")
    assert (await pinger.receive()).correlation_id == "p1"
    shopper = await open_socket(tandem_bots, http, "shopper", "shopper-bearer", bearer=True)
    await shopper.send({"id": "c1", "consultRequest": {"category": "beauty", "language": "is", "market": "IS"}})
    assert (await shopper.receive()).welcome.user_id == "shopper-bearer"
    queued = await shopper.until("queue_update")
    assert queued.correlation_id == "c1"
    await shopper.send({"id": "c2", "cancel": {"callId": queued.queue_update.call_id}})
    ended = await shopper.until("call_update")
    while ended.call_update.state != S.CALL_STATE_ENDED:
        ended = await shopper.until("call_update")
    assert (ended.call_update.reason, ended.correlation_id) == (S.END_REASON_CANCELLED, "c2")


async def test_undecodable_frames_are_malformed_with_their_id_and_a_bounded_message(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    socket = await open_socket(tandem_bots, http, "shopper", "shopper-malformed")
    await socket.send("[]")
    await expect_error(socket, S.ERROR_CODE_MALFORMED_MESSAGE, "")
    await socket.send({"id": "m1", "x" * 3000: 1})
    await expect_error(socket, S.ERROR_CODE_MALFORMED_MESSAGE, "m1")
    await socket.send(client_pb2.Envelope(id="b1").SerializeToString() + b"\xff\xff\xff")
    await expect_error(socket, S.ERROR_CODE_MALFORMED_MESSAGE, "b1")
    await socket.send({"id": "e1"})
    await expect_error(socket, S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE, "e1")
    await socket.send({"id": "w1", "welcome": {}})
    await expect_error(socket, S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE, "w1")
    await assert_alive(tandem_bots, socket)


async def test_host_availability_is_validated_not_accepted_silently(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    host = await open_socket(tandem_bots, http, "host", "host-validated")
    bad: list[dict[str, Any]] = [
        {"available": True, "languages": [f"x-{i:05d}" for i in range(5000)]},
        {"available": True, "languages": ["english"]},
        {"available": True, "languages": ["en"], "markets": ["USA"]},
        {"available": True, "languages": ["en"], "markets": ["XX"]},
        {"available": True, "languages": ["en"], "timeZone": "Mars/Olympus_Mons"},
        {"available": True, "languages": ["en"], "categories": ["beauty*"]},
        {"available": True},
    ]
    for i, availability in enumerate(bad):
        await host.send({"id": f"a{i}", "hostAvailability": availability})
        await expect_error(host, S.ERROR_CODE_INVALID_ARGUMENT, f"a{i}")
    shopper = await open_socket(tandem_bots, http, "shopper", "shopper-validated")
    await shopper.send({"id": "r1", "consultRequest": {"category": "beauty", "language": "klingon"}})
    await expect_error(shopper, S.ERROR_CODE_INVALID_ARGUMENT, "r1")
    await shopper.send({"id": "r2", "consultRequest": {"category": "beauty", "language": "en", "market": "usa"}})
    await expect_error(shopper, S.ERROR_CODE_INVALID_ARGUMENT, "r2")
    await assert_alive(tandem_bots, host)


async def test_a_frame_over_the_hard_limit_gets_an_error_before_the_close(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    socket = await open_socket(tandem_bots, http, "shopper", "shopper-huge")
    await socket.send({"id": "big", "ping": {}, "padding": "x" * 70_000})  # over the soft limit: an error
    await expect_error(socket, S.ERROR_CODE_MESSAGE_TOO_LARGE, "")
    await socket.send("x" * 300_000)  # over the hard limit: an error, then the close
    await expect_error(socket, S.ERROR_CODE_MESSAGE_TOO_LARGE, "")
    closing = await socket.ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert socket.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert await tandem_bots.not_ready() == []


async def test_a_browser_candidate_is_accepted_as_it_is_even_before_the_offer(tandem_bots: Tandem) -> None:
    t = tandem_bots
    host = await available_host(t, "host-early-ice", "lv")
    shopper = await t.bot("shopper", "shopper-early-ice")
    call_id = await request_consult(shopper, "lv")
    await host.expect("invite", call_id=call_id)
    # What `RTCIceCandidate.toJSON()` gives, sent while the phone rings (before any offer).
    candidate = {
        "candidate": "candidate:1 1 udp 2122260223 192.0.2.10 54400 typ host generation 0",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    }
    await host.send_raw(json.dumps({"id": "ice1", "iceCandidate": {"callId": call_id, **candidate}}))
    await host.send(ping=client_pb2.Ping())
    await host.expect("pong")
    assert not [e for e in host.inbox if e.HasField("error")]
    await shopper.send(cancel=client_pb2.Cancel(call_id=call_id))
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)


async def test_in_a_call_the_cart_shrinks_reasons_are_the_clients_and_a_resume_restores_the_screen(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    t = tandem_bots
    host, shopper, call_id = await connected_call(t, "in-call", "et")
    await host.send(push_product_card=client_pb2.PushProductCard(call_id=call_id, product_id="sku-serum-30ml"))
    await shopper.expect("product_card", call_id=call_id)
    for product_id, quantity in [("sku-serum-30ml", 2), ("sku-earbuds", 1), ("sku-serum-30ml", 0)]:
        await shopper.send(add_to_cart=client_pb2.AddToCart(call_id=call_id, product_id=product_id, quantity=quantity))
        cart = (await shopper.expect("cart_update", call_id=call_id)).cart_update
    assert [(line.product_id, line.quantity) for line in cart.lines] == [("sku-earbuds", 1)]

    reason_id = await shopper.send(hangup=client_pb2.Hangup(call_id=call_id, reason=S.END_REASON_NO_HOST))
    refused = await shopper.expect("error")
    assert (refused.error.code, refused.correlation_id) == (S.ERROR_CODE_INVALID_ARGUMENT, reason_id)

    # The shopper's app reconnects on a new socket and resumes: it is shown the call as it is.
    token = await dev_token(t.signaling_urls[1], "shopper", "shopper-in-call")
    socket = Socket(await http.ws_connect(t.signaling_urls[1].replace("http", "ws", 1) + "/v1/ws"))
    await socket.send({"id": "resume-1", "hello": {"token": token, "resumeCallId": call_id}})
    assert (await socket.receive()).welcome.user_id == "shopper-in-call"
    update = await socket.until("call_update")
    assert (update.call_update.state, update.call_update.peer_id, update.correlation_id) == (
        S.CALL_STATE_CONNECTED,
        "host-in-call",
        "resume-1",
    )
    assert update.call_update.HasField("at")
    assert (await socket.until("product_card")).product_card.product.product_id == "sku-serum-30ml"
    assert [line.product_id for line in (await socket.until("cart_update")).cart_update.lines] == ["sku-earbuds"]
    await socket.send({"id": "resume-2", "hello": {"token": token, "resumeCallId": str(uuid.uuid4())}})
    await expect_error(socket, S.ERROR_CODE_INVALID_STATE, "resume-2")  # one hello per socket

    await shopper.send(hangup=client_pb2.Hangup(call_id=call_id))
    ended = await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)
    assert (ended.call_update.reason, ended.call_update.peer_id) == (S.END_REASON_HANGUP, "shopper-in-call")
    await assert_alive(t, socket)


async def test_dev_tokens_can_be_fetched_by_a_web_client_on_another_origin(
    tandem_bots: Tandem, http: aiohttp.ClientSession
) -> None:
    url = tandem_bots.signaling_urls[0]
    async with http.get(f"{url}/dev/token", params={"role": "host", "user": "web"}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with http.get(f"{url}/dev/token", params={"role": "host", "user": "wéb"}) as refused:
        assert refused.status == 400
