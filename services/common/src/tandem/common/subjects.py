"""Every NATS subject, stream and bucket Tandem uses, named once. Versioned with `v1`.

Request/reply subjects are served by queue groups (one responder per request); streams hold
facts that must not be lost; KV buckets hold shared state. The README's subjects table mirrors this.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "v1"
PREFIX = f"tandem.{VERSION}"

# Request/reply, served by a queue group.
MATCH_REQUEST = f"{PREFIX}.match.request"
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
QUALITY_WINDOWS = f"{PREFIX}.quality.windows"  # + ".<call_id>": MediaQuality every few seconds
QUALITY_SUMMARIES = f"{PREFIX}.quality.summaries"  # + ".<call_id>": MediaQualitySummary at call end


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    # JetStream de-duplicates Nats-Msg-Id within this window; longer than any publisher's retries.
    duplicate_window_s: float = 600.0
    max_age_s: float = 30 * 24 * 3600.0


CALLS_STREAM = StreamSpec(name="TANDEM_CALLS", subjects=(f"{CALL_EVENTS}.>",))
ORDERS_STREAM = StreamSpec(name="TANDEM_ORDERS", subjects=(f"{ORDER_EVENTS}.>",))
# A week of windows is plenty for dashboards; the summaries are kept for good by their consumers.
QUALITY_STREAM = StreamSpec(
    name="TANDEM_QUALITY",
    subjects=(f"{QUALITY_WINDOWS}.>", f"{QUALITY_SUMMARIES}.>"),
    max_age_s=7 * 24 * 3600.0,
)
STREAMS = (CALLS_STREAM, ORDERS_STREAM, QUALITY_STREAM)

# KV buckets.
PRESENCE_BUCKET = "tandem_presence"  # host_id -> HostPresence
CALLS_BUCKET = "tandem_calls"  # call_id -> call state owned by signaling


def join(*parts: str) -> str:
    """Join subject tokens, refusing tokens that would change the subject's shape."""
    for part in parts[1:]:
        if not part or any(c in part for c in ". *>\t\r\n"):
            raise ValueError(f"invalid subject token {part!r}")
    return ".".join(parts)
