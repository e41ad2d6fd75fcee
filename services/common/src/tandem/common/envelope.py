"""Client frames: one `tandem.v1.Envelope` per WebSocket frame, binary protobuf or canonical JSON."""

from __future__ import annotations

import uuid

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.context import Context

from tandem.common.errors import MalformedMessageError, MessageTooLargeError, TandemError
from tandem.common.telemetry import TRACEPARENT, TRACESTATE, extract_context, inject_headers
from tandem.v1 import client_pb2, common_pb2

Envelope = client_pb2.Envelope


def decode_frame(frame: bytes | str, *, max_bytes: int) -> Envelope:
    """Decode a binary (protobuf) or text (JSON) frame. Raises `MessageTooLargeError` or
    `MalformedMessageError`; unknown JSON fields are rejected so typos surface."""
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    if size > max_bytes:
        raise MessageTooLargeError(size, max_bytes)
    envelope = Envelope()
    try:
        if isinstance(frame, bytes):
            envelope.ParseFromString(frame)
        else:
            json_format.Parse(frame, envelope)
    except (DecodeError, json_format.ParseError, RuntimeError) as exc:
        raise MalformedMessageError(f"cannot decode envelope: {exc}") from None
    return envelope


def encode_frame(envelope: Envelope, *, as_json: bool) -> bytes | str:
    """Encode for the client's chosen form (the form of its first frame)."""
    if as_json:
        return json_format.MessageToJson(envelope, indent=None)
    return envelope.SerializeToString()


def new_envelope(correlation_id: str = "", **payload: object) -> Envelope:
    """An envelope with a fresh id and the current span's trace context,
    e.g. `new_envelope(welcome=Welcome(...))`."""
    trace = inject_headers({})
    return Envelope(
        id=str(uuid.uuid4()),
        correlation_id=correlation_id,
        traceparent=trace.get(TRACEPARENT, ""),
        tracestate=trace.get(TRACESTATE, ""),
        **payload,  # type: ignore[arg-type]
    )


def trace_context(envelope: Envelope) -> Context:
    """The client's trace context carried by an envelope (empty when it sent none)."""
    carrier = {TRACEPARENT: envelope.traceparent, TRACESTATE: envelope.tracestate}
    return extract_context({k: v for k, v in carrier.items() if v})


def error_envelope(error: TandemError, correlation_id: str = "") -> Envelope:
    return new_envelope(correlation_id, error=common_pb2.Error(code=error.code, message=error.message))
