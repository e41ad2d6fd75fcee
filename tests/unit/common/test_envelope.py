"""Every client message survives binary and JSON encoding; bad frames get typed errors."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.common.envelope import MAX_ERROR_MESSAGE_CHARS, decode_frame, encode_frame, error_envelope
from tandem.common.errors import MalformedMessageError, MessageTooLargeError, TandemError
from tandem.v1 import client_pb2, common_pb2

pytestmark = pytest.mark.unit

MAX = 64 * 1024
_FD = FieldDescriptor

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    _FD.TYPE_STRING: st.text(max_size=20),
    _FD.TYPE_BOOL: st.booleans(),
    _FD.TYPE_UINT32: st.integers(0, 2**32 - 1),
    _FD.TYPE_UINT64: st.integers(0, 2**64 - 1),
    _FD.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    _FD.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    _FD.TYPE_DOUBLE: st.floats(allow_nan=False, allow_infinity=False),
}


def _value(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == _FD.TYPE_MESSAGE:
        assert field.message_type is not None
        if field.message_type.full_name == "google.protobuf.Timestamp":
            return st.builds(
                lambda s, n: {"seconds": s, "nanos": n},
                st.integers(0, 253402300799),
                st.integers(0, 999_999_999),
            )
        return _fields_of(field.message_type)
    if field.type == _FD.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values])
    return _SCALARS[field.type]


def _fields_of(descriptor: Descriptor) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for a message of this type, every field optional."""
    plain = [f for f in descriptor.fields if f.containing_oneof is None]
    strategies = {f.name: (st.lists(_value(f), max_size=3) if f.is_repeated else _value(f)) for f in plain}
    return st.fixed_dictionaries({}, optional=strategies)


PAYLOADS = list(client_pb2.Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields)


@st.composite
def envelopes(draw: st.DrawFn) -> client_pb2.Envelope:
    payload = draw(st.sampled_from(PAYLOADS))
    fields: dict[str, Any] = draw(_fields_of(client_pb2.Envelope.DESCRIPTOR))
    assert payload.message_type is not None
    message_cls: type[Message] = type(getattr(client_pb2.Envelope(), payload.name))
    fields[payload.name] = message_cls(**draw(_fields_of(payload.message_type)))
    return client_pb2.Envelope(**fields)


@settings(max_examples=300, deadline=None)
@given(envelopes())
def test_every_client_message_round_trips_binary_and_json(envelope: client_pb2.Envelope) -> None:
    as_binary = decode_frame(encode_frame(envelope, as_json=False), max_bytes=MAX)
    as_json = decode_frame(encode_frame(envelope, as_json=True), max_bytes=MAX)
    assert as_binary == envelope
    assert as_json == envelope
    assert as_json.WhichOneof("payload") == envelope.WhichOneof("payload")


def test_the_property_covers_every_payload() -> None:
    assert len(PAYLOADS) == 24


@pytest.mark.parametrize(
    "frame",
    [b"\xff\xff\xff", "not json", '{"hello": {"tokn": "typo"}}', '{"ping": {"sentAtMs": "soon"}}'],
)
def test_garbage_is_a_malformed_message(frame: bytes | str) -> None:
    with pytest.raises(MalformedMessageError):
        decode_frame(frame, max_bytes=MAX)


def test_an_oversized_frame_is_refused_before_decoding() -> None:
    with pytest.raises(MessageTooLargeError) as info:
        decode_frame(b"\x00" * (MAX + 1), max_bytes=MAX)
    assert (info.value.size, info.value.max_size) == (MAX + 1, MAX)


def test_an_error_keeps_its_retry_hint_across_services_and_to_the_client() -> None:
    error = TandemError("the database is away", code=common_pb2.ERROR_CODE_UNAVAILABLE, retry_after_s=2)
    relayed = TandemError.from_proto(error.to_proto())  # a service's error, as the caller sees it
    frame = error_envelope(relayed, "c1")
    assert (frame.error.code, frame.error.retry_after_s, frame.correlation_id) == (
        common_pb2.ERROR_CODE_UNAVAILABLE,
        2,
        "c1",
    )


def test_an_error_message_sent_to_a_client_is_bounded() -> None:
    assert len(error_envelope(TandemError("x" * 5000)).error.message) == MAX_ERROR_MESSAGE_CHARS
