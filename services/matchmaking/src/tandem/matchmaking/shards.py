"""Shards and their leases: one active matcher per shard, fenced by a token.

A shard ("<region>.<language>") is matched by the instance holding its lease, a record in the
`tandem_matchmaking` KV bucket written with compare-and-set. A lease lapses `ttl` after its last
renewal; a lapsed lease goes to the live instance that rendezvous hashing prefers for the shard
(so shards spread over instances, and every instance agrees who takes which), with a token one
higher than before. Each reservation stamps the token on the host's record, and a reservation with
a lower token than the stamp is refused: a matcher that lost its lease cannot take a host its
successor has used. Pure functions; the KV loop is in `app`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tandem.common.errors import TandemError
from tandem.v1 import common_pb2, matchmaking_pb2

ShardLease = matchmaking_pb2.ShardLease
LEASES_BUCKET = "tandem_matchmaking"


def lease_key(shard: str) -> str:
    return f"lease.{shard}"


def member_key(instance: str) -> str:
    return f"member.{instance}"


class FencedOut(TandemError):
    """A reservation by a matcher whose lease token is older than one already used on the host."""

    code = common_pb2.ERROR_CODE_INVALID_STATE

    def __init__(self, shard: str, token: int, fence: int) -> None:
        super().__init__(f"lease token {token} of shard {shard} is older than {fence}")
        self.shard = shard
        self.token = token
        self.fence = fence


def check_fence(record: matchmaking_pb2.HostPresence, shard: str, token: int) -> None:
    fence = record.fences.get(shard, 0)
    if token < fence:
        raise FencedOut(shard, token, fence)


def lease_live(lease: ShardLease | None, now_ms: int) -> bool:
    return lease is not None and bool(lease.holder) and lease.expires_at_ms > now_ms


def preferred_holder(shard: str, members: Iterable[str]) -> str | None:
    """Rendezvous hashing: the member with the highest hash of (shard, member)."""

    def weight(member: str) -> bytes:
        return hashlib.blake2b(f"{shard}\0{member}".encode(), digest_size=8).digest()

    return max(members, key=weight, default=None)


def acquired(lease: ShardLease | None, me: str, now_ms: int, ttl_ms: int) -> ShardLease | None:
    """The lease `me` may write to take a shard whose lease is `lease`, or None when it is held."""
    if lease_live(lease, now_ms) and (lease is None or lease.holder != me):
        return None
    token = lease.token + 1 if lease is not None else 1
    return ShardLease(holder=me, token=token, expires_at_ms=now_ms + ttl_ms)


def renewed(lease: ShardLease | None, me: str, token: int, now_ms: int, ttl_ms: int) -> ShardLease | None:
    """The renewal of `me`'s lease, or None when `me` no longer holds it with `token`."""
    if lease is None or lease.holder != me or lease.token != token:
        return None
    return ShardLease(holder=me, token=token, expires_at_ms=now_ms + ttl_ms)
