"""The call state machine: which transitions exist, what a call records as it moves, and when its
next timeout falls. Pure: time is passed in (epoch seconds), so it is tested with a fake clock.

requested → queued → ringing → connecting → connected → ended; ringing may fall back to queued
(declined, ring timeout); any state but ended may end. Every failed transition has a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tandem.common.errors import TandemError
from tandem.v1 import calls_pb2, client_pb2, common_pb2

State = common_pb2.CallState
S = common_pb2

TRANSITIONS: dict[int, frozenset[int]] = {
    S.CALL_STATE_REQUESTED: frozenset({S.CALL_STATE_QUEUED, S.CALL_STATE_ENDED}),
    S.CALL_STATE_QUEUED: frozenset({S.CALL_STATE_RINGING, S.CALL_STATE_ENDED}),
    S.CALL_STATE_RINGING: frozenset({S.CALL_STATE_QUEUED, S.CALL_STATE_CONNECTING, S.CALL_STATE_ENDED}),
    S.CALL_STATE_CONNECTING: frozenset({S.CALL_STATE_CONNECTED, S.CALL_STATE_ENDED}),
    S.CALL_STATE_CONNECTED: frozenset({S.CALL_STATE_ENDED}),
    S.CALL_STATE_ENDED: frozenset(),
}


MEDIA_STATES = (S.CALL_STATE_RINGING, S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED)
"""The states in which a call's media worker holds its legs (ringing: pre-connected, held)."""


class InvalidTransitionError(TandemError):
    code = common_pb2.ERROR_CODE_INVALID_STATE

    def __init__(self, state: common_pb2.CallState.ValueType, wanted: tuple[common_pb2.CallState.ValueType, ...]):
        names = ", ".join(State.Name(s) for s in wanted)
        super().__init__(f"the call is {State.Name(state)}; this needs {names}")
        self.state = state
        self.wanted = wanted


@dataclass(frozen=True)
class Timeouts:
    """How long a call may stay queued (from the request), ringing and connecting (seconds)."""

    queue_s: float
    ring_s: float
    connect_s: float


@dataclass
class Call:
    call_id: str
    shopper_id: str
    request: client_pb2.ConsultRequest
    requested_at: float  # epoch seconds
    state: common_pb2.CallState.ValueType = S.CALL_STATE_REQUESTED
    reason: common_pb2.EndReason.ValueType = S.END_REASON_UNSPECIFIED
    state_entered_at: float = 0.0  # epoch seconds
    host_id: str = ""
    worker_id: str = ""
    returning_customer: bool = False
    hosts_tried: list[str] = field(default_factory=list)
    legs_connected: set[int] = field(default_factory=set)
    # Legs whose offer the worker has answered, and candidates that came before their leg's offer.
    offered_legs: set[int] = field(default_factory=set)
    early_candidates: dict[int, list[client_pb2.IceCandidate]] = field(default_factory=dict)
    # What a party that reconnects is shown again.
    last_card: client_pb2.ProductCard | None = None
    last_cart: client_pb2.CartUpdate | None = None
    event_seq: int = 0
    traceparent: str = ""
    tracestate: str = ""
    owner: str = ""
    resumed_at: dict[str, float] = field(default_factory=dict)
    accepted_at: float = 0.0  # epoch seconds; what the first frames' stage timings count from
    # The KV revision this copy was read or written at (compare-and-set); 0 before it is stored.
    revision: int = 0

    def __post_init__(self) -> None:
        if not self.state_entered_at:
            self.state_entered_at = self.requested_at

    def move(
        self,
        state: common_pb2.CallState.ValueType,
        now: float,
        reason: common_pb2.EndReason.ValueType = S.END_REASON_UNSPECIFIED,
    ) -> None:
        """Transition at `now`, or raise `InvalidTransitionError` naming both states."""
        if state not in TRANSITIONS[self.state]:
            raise InvalidTransitionError(self.state, (state,))
        self.state = state
        self.reason = reason
        self.state_entered_at = now

    def expect(self, *states: common_pb2.CallState.ValueType) -> None:
        if self.state not in states:
            raise InvalidTransitionError(self.state, states)

    def forget_legs(self, *legs: int) -> None:
        """Drop what the call knew of these legs' negotiation: their worker released them or is gone."""
        for leg in legs:
            self.offered_legs.discard(leg)
            self.legs_connected.discard(leg)
            self.early_candidates.pop(leg, None)

    @property
    def ended(self) -> bool:
        return self.state == S.CALL_STATE_ENDED

    def deadline(self, timeouts: Timeouts) -> float | None:
        """When the current state times out (epoch seconds), or None when it does not."""
        if self.state == S.CALL_STATE_QUEUED:
            return self.requested_at + timeouts.queue_s
        if self.state == S.CALL_STATE_RINGING:
            return self.state_entered_at + timeouts.ring_s
        if self.state == S.CALL_STATE_CONNECTING:
            return self.state_entered_at + timeouts.connect_s
        return None

    def timeout_reason(self, max_hosts_tried: int) -> common_pb2.EndReason.ValueType:
        """Why the current state timed out: RING_TIMEOUT, CONNECT_TIMEOUT, or for the queue NO_HOST
        (nobody could take the call) or QUEUE_TIMEOUT (hosts were rung, none in time)."""
        if self.state == S.CALL_STATE_RINGING:
            return S.END_REASON_RING_TIMEOUT
        if self.state == S.CALL_STATE_CONNECTING:
            return S.END_REASON_CONNECT_TIMEOUT
        hosts_left = 0 < len(self.hosts_tried) < max_hosts_tried
        return S.END_REASON_QUEUE_TIMEOUT if hosts_left else S.END_REASON_NO_HOST

    # --- the stored form ----------------------------------------------------------------------

    def to_record(self) -> calls_pb2.CallRecord:
        record = calls_pb2.CallRecord(
            call_id=self.call_id, shopper_id=self.shopper_id, request=self.request, state=self.state,
            reason=self.reason, host_id=self.host_id, worker_id=self.worker_id,
            returning_customer=self.returning_customer, hosts_tried=self.hosts_tried,
            legs_connected=sorted(self.legs_connected), offered_legs=sorted(self.offered_legs),
            event_seq=self.event_seq, traceparent=self.traceparent, tracestate=self.tracestate, owner=self.owner,
        )  # fmt: skip
        record.requested_at.FromNanoseconds(round(self.requested_at * 1e9))
        record.state_entered_at.FromNanoseconds(round(self.state_entered_at * 1e9))
        if self.last_card is not None:
            record.last_card.CopyFrom(self.last_card)
        if self.last_cart is not None:
            record.last_cart.CopyFrom(self.last_cart)
        for user_id, at in self.resumed_at.items():
            record.resumed_at[user_id].FromNanoseconds(round(at * 1e9))
        return record

    @classmethod
    def from_record(cls, record: calls_pb2.CallRecord, revision: int) -> Call:
        return cls(
            call_id=record.call_id, shopper_id=record.shopper_id, request=record.request,
            requested_at=record.requested_at.ToNanoseconds() / 1e9, state=record.state, reason=record.reason,
            state_entered_at=record.state_entered_at.ToNanoseconds() / 1e9, host_id=record.host_id,
            worker_id=record.worker_id, returning_customer=record.returning_customer,
            hosts_tried=list(record.hosts_tried), legs_connected=set(record.legs_connected),
            offered_legs=set(record.offered_legs),
            last_card=record.last_card if record.HasField("last_card") else None,
            last_cart=record.last_cart if record.HasField("last_cart") else None,
            event_seq=record.event_seq, traceparent=record.traceparent, tracestate=record.tracestate,
            owner=record.owner,
            resumed_at={user: at.ToNanoseconds() / 1e9 for user, at in record.resumed_at.items()},
            revision=revision,
        )  # fmt: skip
