"""Calls outside the process: each call's record in the `tandem_calls` KV bucket, written with
compare-and-set on its revision, and each signaling instance's lease in `tandem_signaling_leases`.

A call is run by its owner (`CallRecord.owner`). An owner that stops hands its calls over (owner
set to empty); one that dies stops renewing its lease; either way another instance adopts the
call by writing itself as owner at the revision it read, so two instances never both run a call.
"""

from __future__ import annotations

import contextlib
import logging

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from tandem.common.bus import decode
from tandem.signaling.callstate import Call
from tandem.signaling.errors import AlreadyInCallError, CallMovedError
from tandem.v1 import calls_pb2

logger = logging.getLogger(__name__)


class CallStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def create(self, call: Call) -> None:
        call.revision = await self.kv.create(call.call_id, call.to_record().SerializeToString())

    async def save(self, call: Call) -> None:
        """Write the call at the revision it was read at; `CallMovedError` when someone else wrote since."""
        try:
            call.revision = await self.kv.update(call.call_id, call.to_record().SerializeToString(), last=call.revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
            raise CallMovedError(call.call_id) from None

    async def load(self, call_id: str) -> Call | None:
        try:
            entry = await self.kv.get(call_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return Call.from_record(decode(calls_pb2.CallRecord, entry.value), entry.revision or 0)

    async def delete(self, call_id: str) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self.kv.delete(call_id)

    async def call_ids(self) -> list[str]:
        try:
            return list(await self.kv.keys())
        except nats.js.errors.NoKeysError:
            return []


CLAIM_ATTEMPTS = 3


class ShopperCalls:
    """The consultation each shopper is in (`tandem_shopper_calls`: shopper id -> call id), so a
    shopper has one at a time whichever instances their sockets are on."""

    def __init__(self, kv: KeyValue, calls: CallStore) -> None:
        self.kv = kv
        self.calls = calls

    async def claim(self, shopper_id: str, call_id: str) -> None:
        """Put the shopper in `call_id`; `AlreadyInCallError` while another of their calls runs."""
        for _ in range(CLAIM_ATTEMPTS):  # each lost race is to a release or a claim just made
            try:
                await self.kv.create(shopper_id, call_id.encode())
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            try:
                entry = await self.kv.get(shopper_id)
            except nats.js.errors.KeyNotFoundError:
                continue  # released meanwhile
            running = await self.calls.load((entry.value or b"").decode())
            if running is not None and not running.ended:
                raise AlreadyInCallError(shopper_id)
            try:  # a call that has ended, or whose owner died before it could let the shopper go
                await self.kv.update(shopper_id, call_id.encode(), last=entry.revision)
                return
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
                continue
        raise AlreadyInCallError(shopper_id)

    async def release(self, shopper_id: str, call_id: str) -> None:
        """The shopper's call `call_id` is over (a newer one of theirs is left alone)."""
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            entry = await self.kv.get(shopper_id)
            if entry.value == call_id.encode():
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyValueError):
                    await self.kv.delete(shopper_id, last=entry.revision)


class Leases:
    """This instance's lease, and who else is alive."""

    def __init__(self, kv: KeyValue, instance: str, ttl_s: float) -> None:
        self.kv = kv
        self.instance = instance
        self.ttl_s = ttl_s

    async def renew(self, now: float) -> None:
        lease = calls_pb2.SignalingLease(instance=self.instance)
        lease.expires_at.FromNanoseconds(round((now + self.ttl_s) * 1e9))
        await self.kv.put(self.instance, lease.SerializeToString())

    async def release(self) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError, nats.errors.Error):
            await self.kv.delete(self.instance)

    async def alive(self, now: float) -> set[str]:
        """Instances whose lease has not lapsed at `now`."""
        alive: set[str] = set()
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return alive
        for key in keys:
            try:
                entry = await self.kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                continue
            if entry.value:
                lease = decode(calls_pb2.SignalingLease, entry.value)
                if lease.expires_at.ToNanoseconds() / 1e9 > now:
                    alive.add(lease.instance)
        return alive
