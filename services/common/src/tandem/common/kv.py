"""Read-modify-write of protobuf records in a JetStream KV bucket, with compare-and-set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import nats.js.errors
from google.protobuf.message import Message
from nats.js import api
from nats.js.kv import KeyValue

from tandem.common.bus import Bus, decode
from tandem.common.errors import TandemError
from tandem.v1 import common_pb2

M = TypeVar("M", bound=Message)

# JetStream's codes for a write whose expected last revision of the key was not the last any more,
# which nats-py's `KeyValue.update` turns into `KeyWrongLastSequenceError` inline, around its own
# publish: a write sent by `Bus.publish_all_acked` gets its `APIError` mapped here the same way.
_WRONG_LAST_REVISION = frozenset({10071, 10164})


@dataclass(frozen=True)
class Written(Generic[M]):
    """A record as written: the message, its bytes and the key's new revision."""

    record: M
    value: bytes
    revision: int


async def _read(kv: KeyValue, key: str, record_type: type[M]) -> tuple[M | None, int | None]:
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None, None
    return (decode(record_type, entry.value) if entry.value else None), entry.revision


async def modify(
    kv: KeyValue,
    key: str,
    record_type: type[M],
    change: Callable[[M | None], M | None],
    *,
    attempts: int = 5,
    known: tuple[M, int] | None = None,
) -> Written[M] | None:
    """Apply `change` to the current record (None when absent) and write the result if nobody wrote
    in between, retrying on conflict. `change` returning None leaves the record as it is.
    Returns what was written, or None. `known`: a record and revision believed current (a mirror
    of the bucket), tried first without reading the bucket; when it is stale or `change` declines
    it, the bucket is read."""
    current: M | None
    revision: int | None
    for _ in range(attempts):
        guessed = known is not None
        if known is not None:
            (current, revision), known = known, None
        else:
            current, revision = await _read(kv, key, record_type)
        updated = change(current)
        if updated is None:
            if guessed:
                continue  # perhaps only the guess is stale: read the bucket
            return None
        value = updated.SerializeToString()
        try:
            if revision is None:
                written = await kv.create(key, value)
            else:
                written = await kv.update(key, value, last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            continue
        return Written(updated, value, int(written))
    raise TandemError(f"{key}: too many concurrent writers", code=common_pb2.ERROR_CODE_UNAVAILABLE)


async def update_all(
    bus: Bus, bucket: str, writes: Sequence[tuple[str, bytes, int]], *, timeout_s: float
) -> list[int | Exception | None]:
    """Compare-and-set several keys of `bucket` at once (`Bus.publish_all_acked`): each write
    is (key, value, the revision it replaces). Per write, in order: the new revision; None when the
    key had moved past that revision (another writer won); else the error."""
    expected = api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE
    answers = await bus.publish_all_acked(
        [(f"$KV.{bucket}.{key}", value, {expected: str(last)}) for key, value, last in writes], timeout_s=timeout_s
    )
    return [_outcome(answer) for answer in answers]


def _outcome(answer: api.PubAck | Exception) -> int | Exception | None:
    if isinstance(answer, api.PubAck):
        return answer.seq
    if isinstance(answer, nats.js.errors.APIError):
        if answer.err_code in _WRONG_LAST_REVISION:
            return None
        return TandemError(f"write refused: {answer.description}", code=common_pb2.ERROR_CODE_UNAVAILABLE)
    return answer
