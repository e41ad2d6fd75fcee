"""The call state machine: which transitions exist, and what a call records as it moves.

requested → queued → ringing → connecting → connected → ended; ringing may fall back to queued
(declined, ring timeout); any state but ended may end. Every failed transition has a reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tandem.common.errors import TandemError
from tandem.v1 import client_pb2, common_pb2

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


class InvalidTransitionError(TandemError):
    code = common_pb2.ERROR_CODE_INVALID_STATE


@dataclass
class Call:
    call_id: str
    shopper_id: str
    request: client_pb2.ConsultRequest
    state: common_pb2.CallState.ValueType = S.CALL_STATE_REQUESTED
    reason: common_pb2.EndReason.ValueType = S.END_REASON_UNSPECIFIED
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
    # Monotonic seconds at which each state was entered (the last time, for queued).
    entered: dict[int, float] = field(default_factory=dict)
    event_seq: int = 0

    def __post_init__(self) -> None:
        self.entered[self.state] = time.monotonic()

    def move(
        self,
        state: common_pb2.CallState.ValueType,
        reason: common_pb2.EndReason.ValueType = S.END_REASON_UNSPECIFIED,
    ) -> None:
        """Transition, or raise `InvalidTransitionError` naming both states."""
        if state not in TRANSITIONS[self.state]:
            raise InvalidTransitionError(f"a call cannot go from {State.Name(self.state)} to {State.Name(state)}")
        self.state = state
        self.reason = reason
        self.entered[state] = time.monotonic()

    def expect(self, *states: common_pb2.CallState.ValueType) -> None:
        if self.state not in states:
            allowed = ", ".join(State.Name(s) for s in states)
            raise InvalidTransitionError(f"the call is {State.Name(self.state)}; this needs {allowed}")

    @property
    def ended(self) -> bool:
        return self.state == S.CALL_STATE_ENDED
