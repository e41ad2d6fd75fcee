"""Holds nobody will release: a host BUSY for a call that no longer has it.

A host's hold ends with a release: signaling's when the call ends or moves on from the host, the
matcher's for a shopper it never told. A few paths lose that release (a reply lost while the shard
changes matcher, a release that failed at every attempt, a call abandoned with its owner), and the
host would stay BUSY for good. So every `interval_s` the holds at least that old are looked up in
the calls bucket (signaling's `CallRecord`s, read only): a call that is gone, ended, or has another
host now no longer holds the host. A hold found so in two rounds in a row (its release had a whole
round to arrive) is released, as NOT_NEEDED: the host keeps its place among the longest idle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from tandem.common.bus import decode
from tandem.common.errors import MalformedMessageError
from tandem.v1 import calls_pb2, common_pb2, matchmaking_pb2

logger = logging.getLogger(__name__)


def abandoned(record: matchmaking_pb2.HostPresence, call: calls_pb2.CallRecord | None) -> bool:
    """Whether the call `record` is held for (None: its record is gone) no longer has the host."""
    return call is None or call.state == common_pb2.CALL_STATE_ENDED or call.host_id != record.host_id


@dataclass
class HoldAudit:
    interval_s: float
    # host id -> the call it was found held for by an abandoned call in the last round.
    _suspects: dict[str, str] = field(default_factory=dict)

    def due(self, records: Iterable[matchmaking_pb2.HostPresence], now_ns: int) -> list[matchmaking_pb2.HostPresence]:
        """The holds to look up: BUSY records unchanged for at least an interval."""
        cutoff = now_ns - int(self.interval_s * 1e9)
        return [
            r for r in records
            if r.status == matchmaking_pb2.HOST_STATUS_BUSY and r.call_id and r.updated_at.ToNanoseconds() <= cutoff
        ]  # fmt: skip

    def judge(
        self, looked_up: Iterable[tuple[matchmaking_pb2.HostPresence, calls_pb2.CallRecord | None]]
    ) -> list[matchmaking_pb2.HostRelease]:
        """This round's lookups (each hold with its call's record) -> the releases to send: the holds
        abandoned in this round and the one before, for the same call."""
        suspects: dict[str, str] = {}
        releases = []
        for record, call in looked_up:
            if not abandoned(record, call):
                continue
            if self._suspects.get(record.host_id) == record.call_id:
                releases.append(
                    matchmaking_pb2.HostRelease(
                        host_id=record.host_id, call_id=record.call_id, outcome=matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED
                    )
                )
            suspects[record.host_id] = record.call_id  # (a release that fails is sent again next round)
        self._suspects = suspects
        return releases


# A call record that could not be read or decoded: its hold is left alone this round.
UNREADABLE = calls_pb2.CallRecord()


async def call_record(calls: KeyValue, call_id: str) -> calls_pb2.CallRecord | None:
    """The call's record; None when it is gone; `UNREADABLE` when it cannot be told (then the hold
    is left alone)."""
    try:
        entry = await calls.get(call_id)
    except nats.js.errors.KeyNotFoundError:
        return None
    except (nats.errors.Error, TimeoutError) as exc:
        logger.warning("call record not read", extra={"call_id": call_id, "error": repr(exc)})
        return UNREADABLE
    try:
        return decode(calls_pb2.CallRecord, entry.value or b"")
    except MalformedMessageError as exc:
        logger.error("undecodable call record", extra={"call_id": call_id, "error": str(exc)})
        return UNREADABLE
