"""Read-modify-write of protobuf records in a JetStream KV bucket, with compare-and-set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import nats.js.errors
from google.protobuf.message import Message
from nats.js.kv import KeyValue

from tandem.common.bus import decode
from tandem.common.errors import TandemError
from tandem.v1 import common_pb2

M = TypeVar("M", bound=Message)


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
