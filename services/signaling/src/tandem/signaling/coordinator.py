"""The owner of calls: the signaling instance that took the shopper's request runs the call's
state machine, talks to matchmaking, media and orders, and tells both parties what happens.

Clients' messages about a call reach its owner on `tandem.v1.signaling.call.<call_id>` from
whichever instance holds their socket; frames for a user go out on
`tandem.v1.signaling.deliver.<user_id>` to whichever instance holds theirs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.subscription import Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from tandem.common import subjects
from tandem.common.aio import TaskSet, cancel_and_wait
from tandem.common.bus import Bus
from tandem.common.envelope import new_envelope
from tandem.common.errors import BusTimeoutError, NoRespondersError, TandemError
from tandem.signaling.auth import Identity
from tandem.signaling.callstate import Call
from tandem.signaling.settings import Settings
from tandem.v1 import calls_pb2, client_pb2, common_pb2, matchmaking_pb2, media_pb2, orders_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("tandem.signaling")

S = common_pb2
CALLS_ENDED = Counter("tandem_signaling_calls_ended_total", "Calls ended, by reason", ["reason"])
STAGE_SECONDS = Histogram(
    "tandem_signaling_stage_seconds",
    "Time spent between call stages",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)

Handler = Callable[[Call, Identity, client_pb2.Envelope], Awaitable[None]]
# How a ringing host's leaving counts against the host (a ringing host that hangs up declined).
_MISSED = {
    S.END_REASON_DECLINED: matchmaking_pb2.HOST_OUTCOME_DECLINED,
    S.END_REASON_HANGUP: matchmaking_pb2.HOST_OUTCOME_DECLINED,
    S.END_REASON_RING_TIMEOUT: matchmaking_pb2.HOST_OUTCOME_RING_TIMEOUT,
}
# Attempts to tell matchmaking a host is free (backing off 0.2 s, 0.4 s, ... up to 5 s).
RELEASE_ATTEMPTS = 8


def _denied(message: str) -> TandemError:
    return TandemError(message, code=S.ERROR_CODE_PERMISSION_DENIED)


class CallCoordinator:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.calls: dict[str, Call] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._subs: dict[str, list[Subscription]] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        # Each call's trace: everything done for the call, whoever asked, is one trace.
        self._traces: dict[str, otel_context.Context] = {}
        self._tasks = TaskSet("coordinator")
        self._handlers: dict[str, Handler] = {kind: getattr(self, f"_{kind}") for kind in self.CALL_PAYLOADS}

    # Envelope payloads about an existing call; each is handled by the method `_<payload>`.
    CALL_PAYLOADS = frozenset(
        {"accept", "decline", "cancel", "hangup", "sdp", "ice_candidate", "push_product_card", "add_to_cart",
         "checkout"}
    )  # fmt: skip

    # --- delivery ------------------------------------------------------------------------------

    async def deliver(self, user_id: str, envelope: client_pb2.Envelope) -> None:
        await self.bus.publish(subjects.join(subjects.SIGNALING_DELIVER, user_id), envelope)

    async def _update(self, call: Call, *, to_host: bool = True) -> None:
        """Tell both parties the call's state."""
        update = client_pb2.CallUpdate(call_id=call.call_id, state=call.state, reason=call.reason)
        update.at.FromDatetime(datetime.now(UTC))
        await self.deliver(call.shopper_id, new_envelope(call_update=update))
        if to_host and call.host_id:
            host_update = client_pb2.CallUpdate()
            host_update.CopyFrom(update)
            host_update.peer_id = call.shopper_id
            await self.deliver(call.host_id, new_envelope(call_update=host_update))

    async def _emit(self, call: Call) -> None:
        """Publish the call's new state as a fact (JetStream, de-duplicated by call and sequence)."""
        call.event_seq += 1
        request = call.request
        event = calls_pb2.CallEvent(
            event_id=f"{call.call_id}:{call.event_seq}", call_id=call.call_id, state=call.state,
            reason=call.reason,
            shopper_id=call.shopper_id, host_id=call.host_id,
            product_id=request.product_id, category=request.category, language=request.language,
            market=request.market, worker_id=call.worker_id,
        )  # fmt: skip
        event.at.FromDatetime(datetime.now(UTC))
        try:
            await self.bus.publish_fact(subjects.join(subjects.CALL_EVENTS, call.call_id), event, msg_id=event.event_id)
        except TandemError as exc:
            logger.error("call event not published", extra={"call_id": call.call_id, "error": str(exc)})

    # --- entry points --------------------------------------------------------------------------

    async def consult(self, shopper: Identity, envelope: client_pb2.Envelope) -> None:
        request = envelope.consult_request
        if shopper.is_host:
            raise _denied("only shoppers request consultations")
        if not request.language or not (request.product_id or request.category):
            raise TandemError(
                "a consult request needs a language and a product or category",
                code=S.ERROR_CODE_INVALID_ARGUMENT,
            )
        if any(c.shopper_id == shopper.user_id and not c.ended for c in self.calls.values()):
            raise TandemError("you are already in a consultation", code=S.ERROR_CODE_INVALID_STATE)
        call = Call(call_id=str(uuid.uuid4()), shopper_id=shopper.user_id, request=request)
        self.calls[call.call_id] = call
        self._traces[call.call_id] = otel_context.get_current()
        self._locks[call.call_id] = asyncio.Lock()
        self._subs[call.call_id] = [
            await self.bus.serve(
                subjects.join(subjects.SIGNALING_CALL, call.call_id), calls_pb2.CallCommand, self.handle,
                queue="owner",
            ),
            await self.bus.subscribe(
                subjects.join(subjects.MEDIA_EVENTS, call.call_id), media_pb2.MediaEvent, self._on_media_event
            ),
        ]  # fmt: skip
        await self._emit(call)
        async with self._locks[call.call_id]:
            await self._enqueue(call, S.END_REASON_UNSPECIFIED, correlation_id=envelope.id)

    async def handle(self, command: calls_pb2.CallCommand) -> empty_pb2.Empty:
        """A client's message about a call this instance owns (local or from another instance)."""
        envelope = command.envelope
        kind = envelope.WhichOneof("payload")
        if kind not in self.CALL_PAYLOADS:
            raise TandemError(f"{kind} is not a call message", code=S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE)
        call_id = getattr(envelope, kind).call_id
        call = self.calls.get(call_id)
        if call is None:
            raise TandemError(f"no call {call_id}", code=S.ERROR_CODE_NOT_FOUND)
        identity = Identity(command.user_id, command.role)
        if identity.user_id not in (call.shopper_id, call.host_id) or (
            identity.is_host and identity.user_id != call.host_id
        ):
            raise _denied("you are not a party to this call")
        sender = trace.get_current_span().get_span_context()
        with tracer.start_as_current_span(
            f"call {kind}", context=self._traces[call_id], links=[trace.Link(sender)] if sender.is_valid else []
        ):
            async with self._locks[call_id]:
                if call.ended:
                    raise TandemError("the call has ended", code=S.ERROR_CODE_INVALID_STATE)
                await self._handlers[kind](call, identity, envelope)
        return empty_pb2.Empty()

    # --- queue and match -----------------------------------------------------------------------

    async def _enqueue(self, call: Call, reason: common_pb2.EndReason.ValueType, correlation_id: str = "") -> None:
        call.move(S.CALL_STATE_QUEUED, reason)
        # Position 0: the matcher has not placed the shopper yet; its figures follow.
        await self.deliver(
            call.shopper_id,
            new_envelope(correlation_id, queue_update=client_pb2.QueueUpdate(call_id=call.call_id, position=0)),
        )
        await self._update(call, to_host=False)
        # Not a cancellable timer: a match in flight may have reserved a host, which must be freed.
        self._tasks.spawn(self._find_host(call), name=f"match-{call.call_id}")

    def _set_timer(self, call: Call, work: Awaitable[None]) -> None:
        """The call's one pending timed activity (matching, ringing, connecting) replaces the last."""
        previous = self._timers.pop(call.call_id, None)
        if previous is not None and previous is not asyncio.current_task():
            previous.cancel()

        async def run() -> None:
            await work

        self._timers[call.call_id] = self._tasks.spawn(run(), name=f"timer-{call.call_id}")

    async def _find_host(self, call: Call) -> None:
        """Ask the shard's matcher for a host until one is matched, the call leaves the queue or the
        queue timeout passes. Each request waits up to `match_retry_s` for its answer: a host, or the
        shopper's position and estimated wait, passed on as a queueUpdate when they change. A
        request nobody answers (a matcher taking over the shard) is repeated after a quarter of it."""
        deadline = call.entered[S.CALL_STATE_REQUESTED] + self.settings.queue_timeout_s
        try:
            shard = subjects.match_shard(self.settings.region, call.request.language)
        except ValueError:
            async with self._locks[call.call_id]:
                if call.state == S.CALL_STATE_QUEUED:
                    await self._end(call, S.END_REASON_NO_HOST)
            return
        requested_at = Timestamp()
        requested_at.FromNanoseconds(
            time.time_ns() - int((time.monotonic() - call.entered[S.CALL_STATE_REQUESTED]) * 1e9)
        )
        told: tuple[int, int] | None = None
        while time.monotonic() < deadline and len(call.hosts_tried) < self.settings.max_hosts_tried:
            if call.state != S.CALL_STATE_QUEUED:
                return
            wait_s = max(0.05, min(self.settings.match_retry_s, deadline - time.monotonic()))
            request = matchmaking_pb2.MatchRequest(
                call_id=call.call_id, shopper_id=call.shopper_id, product_id=call.request.product_id,
                category=call.request.category, language=call.request.language, market=call.request.market,
                excluded_host_ids=call.hosts_tried, requested_at=requested_at, wait_ms=int(wait_s * 1000),
            )  # fmt: skip
            try:
                result = await self.bus.request(
                    f"{subjects.MATCH_REQUEST}.{shard}", request, matchmaking_pb2.MatchResult, timeout_s=wait_s
                )
            except BusTimeoutError:
                continue
            except TandemError as exc:
                if not isinstance(exc, NoRespondersError):
                    logger.warning("match attempt failed", extra={"call_id": call.call_id, "error": str(exc)})
                await asyncio.sleep(min(wait_s / 4, max(0.0, deadline - time.monotonic())))
                continue
            if result.HasField("queued"):
                standing = (result.queued.position, result.queued.estimated_wait_s)
                if standing != told and call.state == S.CALL_STATE_QUEUED:
                    told = standing
                    update = client_pb2.QueueUpdate(
                        call_id=call.call_id, position=standing[0], estimated_wait_s=standing[1]
                    )
                    await self.deliver(call.shopper_id, new_envelope(queue_update=update))
                continue
            async with self._locks[call.call_id]:
                if call.state != S.CALL_STATE_QUEUED:  # cancelled meanwhile: free the reserved host
                    self._release_host(call.call_id, result.host.host_id, matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED)
                    return
                await self._ring(call, result.host)
            return
        async with self._locks[call.call_id]:
            if call.state == S.CALL_STATE_QUEUED:
                await self._end(call, S.END_REASON_NO_HOST)

    def _release_host(self, call_id: str, host_id: str, outcome: matchmaking_pb2.HostOutcome.ValueType) -> None:
        """Tell matchmaking the call no longer holds the host, retrying until it has heard."""

        async def release() -> None:
            message = matchmaking_pb2.HostRelease(host_id=host_id, call_id=call_id, outcome=outcome)
            for attempt in range(RELEASE_ATTEMPTS):
                try:
                    await self.bus.request(subjects.MATCH_RELEASE, message, matchmaking_pb2.HostPresence)
                    return
                except TandemError as exc:
                    logger.warning("host release failed", extra={"call_id": call_id, "error": str(exc)})
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
            logger.error("host not released", extra={"call_id": call_id, "host_id": host_id})

        self._tasks.spawn(release(), name=f"release-{call_id}")

    async def _ring(self, call: Call, host: matchmaking_pb2.MatchedHost) -> None:
        call.host_id = host.host_id
        call.returning_customer = host.returning_customer
        call.hosts_tried.append(host.host_id)
        call.move(S.CALL_STATE_RINGING)
        STAGE_SECONDS.labels("tap_to_ringing").observe(time.monotonic() - call.entered[S.CALL_STATE_REQUESTED])
        request = call.request
        invite = client_pb2.Invite(
            call_id=call.call_id, product_id=request.product_id, category=request.category,
            language=request.language, market=request.market, returning_customer=host.returning_customer,
            ring_timeout_s=int(self.settings.ring_timeout_s),
        )  # fmt: skip
        await self.deliver(call.host_id, new_envelope(invite=invite))
        await self._update(call, to_host=False)
        await self._emit(call)
        self._set_timer(call, self._ring_timeout(call))

    async def _ring_timeout(self, call: Call) -> None:
        await asyncio.sleep(self.settings.ring_timeout_s)
        async with self._locks[call.call_id]:
            if call.state == S.CALL_STATE_RINGING:
                await self._requeue(call, S.END_REASON_RING_TIMEOUT)

    async def _requeue(self, call: Call, reason: common_pb2.EndReason.ValueType) -> None:
        """The ringing host did not take the call: tell them, free them, and try the next host."""
        host_id = call.host_id
        ended = client_pb2.CallUpdate(call_id=call.call_id, state=S.CALL_STATE_ENDED, reason=reason)
        await self.deliver(host_id, new_envelope(call_update=ended))
        call.host_id = ""
        await self._enqueue(call, reason)
        await self._emit(call)
        self._release_host(call.call_id, host_id, _MISSED.get(reason, matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED))

    # --- host answers --------------------------------------------------------------------------

    async def _accept(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != call.host_id:
            raise _denied("only the invited host may accept")
        call.expect(S.CALL_STATE_RINGING)
        call.move(S.CALL_STATE_CONNECTING)
        try:
            allocated = await self._allocate_media(call)
        except TandemError as exc:
            logger.error("media allocation failed", extra={"call_id": call.call_id, "error": str(exc)})
            await self._end(call, S.END_REASON_MEDIA_FAILURE)
            return
        call.worker_id = allocated.worker.worker_id
        await self._update(call)
        await self._emit(call)
        self._set_timer(call, self._connect_timeout(call))

    async def _allocate_media(self, call: Call) -> media_pb2.MediaAllocated:
        subject = subjects.join(subjects.MEDIA_ALLOCATE, self.settings.region)
        last: TandemError | None = None
        for _ in range(self.settings.media_allocate_attempts):
            try:
                return await self.bus.request(
                    subject, media_pb2.MediaAllocate(call_id=call.call_id, region=self.settings.region),
                    media_pb2.MediaAllocated,
                )  # fmt: skip
            except TandemError as exc:
                last = exc
        assert last is not None
        raise last

    async def _connect_timeout(self, call: Call) -> None:
        await asyncio.sleep(self.settings.connect_timeout_s)
        async with self._locks[call.call_id]:
            if call.state == S.CALL_STATE_CONNECTING:
                await self._end(call, S.END_REASON_CONNECT_TIMEOUT)

    async def _decline(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != call.host_id:
            raise _denied("only the invited host may decline")
        call.expect(S.CALL_STATE_RINGING)
        await self._requeue(call, S.END_REASON_DECLINED)

    async def _cancel(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != call.shopper_id:
            raise _denied("only the shopper may cancel")
        call.expect(S.CALL_STATE_QUEUED, S.CALL_STATE_RINGING, S.CALL_STATE_CONNECTING)
        await self._end(call, S.END_REASON_CANCELLED)

    async def _hangup(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        reason = envelope.hangup.reason or S.END_REASON_HANGUP
        if call.state == S.CALL_STATE_RINGING and who.user_id == call.host_id:
            await self._requeue(call, reason)  # a ringing host that leaves has declined
        else:
            await self._end(call, reason)

    # --- media ---------------------------------------------------------------------------------

    def _leg(self, call: Call, who: Identity) -> media_pb2.Leg.ValueType:
        return media_pb2.LEG_HOST if who.user_id == call.host_id else media_pb2.LEG_SHOPPER

    async def _sdp(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        sdp = envelope.sdp
        if sdp.type != client_pb2.SessionDescription.TYPE_OFFER:
            raise TandemError("clients send offers; the media worker answers", code=S.ERROR_CODE_INVALID_ARGUMENT)
        call.expect(S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED)
        offer = media_pb2.MediaOffer(call_id=call.call_id, leg=self._leg(call, who), sdp=sdp.sdp)
        answer = await self.bus.request(
            subjects.join(subjects.MEDIA_WORKER, call.worker_id, "offer"), offer, media_pb2.MediaAnswer,
            timeout_s=max(self.settings.request_timeout_s, 5.0),
        )  # fmt: skip
        reply = client_pb2.SessionDescription(
            call_id=call.call_id, type=client_pb2.SessionDescription.TYPE_ANSWER, sdp=answer.sdp
        )
        await self.deliver(who.user_id, new_envelope(envelope.id, sdp=reply))

    async def _ice_candidate(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        call.expect(S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED)
        await self.bus.request(
            subjects.join(subjects.MEDIA_WORKER, call.worker_id, "candidate"),
            media_pb2.MediaCandidate(call_id=call.call_id, leg=self._leg(call, who), candidate=envelope.ice_candidate),
            empty_pb2.Empty,
        )

    async def _on_media_event(self, event: media_pb2.MediaEvent, _: str) -> None:
        call = self.calls.get(event.call_id)
        if call is None:
            return
        async with self._locks[call.call_id]:
            if call.state != S.CALL_STATE_CONNECTING:
                if event.kind == media_pb2.MediaEvent.KIND_LEG_FAILED and call.state == S.CALL_STATE_CONNECTED:
                    await self._end(call, S.END_REASON_MEDIA_FAILURE)
                return
            if event.kind == media_pb2.MediaEvent.KIND_LEG_FAILED:
                await self._end(call, S.END_REASON_MEDIA_FAILURE)
            elif event.kind == media_pb2.MediaEvent.KIND_LEG_CONNECTED:
                call.legs_connected.add(event.leg)
                if len(call.legs_connected) == 2:
                    self._cancel_timer(call)
                    call.move(S.CALL_STATE_CONNECTED)
                    STAGE_SECONDS.labels("accept_to_connected").observe(
                        time.monotonic() - call.entered[S.CALL_STATE_CONNECTING]
                    )
                    await self._update(call)
                    await self._emit(call)

    # --- commerce ------------------------------------------------------------------------------

    async def _push_product_card(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != call.host_id:
            raise _denied("only the host pushes product cards")
        call.expect(S.CALL_STATE_CONNECTED)
        reply = await self.bus.request(
            subjects.ORDERS_PRODUCT_CARD,
            orders_pb2.ProductCardRequest(
                call_id=call.call_id, host_id=call.host_id, product_id=envelope.push_product_card.product_id,
                market=call.request.market,
            ),
            orders_pb2.ProductCardReply,
        )  # fmt: skip
        card = client_pb2.ProductCard(call_id=call.call_id, product=reply.product, card_id=reply.card_id)
        await self.deliver(call.shopper_id, new_envelope(product_card=card))
        await self.deliver(call.host_id, new_envelope(envelope.id, product_card=card))

    async def _add_to_cart(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != call.shopper_id:
            raise _denied("only the shopper changes the cart")
        call.expect(S.CALL_STATE_CONNECTED)
        change = envelope.add_to_cart
        reply = await self.bus.request(
            subjects.ORDERS_CART,
            orders_pb2.CartChange(
                call_id=call.call_id, shopper_id=call.shopper_id, product_id=change.product_id,
                quantity=change.quantity or 1, market=call.request.market,
            ),
            orders_pb2.CartReply,
        )  # fmt: skip
        cart = client_pb2.CartUpdate(call_id=call.call_id, lines=reply.lines, total=reply.total)
        await self.deliver(call.shopper_id, new_envelope(envelope.id, cart_update=cart))
        await self.deliver(call.host_id, new_envelope(cart_update=cart))

    async def _checkout(self, call: Call, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != call.shopper_id:
            raise _denied("only the shopper checks out")
        call.expect(S.CALL_STATE_CONNECTED)
        reply = await self.bus.request(
            subjects.ORDERS_CHECKOUT,
            orders_pb2.CheckoutRequest(
                call_id=call.call_id, shopper_id=call.shopper_id, host_id=call.host_id,
                idempotency_key=envelope.checkout.idempotency_key,
            ),
            orders_pb2.CheckoutReply,
            timeout_s=max(self.settings.request_timeout_s, 5.0),
        )  # fmt: skip
        result = client_pb2.CheckoutResult(call_id=call.call_id, order_id=reply.order_id, total=reply.total)
        if reply.HasField("error"):
            result.error.CopyFrom(reply.error)
        await self.deliver(call.shopper_id, new_envelope(envelope.id, checkout_result=result))
        await self.deliver(call.host_id, new_envelope(checkout_result=result))

    # --- the end -------------------------------------------------------------------------------

    def _cancel_timer(self, call: Call) -> None:
        timer = self._timers.pop(call.call_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _end(self, call: Call, reason: common_pb2.EndReason.ValueType) -> None:
        self._cancel_timer(call)
        call.move(S.CALL_STATE_ENDED, reason)
        CALLS_ENDED.labels(common_pb2.EndReason.Name(reason)).inc()
        logger.info("call ended", extra={"call_id": call.call_id, "reason": common_pb2.EndReason.Name(reason)})
        await self._update(call)
        await self._emit(call)
        if call.host_id:
            accepted = S.CALL_STATE_CONNECTING in call.entered
            outcome = matchmaking_pb2.HOST_OUTCOME_COMPLETED if accepted else matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED
            self._release_host(call.call_id, call.host_id, outcome)
        if call.worker_id:
            try:
                await self.bus.request(
                    subjects.join(subjects.MEDIA_WORKER, call.worker_id, "release"),
                    media_pb2.MediaRelease(call_id=call.call_id, reason=reason),
                    media_pb2.MediaRelease,
                )
            except TandemError as exc:
                logger.warning("media release failed", extra={"call_id": call.call_id, "error": str(exc)})
        self._tasks.spawn(self._forget(call.call_id), name=f"forget-{call.call_id}")

    async def _forget(self, call_id: str) -> None:
        for sub in self._subs.pop(call_id, []):
            await sub.unsubscribe()
        self.calls.pop(call_id, None)
        self._locks.pop(call_id, None)
        self._traces.pop(call_id, None)

    async def hang_up_all(self) -> None:
        """On shutdown: end every call this instance owns, so nobody is left in a dead call."""
        for call in list(self.calls.values()):
            async with self._locks[call.call_id]:
                if not call.ended:
                    await self._end(call, S.END_REASON_HANGUP)
        await self._tasks.wait(5.0)
        await cancel_and_wait(*self._timers.values())
        await self._tasks.cancel_all()
