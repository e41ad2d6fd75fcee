"""Every way a consultation can go wrong gets a clear state, reason or error, and nothing else breaks."""

from __future__ import annotations

import asyncio

import pytest

from tandem.common.errors import TandemError
from tandem.devstack.bots import Bot, dev_token
from tandem.v1 import client_pb2, common_pb2

from .conftest import Tandem, available_host, request_consult

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

S = common_pb2


async def test_no_host_online_ends_the_call_with_no_host(tandem_bots: Tandem) -> None:
    shopper = await tandem_bots.bot("shopper", "shopper-nohost")
    call_id = await request_consult(shopper, "fi")
    await shopper.send(consult_request=client_pb2.ConsultRequest(category="beauty", language="fi", market="DE"))
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_INVALID_STATE  # one consultation at a time
    ended = await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, timeout_s=10)
    assert ended.call_update.reason == S.END_REASON_NO_HOST


async def test_one_consultation_at_a_time_holds_across_instances(tandem_bots: Tandem) -> None:
    t = tandem_bots
    phone = await t.bot("shopper", "shopper-two-devices", instance=0)
    call_id = await request_consult(phone, "is")
    tablet = await t.bot("shopper", "shopper-two-devices", instance=1)  # the same shopper, elsewhere
    request_id = await tablet.send(
        consult_request=client_pb2.ConsultRequest(category="beauty", language="is", market="DE")
    )
    refused = await tablet.expect("error")
    assert (refused.error.code, refused.correlation_id) == (S.ERROR_CODE_INVALID_STATE, request_id)
    await phone.send(cancel=client_pb2.Cancel(call_id=call_id))
    await phone.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, reason=S.END_REASON_CANCELLED)
    # Ended means over, everywhere: the other device may start the next one at once.
    next_call = await request_consult(tablet, "is")
    await tablet.send(cancel=client_pb2.Cancel(call_id=next_call))
    await tablet.expect("call_update", call_id=next_call, state=S.CALL_STATE_ENDED)


async def test_a_declined_shopper_is_requeued_to_another_host(tandem_bots: Tandem) -> None:
    t = tandem_bots
    hosts = {
        h.name: h
        for h in [await available_host(t, "host-decl-a", "ja"), await available_host(t, "host-decl-b", "ja", 1)]
    }
    shopper = await t.bot("shopper", "shopper-decl")
    call_id = await request_consult(shopper, "ja")

    first = await _invited(hosts, call_id)
    await first.send(decline=client_pb2.Decline(call_id=call_id, reason="busy with a customer"))
    ended = await first.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)
    assert ended.call_update.reason == S.END_REASON_DECLINED
    requeued = await shopper.expect(
        "call_update", call_id=call_id, state=S.CALL_STATE_QUEUED, reason=S.END_REASON_DECLINED
    )
    assert requeued.call_update.call_id == call_id

    (second,) = [h for h in hosts.values() if h is not first]
    await second.expect("invite", call_id=call_id)
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_RINGING)
    await shopper.send(cancel=client_pb2.Cancel(call_id=call_id))
    await second.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, reason=S.END_REASON_CANCELLED)


async def _invited(hosts: dict[str, Bot], call_id: str) -> Bot:
    for _ in range(100):
        for host in hosts.values():
            if any(e.WhichOneof("payload") == "invite" for e in host.inbox):
                await host.expect("invite", call_id=call_id)
                return host
        await asyncio.sleep(0.05)
    raise AssertionError("no host was invited")


async def test_an_unanswered_invite_times_out_and_the_shopper_waits_for_another_host(tandem_bots: Tandem) -> None:
    t = tandem_bots
    host = await available_host(t, "host-silent", "sv")
    shopper = await t.bot("shopper", "shopper-silent")
    call_id = await request_consult(shopper, "sv")
    await host.expect("invite", call_id=call_id)
    timed_out = await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, timeout_s=6)
    assert timed_out.call_update.reason == S.END_REASON_RING_TIMEOUT
    assert timed_out.call_update.HasField("at")
    assert timed_out.call_update.peer_id == "shopper-silent"
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_QUEUED, reason=S.END_REASON_RING_TIMEOUT)
    # Nobody else speaks Swedish: a host was rung, but the queue times out.
    ended = await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, timeout_s=10)
    assert ended.call_update.reason == S.END_REASON_QUEUE_TIMEOUT


async def test_a_shopper_cancelling_while_ringing_frees_the_host(tandem_bots: Tandem) -> None:
    t = tandem_bots
    host = await available_host(t, "host-cancel", "nl")
    shopper = await t.bot("shopper", "shopper-cancel")
    call_id = await request_consult(shopper, "nl")
    await host.expect("invite", call_id=call_id)
    await shopper.send(cancel=client_pb2.Cancel(call_id=call_id))
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, reason=S.END_REASON_CANCELLED)
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, reason=S.END_REASON_CANCELLED)
    # The host is available again for the next shopper.
    next_shopper = await t.bot("shopper", "shopper-after-cancel", instance=1)
    next_call = await request_consult(next_shopper, "nl")
    await host.expect("invite", call_id=next_call, timeout_s=5)


async def test_garbage_and_unknown_messages_get_errors_and_the_connection_carries_on(tandem_bots: Tandem) -> None:
    t = tandem_bots
    shopper = await t.bot("shopper", "shopper-garbage")
    await shopper.send_raw("this is not json")
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_MALFORMED_MESSAGE
    await shopper.send_raw(b"\xff\xfe\xfd")
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_MALFORMED_MESSAGE
    await shopper.send_raw('{"id": "1", "fancyNewThing": {}}')
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_MALFORMED_MESSAGE
    await shopper.send_raw('{"id": "2"}')
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE
    await shopper.send(pong=client_pb2.Pong())
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE
    await shopper.send_raw("x" * 70_000)
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_MESSAGE_TOO_LARGE
    await shopper.send(accept=client_pb2.Accept(call_id="no-such-call"))
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_NOT_FOUND
    # Still connected, still served.
    request_id = await shopper.send(ping=client_pb2.Ping(sent_at_ms=7))
    pong = await shopper.expect("pong")
    assert (pong.correlation_id, pong.pong.sent_at_ms) == (request_id, 7)


async def test_roles_are_enforced(tandem_bots: Tandem) -> None:
    t = tandem_bots
    host = await available_host(t, "host-roles", "pl")
    shopper = await t.bot("shopper", "shopper-roles")
    await host.send(consult_request=client_pb2.ConsultRequest(category="beauty", language="pl", market="DE"))
    assert (await host.expect("error")).error.code == S.ERROR_CODE_PERMISSION_DENIED
    await shopper.send(host_availability=client_pb2.HostAvailability(available=True, languages=["pl"]))
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_PERMISSION_DENIED

    call_id = await request_consult(shopper, "pl")
    await host.expect("invite", call_id=call_id)
    await shopper.send(accept=client_pb2.Accept(call_id=call_id))  # a shopper cannot accept for the host
    assert (await shopper.expect("error")).error.code == S.ERROR_CODE_PERMISSION_DENIED
    intruder = await t.bot("host", "host-intruder", instance=1)
    await intruder.send(accept=client_pb2.Accept(call_id=call_id))
    assert (await intruder.expect("error")).error.code == S.ERROR_CODE_PERMISSION_DENIED
    await shopper.send(cancel=client_pb2.Cancel(call_id=call_id))


async def test_a_bad_token_is_refused(tandem_bots: Tandem) -> None:
    url = tandem_bots.signaling_urls[0]
    forged = Bot(url, (await dev_token(url, "host", "mallory"))[:-4] + "AAAA", name="forged")
    with pytest.raises(TandemError) as refused:
        await forged.connect()
    assert refused.value.code == S.ERROR_CODE_UNAUTHENTICATED
    await forged.close()


async def test_a_dropped_socket_ends_the_call_after_the_grace_period_unless_it_comes_back(
    tandem_bots: Tandem,
) -> None:
    t = tandem_bots
    host = await available_host(t, "host-drop", "cs")
    # Comes back within the grace period (1 s here): the call goes on, on the new socket.
    shopper = await t.bot("shopper", "shopper-back")
    call_id = await request_consult(shopper, "cs")
    await host.expect("invite", call_id=call_id)
    await shopper.close()
    shopper_again = await t.bot("shopper", "shopper-back")
    await asyncio.sleep(1.5)
    await host.send(accept=client_pb2.Accept(call_id=call_id))
    await shopper_again.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTING)
    await shopper_again.send(hangup=client_pb2.Hangup(call_id=call_id))
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED, reason=S.END_REASON_HANGUP)

    # Does not come back: the call ends for the host with PEER_DISCONNECTED.
    leaver = await t.bot("shopper", "shopper-gone")
    other_call = await request_consult(leaver, "cs")
    await host.expect("invite", call_id=other_call, timeout_s=5)
    await leaver.close()
    ended = await host.expect("call_update", call_id=other_call, state=S.CALL_STATE_ENDED, timeout_s=5)
    assert ended.call_update.reason == S.END_REASON_PEER_DISCONNECTED
