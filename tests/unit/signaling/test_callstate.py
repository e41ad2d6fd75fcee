"""The call state machine with a fake clock: transitions, timeouts from stored times, the record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.signaling.callstate import TRANSITIONS, Call, InvalidTransitionError, Timeouts
from tandem.v1 import client_pb2, common_pb2

pytestmark = pytest.mark.unit

S = common_pb2
TIMEOUTS = Timeouts(queue_s=60, ring_s=20, connect_s=15)
T0 = 1_800_000_000.0  # a fake clock's epoch seconds
STATES = sorted(TRANSITIONS)


def new_call() -> Call:
    return Call(
        call_id="c1", shopper_id="s1", request=client_pb2.ConsultRequest(language="en", category="beauty"),
        requested_at=T0,
    )  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from(STATES), st.floats(min_value=0, max_value=100)), max_size=20))
def test_a_call_only_takes_transitions_that_exist_and_ended_is_final(moves: list[tuple[int, float]]) -> None:
    call, now = new_call(), T0
    for state, dt in moves:
        now += dt
        before = call.state
        if state in TRANSITIONS[before]:
            call.move(state, now)  # type: ignore[arg-type]
            assert (call.state, call.state_entered_at) == (state, now)
        else:
            with pytest.raises(InvalidTransitionError) as refused:
                call.move(state, now)  # type: ignore[arg-type]
            assert refused.value.code == S.ERROR_CODE_INVALID_STATE
            assert call.state == before
    if call.ended:
        assert call.deadline(TIMEOUTS) is None


def test_each_waiting_state_times_out_from_when_it_began_and_the_queue_from_the_request() -> None:
    call = new_call()
    call.move(S.CALL_STATE_QUEUED, T0 + 1)
    assert call.deadline(TIMEOUTS) == T0 + 60  # the queue counts from the request
    call.move(S.CALL_STATE_RINGING, T0 + 5)
    assert call.deadline(TIMEOUTS) == T0 + 5 + 20
    assert call.timeout_reason(max_hosts_tried=5) == S.END_REASON_RING_TIMEOUT
    call.move(S.CALL_STATE_QUEUED, T0 + 25, S.END_REASON_RING_TIMEOUT)
    assert call.deadline(TIMEOUTS) == T0 + 60  # back in the queue: still from the request
    call.move(S.CALL_STATE_RINGING, T0 + 30)
    call.move(S.CALL_STATE_CONNECTING, T0 + 31)
    assert call.deadline(TIMEOUTS) == T0 + 31 + 15
    assert call.timeout_reason(max_hosts_tried=5) == S.END_REASON_CONNECT_TIMEOUT
    call.move(S.CALL_STATE_CONNECTED, T0 + 32)
    assert call.deadline(TIMEOUTS) is None


def test_a_queue_times_out_as_no_host_unless_hosts_were_rung() -> None:
    call = new_call()
    call.move(S.CALL_STATE_QUEUED, T0)
    assert call.timeout_reason(max_hosts_tried=5) == S.END_REASON_NO_HOST
    call.hosts_tried = ["h1"]
    assert call.timeout_reason(max_hosts_tried=5) == S.END_REASON_QUEUE_TIMEOUT
    call.hosts_tried = ["h1", "h2"]
    assert call.timeout_reason(max_hosts_tried=2) == S.END_REASON_NO_HOST


def test_a_stored_call_comes_back_as_it_was_so_another_instance_can_go_on() -> None:
    call = new_call()
    call.move(S.CALL_STATE_QUEUED, T0 + 0.5)
    call.move(S.CALL_STATE_RINGING, T0 + 2.25)
    call.host_id, call.worker_id, call.hosts_tried = "h1", "w1", ["h0", "h1"]
    call.offered_legs, call.legs_connected = {1}, {1, 2}
    call.last_card = client_pb2.ProductCard(call_id="c1", card_id="k1")
    call.last_cart = client_pb2.CartUpdate(call_id="c1")
    call.resumed_at = {"s1": T0 + 3.5}
    call.owner, call.event_seq, call.traceparent = "signaling-a", 4, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    again = Call.from_record(call.to_record(), revision=7)
    # Times travel in nanoseconds: equal to well under a microsecond.
    for field in ("requested_at", "state_entered_at"):
        assert getattr(again, field) == pytest.approx(getattr(call, field), abs=1e-6)
        setattr(again, field, getattr(call, field))
    assert again.resumed_at == pytest.approx(call.resumed_at, abs=1e-6)
    again.resumed_at = call.resumed_at
    call.revision = 7
    assert again == call
