"""Every NATS subject, stream and bucket Tandem uses, named once. Versioned with `v1`.

Request/reply subjects are served by queue groups (one responder per request); streams hold
facts that must not be lost; KV buckets hold shared state. The README's subjects table mirrors this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tandem.common.errors import InvalidIdentifierError

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
CALLS_BUCKET = "tandem_calls"  # call_id -> CallRecord, written by the call's owner
SIGNALING_LEASES_BUCKET = "tandem_signaling_leases"  # instance -> SignalingLease
SHOPPER_CALLS_BUCKET = "tandem_shopper_calls"  # shopper id -> the call id of their consultation


# Identifiers that become subject tokens, KV keys or log fields: the characters NATS subjects and KV
# keys both accept, none with a meaning to either (no ".", "*", ">", "/", whitespace).
MAX_ID_CHARS = 128
ID_ALPHABET = "letters A-Z a-z, digits, '-', '_' or '='"
ID_CHARS = "A-Za-z0-9_=-"  # a regular-expression character class's body
_ID = re.compile(f"[{ID_CHARS}]+")


def identifier(field: str, value: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    """`value` if it is 1 to `max_chars` characters of `ID_ALPHABET`; otherwise raises
    `InvalidIdentifierError` (INVALID_ARGUMENT) naming the field and what is wrong, never echoing it."""
    if not value:
        raise InvalidIdentifierError(field, "is required")
    if len(value) > max_chars:
        raise InvalidIdentifierError(field, f"has {len(value)} characters; the limit is {max_chars}")
    if _ID.fullmatch(value) is None:
        position = next(i for i, c in enumerate(value) if _ID.fullmatch(c) is None)
        raise InvalidIdentifierError(
            field, f"has U+{ord(value[position]):04X} at position {position}; only {ID_ALPHABET} are allowed"
        )
    return value


def as_identifier(text: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    """`text` made into an identifier (for names the process derives itself, such as a host name)."""
    return re.sub(f"[^{ID_CHARS}]", "-", text)[:max_chars] or "-"


def match_shard(region: str, language: str) -> str:
    """The matchmaking shard of a shopper or host: "<region>.<primary language>" ("pt-BR" -> "pt").
    Raises ValueError for a tag that is not a BCP 47 primary language (2-8 letters)."""
    primary = language.split("-", 1)[0].lower()
    if not (2 <= len(primary) <= 8 and primary.isascii() and primary.isalpha()):
        raise ValueError(f"invalid language tag {language!r}")
    join(PREFIX, region, primary)  # refuses a region that is not one subject token
    return f"{region}.{primary}"


def join(*parts: str) -> str:
    """Join a subject prefix with identifier tokens, validating each (`identifier`)."""
    return ".".join((parts[0], *(identifier("subject token", part) for part in parts[1:])))
