"""Client frames: one `tandem.v1.Envelope` per WebSocket frame, binary protobuf or canonical JSON."""

from __future__ import annotations

import json
import uuid

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.context import Context

from tandem.common import subjects
from tandem.common.errors import MalformedMessageError, MessageTooLargeError, TandemError
from tandem.common.telemetry import TRACEPARENT, TRACESTATE, extract_context, inject_headers
from tandem.v1 import client_pb2

Envelope = client_pb2.Envelope

# Error messages sent to clients are cut to this many characters: they never echo unbounded input.
MAX_ERROR_MESSAGE_CHARS = 200


class MalformedFrameError(MalformedMessageError):
    """A frame that is not an envelope; `envelope_id` is its `id` when that much could be read."""

    def __init__(self, problem: str, envelope_id: str = "") -> None:
        super().__init__(f"cannot decode the envelope: {problem}")
        self.problem = problem
        self.envelope_id = envelope_id


def _first_line(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0][:MAX_ERROR_MESSAGE_CHARS]


def _safe_id(value: object) -> str:
    """The envelope id when it is a valid identifier (it is echoed as a correlation id), else ''."""
    if not isinstance(value, str):
        return ""
    try:
        return subjects.identifier("id", value)
    except TandemError:
        return ""


def _binary_id(frame: bytes) -> str:
    """The id of a broken binary envelope, when the frame starts with it (field 1, as protobuf
    writes it first): one tag byte, a varint length, the UTF-8 bytes."""
    if frame[:1] != b"\x0a":
        return ""
    length, position = 0, 1
    for shift in (0, 7):  # ids are short: at most a two-byte length
        if position >= len(frame):
            return ""
        byte = frame[position]
        position += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    else:
        return ""
    raw = frame[position : position + length]
    try:
        return _safe_id(raw.decode()) if len(raw) == length else ""
    except UnicodeDecodeError:
        return ""


def decode_frame(frame: bytes | str, *, max_bytes: int) -> Envelope:
    """Decode a binary (protobuf) or text (JSON object) frame. Raises `MessageTooLargeError` or
    `MalformedFrameError`; unknown JSON fields are rejected so typos surface."""
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
    if size > max_bytes:
        raise MessageTooLargeError(size, max_bytes)
    envelope = Envelope()
    if isinstance(frame, bytes):
        try:
            envelope.ParseFromString(frame)
        except (DecodeError, RuntimeError) as exc:
            raise MalformedFrameError(_first_line(exc), _binary_id(frame)) from None
        return envelope
    try:
        document = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise MalformedFrameError(f"invalid JSON ({_first_line(exc)})") from None
    if not isinstance(document, dict):
        raise MalformedFrameError("a text frame must be a JSON object")
    try:
        json_format.ParseDict(document, envelope)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise MalformedFrameError(_first_line(exc), _safe_id(document.get("id"))) from None
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
    """The client's view of an error: its code and a message of at most `MAX_ERROR_MESSAGE_CHARS`."""
    wire = error.to_proto()
    wire.message = wire.message[:MAX_ERROR_MESSAGE_CHARS]
    return new_envelope(correlation_id, error=wire)
