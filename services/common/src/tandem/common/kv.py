"""Read-modify-write of protobuf records in a JetStream KV bucket, with compare-and-set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import nats.js.errors
from google.protobuf.message import Message
from nats.js.kv import KeyValue

from tandem.common.bus import decode
from tandem.common.errors import TandemError
from tandem.v1 import common_pb2

M = TypeVar("M", bound=Message)


async def modify(
    kv: KeyValue, key: str, record_type: type[M], change: Callable[[M | None], M | None], *, attempts: int = 5
) -> M | None:
    """Apply `change` to the current record (None when absent) and write the result if nobody wrote
    in between, retrying on conflict. `change` returning None leaves the record as it is.
    Returns what was written, or None."""
    for _ in range(attempts):
        try:
            entry = await kv.get(key)
            current = decode(record_type, entry.value) if entry.value else None
            revision: int | None = entry.revision
        except nats.js.errors.KeyNotFoundError:
            current, revision = None, None
        updated = change(current)
        if updated is None:
            return None
        try:
            if revision is None:
                await kv.create(key, updated.SerializeToString())
            else:
                await kv.update(key, updated.SerializeToString(), last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            continue
        return updated
    raise TandemError(f"{key}: too many concurrent writers", code=common_pb2.ERROR_CODE_UNAVAILABLE)
