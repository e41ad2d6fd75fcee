"""A KV bucket mirrored in memory by a watch: the latest value and revision of every key.

Eventually consistent; writes go to the bucket (compare-and-set on the mirrored revision), and the
writer records one in the copy once it has landed. Listeners hear every change, in order.

The watch is nats-py's, without its iterator: an ordered push consumer of the bucket's stream
(last value per key first, then every change) whose messages are applied in the subscription's
callback, where the iterator would build an entry and pass it through a queue to another task.
Half the changes a busy matcher sees are the echoes of its own writes, dropped by revision here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE, KeyValue

logger = logging.getLogger(__name__)

# What nats-server 2.11+ writes in the place of a key it removed (its TTL markers), as an operation.
_MARKED = {"MaxAge": KV_PURGE, "Purge": KV_PURGE, "Remove": KV_DEL}
_UNKNOWN_MARKER = "marker"


@dataclass(frozen=True)
class Revision:
    value: bytes
    revision: int


# key, the new value (None: deleted)
Listener = Callable[[str, Revision | None], None]


class BucketMirror:
    def __init__(self, kv: KeyValue, bucket: str, js: JetStreamContext, *, retry_s: float = 1.0) -> None:
        self.kv = kv
        self.bucket = bucket
        self.js = js
        self.retry_s = retry_s
        self.entries: dict[str, Revision] = {}
        self.synced = asyncio.Event()
        self.listeners: list[Listener] = []
        self._prefix = f"$KV.{bucket}."

    async def run(self) -> None:
        """Follow the bucket forever (nats-py's ordered consumer starts itself again where it left
        off after a lost connection); subscribe again after a failure to."""
        while True:
            try:
                await self._follow()
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                logger.warning("kv watch interrupted", extra={"bucket": self.bucket, "error": repr(exc)})
                await asyncio.sleep(self.retry_s)

    async def _follow(self) -> None:
        subscription = await self.js.subscribe(
            f"{self._prefix}>", stream=f"KV_{self.bucket}", cb=self._on_message, ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT, inactive_threshold=300.0,
        )  # fmt: skip
        try:
            info = await subscription.consumer_info()
            if info.num_pending == 0 and subscription.delivered == 0:
                self.synced.set()  # an empty bucket (else its last message says so)
            await asyncio.Future()  # until cancelled
        finally:
            await subscription.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        metadata = msg.metadata
        headers = msg.headers or {}
        operation = headers.get(KV_OP)
        if operation is None and KV_MARKER_REASON in headers:
            operation = _MARKED.get(headers[KV_MARKER_REASON], _UNKNOWN_MARKER)
        if operation != _UNKNOWN_MARKER:  # one of a kind unknown here is skipped, as nats-py does
            self.apply(msg.subject[len(self._prefix) :], msg.data, metadata.sequence.stream, operation)
        if metadata.num_pending == 0:
            self.synced.set()

    def apply(self, key: str, value: bytes | None, revision: int, operation: str | None = None) -> None:
        """Record a change seen on the watch, or written by this process (newer revisions win; the
        watch's echo of a write recorded already changes nothing)."""
        known = self.entries.get(key)
        if known is not None and revision and revision <= known.revision:
            return
        if operation in (KV_DEL, KV_PURGE) or not value:
            self.entries.pop(key, None)
            new: Revision | None = None
        else:
            new = self.entries[key] = Revision(value, revision)
        for listener in self.listeners:
            listener(key, new)
