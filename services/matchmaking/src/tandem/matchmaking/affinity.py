"""Returning-customer affinity: which hosts a shopper bought from, learned from `OrderPlaced` facts.

Kept in the `tandem_affinity` KV bucket so every replica, and the next process, knows it; read from
an in-memory mirror of the bucket, so a match request costs a dictionary look-up, not a round trip.
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from tandem.common.bus import decode
from tandem.matchmaking.mirror import BucketMirror
from tandem.v1 import matchmaking_pb2, orders_pb2

AFFINITY_BUCKET = "tandem_affinity"
# The most recent hosts remembered per shopper.
MAX_HOSTS = 10


class AffinityStore:
    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self.kv = kv
        self.mirror = BucketMirror(kv, AFFINITY_BUCKET, js)

    def previous_hosts(self, shopper_id: str) -> frozenset[str]:
        known = self.mirror.entries.get(shopper_id)
        if known is None:
            return frozenset()
        return frozenset(decode(matchmaking_pb2.ShopperAffinity, known.value).host_ids)

    async def record_order(self, order: orders_pb2.OrderPlaced) -> None:
        if not order.shopper_id or not order.host_id:
            return
        try:
            entry = await self.kv.get(order.shopper_id)
            affinity = decode(matchmaking_pb2.ShopperAffinity, entry.value or b"")
            revision = entry.revision
        except nats.js.errors.KeyNotFoundError:
            affinity, revision = matchmaking_pb2.ShopperAffinity(), None
        hosts = [h for h in affinity.host_ids if h != order.host_id] + [order.host_id]
        value = matchmaking_pb2.ShopperAffinity(host_ids=hosts[-MAX_HOSTS:]).SerializeToString()
        if revision is None:
            await self.kv.create(order.shopper_id, value)
        else:
            await self.kv.update(order.shopper_id, value, last=revision)
