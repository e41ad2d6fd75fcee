"""A KV bucket mirrored in memory by a watch: the latest value and revision of every key.

Eventually consistent; writes go to the bucket (compare-and-set on the mirrored revision), and the
writer records one in the copy once it has landed. Listeners hear every change, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.js.kv import KeyValue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revision:
    value: bytes
    revision: int


# key, the new value (None: deleted)
Listener = Callable[[str, Revision | None], None]


class BucketMirror:
    def __init__(self, kv: KeyValue, bucket: str, *, retry_s: float = 1.0) -> None:
        self.kv = kv
        self.bucket = bucket
        self.retry_s = retry_s
        self.entries: dict[str, Revision] = {}
        self.synced = asyncio.Event()
        self.listeners: list[Listener] = []

    async def run(self) -> None:
        """Follow the bucket forever, re-watching after an interruption."""
        while True:
            try:
                watcher = await self.kv.watchall()
                try:
                    async for entry in watcher:
                        if entry is None:
                            self.synced.set()
                        else:
                            self.apply(entry.key, entry.value, entry.revision or 0, entry.operation)
                finally:
                    await watcher.stop()  # type: ignore[no-untyped-call]
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                logger.warning("kv watch interrupted", extra={"bucket": self.bucket, "error": repr(exc)})
                await asyncio.sleep(self.retry_s)

    def apply(self, key: str, value: bytes | None, revision: int, operation: str | None = None) -> None:
        """Record a change seen on the watch, or written by this process (newer revisions win; the
        watch's echo of a write recorded already changes nothing)."""
        known = self.entries.get(key)
        if known is not None and revision and revision <= known.revision:
            return
        if operation in ("DEL", "PURGE") or not value:
            self.entries.pop(key, None)
            new: Revision | None = None
        else:
            new = self.entries[key] = Revision(value, revision)
        for listener in self.listeners:
            listener(key, new)
