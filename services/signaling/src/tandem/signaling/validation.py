"""What a client may send: every field of every client payload checked at the edge, before it
reaches a subject, a key, a log line or another service. Values that have a canonical form
(language tags) come back normalised.

Each check raises `InvalidArgumentError` (or `InvalidIdentifierError`) naming the field and what
is wrong with it, without echoing the value.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import langcodes
import pycountry

from tandem.common.errors import InvalidArgumentError
from tandem.common.subjects import identifier
from tandem.v1 import client_pb2, common_pb2

S = common_pb2
Envelope = client_pb2.Envelope

# Reasons a client may give for hanging up; the others are the server's to decide.
CLIENT_END_REASONS = frozenset({S.END_REASON_UNSPECIFIED, S.END_REASON_HANGUP, S.END_REASON_MEDIA_FAILURE})
_PRINTABLE = re.compile(r"[ -~]*")  # printable ASCII
_LANGUAGE_TAG = re.compile(r"[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8})*")
_MARKET = re.compile(r"[A-Z]{2}")
_PRIMARY_LANGUAGE = re.compile(r"[a-z]{2,8}")
MAX_LANGUAGE_TAG_CHARS = 35
MAX_CATEGORY_CHARS = 64


@dataclass(frozen=True)
class ClientLimits:
    """The limits of client payloads (the signaling settings of the same names)."""

    max_sdp_bytes: int = 32 * 1024
    max_candidate_chars: int = 512
    max_availability_items: int = 32
    max_text_chars: int = 200


def _printable(field: str, value: str, max_chars: int) -> str:
    if len(value) > max_chars:
        raise InvalidArgumentError(field, f"has {len(value)} characters; the limit is {max_chars}")
    if _PRINTABLE.fullmatch(value) is None:
        raise InvalidArgumentError(field, "may hold printable ASCII characters only")
    return value


def language_tag(field: str, value: str) -> str:
    """A BCP 47 language tag in its standard form ("pt-br" -> "pt-BR")."""
    if not value:
        raise InvalidArgumentError(field, "is required")
    if len(value) > MAX_LANGUAGE_TAG_CHARS or _LANGUAGE_TAG.fullmatch(value) is None:
        raise InvalidArgumentError(field, "must be a BCP 47 language tag such as 'en' or 'pt-BR'")
    if not langcodes.tag_is_valid(value):
        raise InvalidArgumentError(field, "is not a registered BCP 47 language tag")
    # Matching is by language: a private-use ("x-…") or undetermined ("und") tag names none.
    primary = langcodes.Language.get(value).language
    if primary is None or _PRIMARY_LANGUAGE.fullmatch(primary) is None:
        raise InvalidArgumentError(field, "must name a language; private-use and undetermined tags name none")
    return str(langcodes.standardize_tag(value))


def market(field: str, value: str) -> str:
    """An ISO 3166-1 alpha-2 country code ("JP")."""
    if _MARKET.fullmatch(value) is None or pycountry.countries.get(alpha_2=value) is None:
        raise InvalidArgumentError(field, "must be an ISO 3166-1 alpha-2 country code such as 'US' or 'JP'")
    return value


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone(field: str, value: str) -> str:
    """An IANA time zone name ("Asia/Tokyo")."""
    if len(value) > 64 or value not in _time_zones():
        raise InvalidArgumentError(field, "must be an IANA time zone such as 'Asia/Tokyo'")
    return value


def _each(field: str, values: Sequence[str], check: Callable[[str, str], str], limit: int) -> list[str]:
    if len(values) > limit:
        raise InvalidArgumentError(field, f"has {len(values)} entries; the limit is {limit}")
    return list(dict.fromkeys(check(f"{field}[{i}]", value) for i, value in enumerate(values)))


def _category(field: str, value: str) -> str:
    return identifier(field, value, max_chars=MAX_CATEGORY_CHARS)


class ClientValidator:
    """Checks, and normalises in place, the payload of an envelope from a client."""

    def __init__(self, limits: ClientLimits) -> None:
        self.limits = limits
        self._checks: dict[str, Callable[[Envelope], None]] = {
            "hello": self._hello,
            "host_availability": self._host_availability,
            "consult_request": self._consult_request,
            "accept": self._call_id,
            "cancel": self._call_id,
            "decline": self._decline,
            "hangup": self._hangup,
            "sdp": self._sdp,
            "ice_candidate": self._ice_candidate,
            "push_product_card": self._push_product_card,
            "add_to_cart": self._add_to_cart,
            "checkout": self._checkout,
        }

    def check(self, envelope: Envelope) -> None:
        """Raise `InvalidArgumentError` for the first payload field that breaks a rule (the
        envelope's own `id` is checked first, by `check_id`, so errors can answer it)."""
        kind = envelope.WhichOneof("payload")
        check = self._checks.get(kind or "")
        if check is not None:
            check(envelope)

    @staticmethod
    def check_id(envelope: Envelope) -> str:
        """The envelope's id, echoed as the correlation id of its answers: empty or an identifier."""
        return identifier("id", envelope.id) if envelope.id else ""

    def _hello(self, envelope: Envelope) -> None:
        hello = envelope.hello
        _printable("hello.client", hello.client, 64)
        if hello.resume_call_id:
            identifier("hello.resumeCallId", hello.resume_call_id)

    def _host_availability(self, envelope: Envelope) -> None:
        availability = envelope.host_availability
        limit = self.limits.max_availability_items
        languages = _each("hostAvailability.languages", availability.languages, language_tag, limit)
        if availability.available and not languages:
            raise InvalidArgumentError("hostAvailability.languages", "needs at least one language to be available")
        categories = _each("hostAvailability.categories", availability.categories, _category, limit)
        markets = _each("hostAvailability.markets", availability.markets, market, limit)
        if availability.time_zone:
            time_zone("hostAvailability.timeZone", availability.time_zone)
        availability.languages[:] = languages
        availability.categories[:] = categories
        availability.markets[:] = markets

    def _consult_request(self, envelope: Envelope) -> None:
        request = envelope.consult_request
        request.language = language_tag("consultRequest.language", request.language)
        # Required: hosts are matched within the shopper's market, and prices follow it.
        market("consultRequest.market", request.market)
        if request.product_id:
            identifier("consultRequest.productId", request.product_id)
        if request.category:
            _category("consultRequest.category", request.category)
        if not (request.product_id or request.category):
            raise InvalidArgumentError("consultRequest", "needs a productId or a category")

    def _call_id(self, envelope: Envelope) -> None:
        kind = envelope.WhichOneof("payload")
        assert kind is not None
        identifier(f"{_camel(kind)}.callId", getattr(envelope, kind).call_id)

    def _decline(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        _printable("decline.reason", envelope.decline.reason, self.limits.max_text_chars)

    def _hangup(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        if envelope.hangup.reason not in CLIENT_END_REASONS:
            allowed = ", ".join(sorted(S.EndReason.Name(r) for r in CLIENT_END_REASONS))
            raise InvalidArgumentError("hangup.reason", f"must be one of {allowed}")

    def _sdp(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        sdp = envelope.sdp
        if sdp.type != client_pb2.SessionDescription.TYPE_OFFER:
            raise InvalidArgumentError("sdp.type", "must be TYPE_OFFER: clients offer, the media worker answers")
        if not sdp.sdp:
            raise InvalidArgumentError("sdp.sdp", "is required")
        size = len(sdp.sdp.encode())
        if size > self.limits.max_sdp_bytes:
            raise InvalidArgumentError("sdp.sdp", f"has {size} bytes; the limit is {self.limits.max_sdp_bytes}")

    def _ice_candidate(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        candidate = envelope.ice_candidate
        _printable("iceCandidate.candidate", candidate.candidate, self.limits.max_candidate_chars)
        _printable("iceCandidate.sdpMid", candidate.sdp_mid, 32)
        _printable("iceCandidate.usernameFragment", candidate.username_fragment, 256)
        if not candidate.candidate and not candidate.end_of_candidates:
            raise InvalidArgumentError("iceCandidate.candidate", "is required unless endOfCandidates is set")

    def _push_product_card(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        identifier("pushProductCard.productId", envelope.push_product_card.product_id)

    def _add_to_cart(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        identifier("addToCart.productId", envelope.add_to_cart.product_id)

    def _checkout(self, envelope: Envelope) -> None:
        self._call_id(envelope)
        identifier("checkout.idempotencyKey", envelope.checkout.idempotency_key)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
