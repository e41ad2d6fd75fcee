"""The protocol fuzzer: hypothesis builds frames of every client payload, from the contract itself
(valid values, and huge, empty, unicode and control-character strings, subject wildcards, extreme
numbers, unknown and missing fields, other people's call ids, the wrong role, any order), in both
wire forms, and sends them to the real signaling, NATS and services.

For every frame: an answer (a frame carrying its id as `correlationId`) or the protocol's documented
silence; only documented error codes, never INTERNAL; the socket stays open; every service stays
ready; no service logs a traceback. `TANDEM_FUZZ_EXAMPLES` sets the run's length (`make fuzz`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.common import subjects
from tandem.common.errors import TandemError
from tandem.devstack.nats import NatsServer
from tandem.v1 import client_pb2, common_pb2

from .conftest import FAST, Socket, Tandem, open_socket, running_tandem

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

S = common_pb2
EXAMPLES = int(os.environ.get("TANDEM_FUZZ_EXAMPLES", "200"))
CLIENT_PAYLOADS = (
    "hello", "host_availability", "consult_request", "accept", "decline", "cancel", "sdp", "ice_candidate",
    "hangup", "push_product_card", "add_to_cart", "checkout", "ping",
)  # fmt: skip
SERVER_PAYLOADS = tuple(
    f.name for f in client_pb2.Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields if f.name not in CLIENT_PAYLOADS
)
# Frames the protocol answers only when they fail.
SILENT_ON_SUCCESS = frozenset({"host_availability", "ice_candidate"})
# Every code a client may see on an open socket (UNAUTHENTICATED closes it; INTERNAL is a bug).
DOCUMENTED = frozenset(S.ErrorCode.values()) - {
    S.ERROR_CODE_UNSPECIFIED,
    S.ERROR_CODE_INTERNAL,
    S.ERROR_CODE_UNAUTHENTICATED,
}
# Long timers and no rate limit: calls made by the fuzzer live through the run, and every frame
# reaches the code under test.
FUZZ_SETTINGS = {
    **FAST,
    "signaling": {
        **FAST["signaling"],
        "TANDEM_SIGNALING_RING_TIMEOUT_S": "600",
        "TANDEM_SIGNALING_QUEUE_TIMEOUT_S": "600",
        "TANDEM_SIGNALING_RATE_PER_S": "10000",
        "TANDEM_SIGNALING_RATE_BURST": "10000",
    },
}

NASTY_STRINGS = st.sampled_from(
    ["", "*", ">", ".", "a.b", "a b", "\t", "\x00", "ü", "🛒", "x" * 5000, "$SYS.>", "tandem.v1.>", "../..", "NaN"]
)
TEXT = st.one_of(NASTY_STRINGS, st.text(max_size=40), st.text(min_size=200, max_size=1200))
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 99, 100, 2**31, 2**32, 2**63, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
)


class World:
    """Ids a frame may name: real ones (this client's, another client's) and made-up ones."""

    def __init__(self) -> None:
        self.call_ids: list[str] = ["00000000-0000-0000-0000-000000000000"]
        self.products = ["sku-serum-30ml", "sku-earbuds", "sku-missing"]

    def call_id(self) -> st.SearchStrategy[str]:
        """One of the ids seen so far, the newest likeliest. The list grows during the run, so the
        draw is an index (the same choice every time) mapped onto it."""
        return st.integers(min_value=0, max_value=7).map(lambda i: self.call_ids[-1 - i % len(self.call_ids)])


def _value(field: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return st.sampled_from(["2026-12-01T00:00:00Z", "yesterday", 0])
        return _message(field.message_type, world, depth + 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        names = [v.name for v in field.enum_type.values]
        return st.one_of(st.sampled_from(names), st.sampled_from(names), NUMBERS, TEXT)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.one_of(st.booleans(), st.booleans(), TEXT)
    if field.type == FieldDescriptor.TYPE_STRING:
        # Mostly plausible values, so frames get past decoding into the call logic; the rest nasty.
        if field.name.endswith("call_id"):
            return st.one_of(world.call_id(), TEXT)
        if field.name == "product_id":
            return st.one_of(st.sampled_from(world.products), st.sampled_from(world.products), TEXT)
        if field.name in ("language", "languages"):
            return st.one_of(st.sampled_from(["zu", "zu", "en", "pt-BR", "EN", "zz-ZZ-zz"]), TEXT)
        if field.name in ("market", "markets"):
            return st.one_of(st.sampled_from(["US", "US", "JP", "us", "XX"]), TEXT)
        if field.name == "category" or field.name == "categories":
            return st.one_of(st.just("beauty"), TEXT)
        return st.one_of(st.uuids().map(str), TEXT)
    return st.one_of(st.integers(min_value=0, max_value=120), NUMBERS, TEXT)


def _message(descriptor: Descriptor, world: World, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    if depth > 2:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _value(field, world, depth)
        if field.is_repeated:
            value = st.one_of(st.lists(value, max_size=4), st.lists(value, min_size=40, max_size=60), value)
        fields[field.json_name] = value
    known = st.fixed_dictionaries({}, optional=fields)
    return st.one_of(known, known, known, known.map(lambda d: {**d, "notAField": 1}))


def _template(kind: str, call_id: str) -> dict[str, Any]:
    """A valid payload of this kind about `call_id`: the start of a realistic frame."""
    templates: dict[str, dict[str, Any]] = {
        "consult_request": {"category": "beauty", "language": "zu", "market": "US"},
        "host_availability": {"available": True, "languages": ["zu"], "markets": ["US"]},
        "accept": {"callId": call_id},
        "decline": {"callId": call_id, "reason": "busy"},
        "cancel": {"callId": call_id},
        "hangup": {"callId": call_id},
        "sdp": {"callId": call_id, "type": "TYPE_OFFER", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n"},
        "ice_candidate": {
            "callId": call_id,
            "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        },
        "push_product_card": {"callId": call_id, "productId": "sku-serum-30ml"},
        "add_to_cart": {"callId": call_id, "productId": "sku-earbuds", "quantity": 1},
        "checkout": {"callId": call_id, "idempotencyKey": "fuzz-key"},
        "ping": {"sentAtMs": "1"},
        "hello": {"resumeCallId": call_id},
    }
    return templates[kind]


def _realistic(kind: str, world: World) -> st.SearchStrategy[dict[str, Any]]:
    """A valid payload with, sometimes, one field replaced by something nasty."""

    def mutate(payload: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        if not payload:
            return st.just(payload)
        key = st.sampled_from(sorted(payload))
        nasty = st.one_of(TEXT, NUMBERS, st.none(), st.lists(TEXT, max_size=3))
        mutated = st.builds(lambda k, v: {**payload, k: v}, key, nasty)
        return st.one_of(st.just(payload), mutated)

    return world.call_id().map(lambda call_id: _template(kind, call_id)).flatmap(mutate)


def frames(world: World) -> st.SearchStrategy[tuple[str, str | bytes]]:
    """(payload kind, frame). The kind is "" for frames that are not envelopes at all."""
    envelope = client_pb2.Envelope.DESCRIPTOR

    def payload(kind: str) -> st.SearchStrategy[tuple[str, str | bytes]]:
        field = envelope.fields_by_name[kind]
        assert field.message_type is not None
        body = _message(field.message_type, world)
        if kind in CLIENT_PAYLOADS:
            body = st.one_of(_realistic(kind, world), _realistic(kind, world), body)
        ids = st.one_of(st.uuids().map(str), st.uuids().map(str), st.uuids().map(str), TEXT)
        document = st.builds(lambda i, b: {"id": i, field.json_name: b}, ids, body)
        return st.tuples(st.just(kind), st.one_of(document.map(json.dumps), document.map(_binary)))

    junk = st.tuples(
        st.just(""),
        st.one_of(
            st.binary(max_size=300),
            st.text(max_size=300),
            st.sampled_from(["[]", "null", "1", '"x"', "{", "{}", '{"id": {}}', "[" * 2000]),
        ),
    )
    return st.one_of(*(payload(kind) for kind in CLIENT_PAYLOADS + SERVER_PAYLOADS), junk)


def _binary(document: dict[str, Any]) -> str | bytes:
    """The same document as a protobuf frame, where it is a valid envelope (else as JSON)."""
    envelope = client_pb2.Envelope()
    try:
        json_format.ParseDict(document, envelope)
    except (json_format.ParseError, ValueError, TypeError, RecursionError):
        return json.dumps(document)
    return envelope.SerializeToString()


def _answerable_id(frame: str | bytes) -> str:
    """The id an answer to this frame carries: the envelope's, when it has a valid one."""
    envelope = client_pb2.Envelope()
    try:
        if isinstance(frame, bytes):
            envelope.ParseFromString(frame)
        else:
            json_format.Parse(frame, envelope)
        return subjects.identifier("id", envelope.id)
    except (json_format.ParseError, DecodeError, TandemError, RuntimeError, ValueError, RecursionError):
        return ""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tandem(
    module_nats: NatsServer, module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tandem]:
    logs = tmp_path_factory.mktemp("fuzz-logs")
    async with running_tandem(module_nats, module_database, logs, FUZZ_SETTINGS) as stack:
        yield stack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clients(tandem: Tandem) -> AsyncIterator[tuple[dict[str, Socket], World]]:
    async with aiohttp.ClientSession() as http:
        world = World()
        # A call between two other people, ringing through the whole run: its id is fair game.
        victim_host = await open_socket(tandem, http, "host", "victim-host")
        await victim_host.send(
            {"id": "v1", "hostAvailability": {"available": True, "languages": ["yo"], "markets": ["US"]}}
        )
        victim = await open_socket(tandem, http, "shopper", "victim-shopper")
        await victim.send({"id": "v2", "consultRequest": {"category": "beauty", "language": "yo", "market": "US"}})
        world.call_ids.append((await victim.until("queue_update")).queue_update.call_id)
        await victim_host.until("invite")
        sockets = {
            "shopper": await open_socket(tandem, http, "shopper", "fuzz-shopper"),
            "host": await open_socket(tandem, http, "host", "fuzz-host"),
        }
        # The fuzzing host takes the fuzzing shopper's calls, so frames reach ringing and connected calls.
        await sockets["host"].send(
            {"id": "f1", "hostAvailability": {"available": True, "languages": ["zu"], "markets": ["US"]}}
        )
        yield sockets, world


# How long a frame's answer may take before it counts as never coming. The fuzzer looks for hangs,
# not slowness: on a starved machine a call can change owner mid-run (a lease lapses), and a frame
# about it then waits for the new owner (`TAKEOVER_WAIT_S`) on top of the instances' own delays.
ANSWER_WAIT_S = 30


async def _answers(socket: Socket, frame_id: str, sentinel: str, *, wait_for_answer: bool) -> list[client_pb2.Envelope]:
    """Frames received until the sentinel's pong; then, if the frame's answer is still due (some
    travel over NATS), longer for it."""
    received: list[client_pb2.Envelope] = []
    while True:
        envelope = await socket.receive(timeout_s=ANSWER_WAIT_S)
        if envelope.HasField("pong") and envelope.correlation_id == sentinel:
            break
        received.append(envelope)
    while wait_for_answer and not any(e.correlation_id == frame_id for e in received):
        received.append(await socket.receive(timeout_s=ANSWER_WAIT_S))
    return received


# Hundreds of frame sequences through the whole stack: minutes on a busy machine.
@pytest.mark.timeout(600)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
async def test_no_frame_breaks_the_protocol_or_a_service(
    tandem: Tandem, clients: tuple[dict[str, Socket], World], data: st.DataObject
) -> None:
    sockets, world = clients
    for step in range(data.draw(st.integers(min_value=1, max_value=5), label="frames")):
        role = data.draw(st.sampled_from(sorted(sockets)), label="sender")
        kind, frame = data.draw(frames(world), label="frame")
        socket = sockets[role]
        await socket.send(frame)
        sentinel = f"sentinel-{step}"
        await socket.send({"id": sentinel, "ping": {}})
        frame_id = _answerable_id(frame)
        answered_kind = kind in CLIENT_PAYLOADS and kind not in SILENT_ON_SUCCESS
        received = await _answers(socket, frame_id, sentinel, wait_for_answer=bool(frame_id) and answered_kind)
        for envelope in received:
            for call_id in (envelope.queue_update.call_id, envelope.invite.call_id):
                if call_id and call_id not in world.call_ids:
                    world.call_ids.append(call_id)
            if envelope.HasField("error"):
                code = envelope.error.code
                assert code in DOCUMENTED, f"{S.ErrorCode.Name(code)} for {kind}: {envelope.error.message}"
                assert len(envelope.error.message) <= 200
        if frame_id and kind in SERVER_PAYLOADS:
            assert any(e.HasField("error") and e.correlation_id == frame_id for e in received)
        assert not socket.ws.closed
    assert await tandem.not_ready() == []
    assert tandem.tracebacks() == 0
