"""Every NATS subject, stream and bucket Tandem uses, named once. Versioned with `v1`.

Request/reply subjects are served by queue groups (one responder per request); streams hold
facts that must not be lost; KV buckets hold shared state. The README's subjects table mirrors this.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "v1"
PREFIX = f"tandem.{VERSION}"

# Request/reply, served by a queue group.
MATCH_REQUEST = f"{PREFIX}.match.request"  # + ".<region>.<language>": the shard's active matcher
MATCH_RELEASE = f"{PREFIX}.match.release"
PRESENCE_UPDATE = f"{PREFIX}.presence.update"
PRESENCE_GONE = f"{PREFIX}.presence.gone"
MEDIA_ALLOCATE = f"{PREFIX}.media.allocate"  # + ".<region>"
ORDERS_PRODUCT_CARD = f"{PREFIX}.orders.product_card"
ORDERS_CART = f"{PREFIX}.orders.cart"
ORDERS_CHECKOUT = f"{PREFIX}.orders.checkout"

# Addressed to one process.
MEDIA_WORKER = f"{PREFIX}.media.worker"  # + ".<worker_id>.<verb>" (offer, release, drain)
SIGNALING_DELIVER = f"{PREFIX}.signaling.deliver"  # + ".<user_id>": a frame for that user's socket
SIGNALING_CALL = f"{PREFIX}.signaling.call"  # + ".<call_id>": a client's message for the call's owner

# Broadcast facts (core NATS, lossy by design: the next report supersedes).
MEDIA_LOAD = f"{PREFIX}.media.load"  # + ".<region>.<worker_id>"
MEDIA_EVENTS = f"{PREFIX}.media.events"  # + ".<call_id>"
PRESENCE_CHANGED = f"{PREFIX}.presence.changed"  # + ".<host_id>"
CAPACITY = f"{PREFIX}.capacity"  # + ".<region>": free media capacity and spillover demand

# JetStream subjects (facts that must not be lost).
CALL_EVENTS = f"{PREFIX}.calls.events"  # + ".<call_id>"
ORDER_EVENTS = f"{PREFIX}.orders.events"  # + ".<order_id>"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    # JetStream de-duplicates Nats-Msg-Id within this window; longer than any publisher's retries.
    duplicate_window_s: float = 600.0
    max_age_s: float = 30 * 24 * 3600.0


CALLS_STREAM = StreamSpec(name="TANDEM_CALLS", subjects=(f"{CALL_EVENTS}.>",))
ORDERS_STREAM = StreamSpec(name="TANDEM_ORDERS", subjects=(f"{ORDER_EVENTS}.>",))
STREAMS = (CALLS_STREAM, ORDERS_STREAM)

# KV buckets.
PRESENCE_BUCKET = "tandem_presence"  # host_id -> HostPresence
CALLS_BUCKET = "tandem_calls"  # call_id -> call state owned by signaling


def match_shard(region: str, language: str) -> str:
    """The matchmaking shard of a shopper or host: "<region>.<primary language>" ("pt-BR" -> "pt").
    Raises ValueError for a tag that is not a BCP 47 primary language (2-8 letters)."""
    primary = language.split("-", 1)[0].lower()
    if not (2 <= len(primary) <= 8 and primary.isascii() and primary.isalpha()):
        raise ValueError(f"invalid language tag {language!r}")
    join(PREFIX, region, primary)  # refuses a region that is not one subject token
    return f"{region}.{primary}"


def join(*parts: str) -> str:
    """Join subject tokens, refusing tokens that would change the subject's shape."""
    for part in parts[1:]:
        if not part or any(c in part for c in ". *>\t\r\n"):
            raise ValueError(f"invalid subject token {part!r}")
    return ".".join(parts)
