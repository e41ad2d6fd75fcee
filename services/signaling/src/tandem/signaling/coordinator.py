"""The owner of calls: a signaling instance runs each call it owns — its state machine, its
timeouts, its questions to matchmaking, media and orders — and tells both parties what happens.

A call's state lives in the `tandem_calls` KV bucket (`callstore`), written with compare-and-set
on every change. The instance that took the shopper's request owns the call until it stops (it
hands its calls over) or dies (its lease lapses); then another instance adopts the call and goes
on from the stored state, timers included. Clients' messages about a call reach its owner on
`tandem.v1.signaling.call.<call_id>` from whichever instance holds their socket; frames for a user
go out on `tandem.v1.signaling.deliver.<user_id>` to whichever instance holds theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import nats.errors
from google.protobuf import empty_pb2
from nats.aio.subscription import Subscription
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from tandem.common import subjects
from tandem.common.aio import TaskSet, cancel_and_wait
from tandem.common.bus import Bus
from tandem.common.envelope import new_envelope
from tandem.common.errors import BusTimeoutError, NoRespondersError, TandemError
from tandem.common.telemetry import TRACEPARENT, TRACESTATE, extract_context, inject_headers
from tandem.signaling.auth import Identity
from tandem.signaling.callstate import MEDIA_STATES, Call, Timeouts
from tandem.signaling.callstore import CallStore, Leases, ShopperCalls
from tandem.signaling.commerce import InCallCommerce
from tandem.signaling.errors import (
    AlreadyInCallError,
    CallEndedError,
    CallMovedError,
    CallMovingError,
    CallNotFoundError,
    NotACallMessageError,
    NotAPartyError,
    NotTheInvitedHostError,
    RoleError,
    TooManyEarlyCandidatesError,
)
from tandem.signaling.matching import MISSED, Matcher, Standing
from tandem.signaling.media_session import MediaSession
from tandem.signaling.settings import Settings
from tandem.signaling.workers import WorkerWatch
from tandem.v1 import calls_pb2, client_pb2, common_pb2, matchmaking_pb2, media_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("tandem.signaling")

S = common_pb2
CALLS_ENDED = Counter("tandem_signaling_calls_ended_total", "Calls ended, by reason", ["reason"])
CALLS_TAKEN_OVER = Counter("tandem_signaling_calls_taken_over_total", "Calls adopted from another instance")
LEASE_LAPSED = Counter(
    "tandem_signaling_lease_lapsed_total", "Lease renewals made after the lease had lapsed (its calls may have moved)"
)
MEDIA_MOVED = Counter("tandem_signaling_media_moved_total", "Calls whose media moved to another worker")
WORKER_GIVE_UP_FACTOR = 4
"""A call whose worker has been silent this many times `WORKER_SILENCE_S`, with no other worker to
take it, ends with MEDIA_FAILURE."""
STAGE_SECONDS = Histogram(
    "tandem_signaling_stage_seconds",
    "Time spent between call stages",
    ["stage"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)

Clock = Callable[[], float]

# Call messages whose owner may take a while to answer (a media worker or orders is asked).
SLOW_CALL_PAYLOADS = frozenset({"accept", "sdp", "checkout"})

# Envelope payloads about an existing call (`hello` when it resumes one).
CALL_PAYLOADS = frozenset(
    {"accept", "decline", "cancel", "hangup", "sdp", "ice_candidate", "push_product_card", "add_to_cart",
     "checkout"}
)  # fmt: skip

# The client message being handled, as (user id, envelope id): the call update it causes for that
# user answers it (`correlationId`). Timers and matching run with none.
_ANSWERING: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("answering", default=None)


@contextlib.asynccontextmanager
async def _unless_moved() -> AsyncIterator[None]:
    """Background work on a call (a timeout, matching, a media event) that finds the call taken
    over by another instance stops there: the new owner runs it (`_save` has let it go here)."""
    with contextlib.suppress(CallMovedError):
        yield


def call_id_of(envelope: client_pb2.Envelope) -> str:
    """The call a client message is about (a hello's is the call it resumes)."""
    kind = envelope.WhichOneof("payload")
    if kind == "hello":
        return envelope.hello.resume_call_id
    if kind not in CALL_PAYLOADS:
        raise NotACallMessageError(kind)
    call_id: str = getattr(envelope, kind).call_id
    return call_id


class OwnedCall:
    """A call this instance runs: its state, its lock, its subscriptions, its pending timeout and
    matching, and its trace."""

    def __init__(self, call: Call, trace_context: otel_context.Context) -> None:
        self.call = call
        self.lock = asyncio.Lock()
        self.trace = trace_context
        self.subscriptions: list[Subscription] = []
        self.timer: asyncio.Task[None] | None = None
        self.matching: asyncio.Task[None] | None = None
        self.move_after = 0.0
        """Monotonic time before which a failed move of the call's media is not tried again."""
        self.outbox: list[Callable[[], Awaitable[object]]] = []
        """What the parties and the call's history are to be told once the call's new state is
        stored: an owner that finds the call taken over meanwhile tells nobody anything."""
        self.gone: asyncio.Task[None] | None = None
        """Closing the call's subscriptions here, once it has ended or another instance took it over."""

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer is not asyncio.current_task():
            self.timer.cancel()
        self.timer = None

    async def close(self) -> None:
        """Stop running the call here (timers, matching, subscriptions); its record stays."""
        self.cancel_timer()
        pending = [t for t in (self.matching,) if t is not None and t is not asyncio.current_task()]
        await cancel_and_wait(*pending)
        for sub in self.subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self.subscriptions.clear()


Handler = Callable[[OwnedCall, Identity, client_pb2.Envelope], Awaitable[None]]


class CallCoordinator:
    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        store: CallStore,
        shoppers: ShopperCalls,
        leases: Leases,
        *,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.store = store
        self.shoppers = shoppers
        self.leases = leases
        self.instance = leases.instance
        self.clock = clock
        self.calls: dict[str, OwnedCall] = {}
        self._moved: dict[str, asyncio.Task[None]] = {}
        """Calls taken over by another instance whose subscriptions here are closing."""
        self.timeouts = Timeouts(
            queue_s=settings.queue_timeout_s, ring_s=settings.ring_timeout_s, connect_s=settings.connect_timeout_s
        )
        slow_request_s = max(settings.request_timeout_s, 5.0)
        self.matcher = Matcher(bus, settings.region, release_attempts=settings.host_release_attempts)
        self.media = MediaSession(
            bus, settings.region, allocate_attempts=settings.media_allocate_attempts, worker_timeout_s=slow_request_s
        )
        self.commerce = InCallCommerce(bus, checkout_timeout_s=slow_request_s)
        self.workers = WorkerWatch(settings.worker_silence_s)
        self._tasks = TaskSet("coordinator")
        self._stopping = False
        self._alive_at_last_scan: set[str] = set()
        self._last_full_scan = 0.0
        self._handlers: dict[str, Handler] = {
            "hello": self._resume,
            "accept": self._accept,
            "decline": self._decline,
            "cancel": self._cancel,
            "hangup": self._hangup,
            "sdp": self._sdp,
            "ice_candidate": self._ice_candidate,
            "push_product_card": self._commerce,
            "add_to_cart": self._commerce,
            "checkout": self._commerce,
        }

    # --- ownership -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the lease, adopt calls nobody runs, and keep both up to date."""
        await self.leases.renew(self.clock())
        await self.workers.watch(self.bus, self.settings.region)
        await self._adopt_orphans(force=True)
        self._tasks.spawn(self._keep_lease(), name="lease")
        self._tasks.spawn(self._watch_for_orphans(), name="takeover")
        self._tasks.spawn(self._watch_workers(), name="workers")

    async def _keep_lease(self) -> None:
        expires_at = self.clock() + self.settings.lease_ttl_s
        while True:
            await asyncio.sleep(self.settings.lease_renew_s)
            now = self.clock()
            if now > expires_at:
                # The process stalled (or renewals failed) for longer than the lease: another
                # instance may have taken its calls over; they leave this one as they are touched.
                LEASE_LAPSED.inc()
                logger.warning("lease lapsed before renewal", extra={"late_s": round(now - expires_at, 3)})
            try:
                await self.leases.renew(now)
            except (TandemError, nats.errors.Error) as exc:
                logger.warning("lease not renewed", extra={"error": str(exc)})
            else:
                expires_at = now + self.settings.lease_ttl_s

    async def _watch_for_orphans(self) -> None:
        while True:
            await asyncio.sleep(self.settings.takeover_check_s)
            try:
                await self._adopt_orphans()
            except (TandemError, nats.errors.Error) as exc:
                logger.warning("takeover check failed", extra={"error": str(exc)})

    async def _adopt_orphans(self, *, force: bool = False) -> None:
        """Adopt every running call whose owner handed it over or no longer holds a lease. The
        calls are read only when an instance came or went (a lease lapsed or was given up), and
        every `orphan_scan_s` in case a handover was missed."""
        if self._stopping:
            return
        now = self.clock()
        alive = await self.leases.alive(now)
        due = now - self._last_full_scan >= self.settings.orphan_scan_s
        if not (force or due or alive != self._alive_at_last_scan):
            return
        self._alive_at_last_scan, self._last_full_scan = alive, now
        for call_id in await self.store.call_ids():
            if call_id in self.calls or self._stopping:
                continue
            call = await self.store.load(call_id)
            if call is None or call.ended or call_id in self.calls:
                continue
            # A call this instance's id owns but its memory lacks was left by an earlier life of
            # the instance (a container restarted under the same name).
            if call.owner in alive and call.owner != self.instance:
                continue
            await self._take_over(call)

    async def _take_over(self, call: Call) -> None:
        previous = call.owner
        call.owner = self.instance
        try:
            await self.store.save(call)
        except CallMovedError:
            return  # another instance was quicker
        carrier = {TRACEPARENT: call.traceparent, TRACESTATE: call.tracestate}
        owned = await self._own(call, extract_context({k: v for k, v in carrier.items() if v}))
        CALLS_TAKEN_OVER.inc()
        logger.info("call taken over", extra={"call_id": call.call_id, "from": previous or "handover"})
        async with owned.lock:
            self._arm(owned)
            if call.state == S.CALL_STATE_QUEUED:
                self._start_matching(owned)

    async def _watch_workers(self) -> None:
        """Move the media of every call whose worker stopped reporting."""
        while True:
            await asyncio.sleep(self.settings.takeover_check_s)
            for owned in list(self.calls.values()):
                call = owned.call
                live = call.state in MEDIA_STATES
                due = time.monotonic() >= owned.move_after
                if live and due and call.worker_id and self.workers.lost(call.worker_id):
                    try:
                        await self._move_media(owned)
                    except (TandemError, nats.errors.Error) as exc:
                        logger.warning("media not moved", extra={"call_id": call.call_id, "error": str(exc)})

    async def _move_media(self, owned: OwnedCall) -> None:
        """The call's worker is gone: take another and have both parties offer to it again."""
        call = owned.call
        async with owned.lock, _unless_moved():
            if call.ended or not self.workers.lost(call.worker_id):
                return
            await self._replace_worker(owned)

    async def _replace_worker(self, owned: OwnedCall) -> None:
        """Take another worker for a call whose worker is gone, and have both parties offer to it."""
        call = owned.call
        lost = call.worker_id
        try:
            worker_id = await self.media.allocate(call, held=call.state == S.CALL_STATE_RINGING)
        except TandemError as exc:
            # Workers too busy to answer may recover (the call's own among them): the call stays
            # where it is and the move is tried again, until its worker has been silent too long.
            silent_s = self.workers.silent_for(lost)
            if silent_s < self.settings.worker_silence_s * WORKER_GIVE_UP_FACTOR:
                logger.warning("no worker to move to yet", extra={"call_id": call.call_id, "error": str(exc)})
                owned.move_after = time.monotonic() + self.settings.worker_silence_s
                return
            logger.error("no worker to move to", extra={"call_id": call.call_id, "error": str(exc)})
            await self._end(owned, S.END_REASON_MEDIA_FAILURE)
            return
        if worker_id == lost:
            # It answered: only its reports were late (a busy worker). The call stays.
            self.workers.reported(lost)
            return
        call.worker_id = worker_id
        MEDIA_MOVED.inc()
        logger.info("call media moved", extra={"call_id": call.call_id, "from": lost, "to": call.worker_id})
        call.forget_legs(media_pb2.LEG_SHOPPER, media_pb2.LEG_HOST)
        renegotiate = client_pb2.Renegotiate(call_id=call.call_id, reason="media worker lost")
        for user_id in (call.shopper_id, call.host_id):
            if user_id:
                self._send(owned, user_id, new_envelope(renegotiate=renegotiate))
        self._emit(owned)
        await self._save(owned)

    async def _own(self, call: Call, trace_context: otel_context.Context) -> OwnedCall:
        owned = OwnedCall(call, trace_context)
        owned.subscriptions = [
            await self.bus.serve(
                subjects.join(subjects.SIGNALING_CALL, call.call_id), calls_pb2.CallCommand, self.handle,
                queue="owner", concurrent=True,
            ),
            await self.bus.subscribe(
                subjects.join(subjects.MEDIA_EVENTS, call.call_id), media_pb2.MediaEvent, self._on_media_event
            ),
        ]  # fmt: skip
        self.calls[call.call_id] = owned
        return owned

    async def _save(self, owned: OwnedCall) -> None:
        """Store the call, then tell what its outbox holds. If another instance has taken the call
        over meanwhile, tell nothing and stop running it here (`CallMovedError`)."""
        try:
            await self.store.save(owned.call)
        except CallMovedError:
            logger.warning("call moved away", extra={"call_id": owned.call.call_id})
            owned.outbox.clear()
            self._let_go(owned, moved=True)
            raise
        outbox, owned.outbox = owned.outbox, []
        for effect in outbox:
            await effect()

    def _let_go(self, owned: OwnedCall, *, moved: bool = False) -> None:
        """Stop running the call here at once; its subscriptions close in the background (this may
        be running in one of their callbacks). Messages for a call that `moved` and that still
        reach this instance meanwhile are passed on to the new owner."""
        call_id = owned.call.call_id
        if self.calls.get(call_id) is owned:
            del self.calls[call_id]
        if owned.gone is not None:
            return
        owned.gone = self._tasks.spawn(owned.close(), name=f"let-go-{call_id}")
        if moved:
            self._moved[call_id] = owned.gone
            owned.gone.add_done_callback(lambda _: self._moved.pop(call_id, None))

    async def hand_over_all(self) -> None:
        """On shutdown: stop running every call and leave it to the other instances (nobody is
        hung up); then give up the lease so they adopt the calls at once."""
        self._stopping = True
        # A match in flight may reserve a host: let it finish (it rings, or frees the host).
        matching = [o.matching for o in self.calls.values() if o.matching is not None and not o.matching.done()]
        if matching:
            await asyncio.wait(matching, timeout=self.settings.request_timeout_s + 1)
        await self._tasks.cancel_all()
        await self.matcher.close(timeout_s=self.settings.request_timeout_s)
        for owned in list(self.calls.values()):
            await owned.close()
            async with owned.lock:
                with contextlib.suppress(TandemError, nats.errors.Error):
                    if owned.call.ended:
                        await self.store.delete(owned.call.call_id)
                    else:
                        owned.call.owner = ""
                        await self.store.save(owned.call)
            self.calls.pop(owned.call.call_id, None)
        await self.leases.release()

    # --- delivery ------------------------------------------------------------------------------

    async def deliver(self, user_id: str, envelope: client_pb2.Envelope) -> None:
        await self.bus.publish(subjects.join(subjects.SIGNALING_DELIVER, user_id), envelope)

    def _send(self, owned: OwnedCall, user_id: str, envelope: client_pb2.Envelope) -> None:
        """Deliver a frame about the call once its new state is stored (`_save`)."""
        owned.outbox.append(lambda: self.deliver(user_id, envelope))

    def _tell(
        self,
        owned: OwnedCall,
        user_id: str,
        state: common_pb2.CallState.ValueType,
        reason: common_pb2.EndReason.ValueType,
    ) -> None:
        """Send one party a call update (answering their message, when it caused it)."""
        call = owned.call
        peer_id = call.shopper_id if user_id == call.host_id else call.host_id
        media_ready = bool(call.worker_id) and state in MEDIA_STATES
        update = client_pb2.CallUpdate(
            call_id=call.call_id, state=state, reason=reason, peer_id=peer_id, media_ready=media_ready
        )
        update.at.FromDatetime(datetime.now(UTC))
        answering = _ANSWERING.get()
        correlation_id = answering[1] if answering is not None and answering[0] == user_id else ""
        self._send(owned, user_id, new_envelope(correlation_id, call_update=update))

    def _update(self, owned: OwnedCall, *, to_host: bool = True) -> None:
        """Tell both parties the call's state."""
        call = owned.call
        self._tell(owned, call.shopper_id, call.state, call.reason)
        if to_host and call.host_id:
            self._tell(owned, call.host_id, call.state, call.reason)

    def _emit(self, owned: OwnedCall) -> None:
        """Publish the call's state as a fact once stored (JetStream, de-duplicated by call and
        sequence)."""
        call = owned.call
        call.event_seq += 1
        request = call.request
        event = calls_pb2.CallEvent(
            event_id=f"{call.call_id}:{call.event_seq}", call_id=call.call_id, state=call.state,
            reason=call.reason, shopper_id=call.shopper_id, host_id=call.host_id,
            product_id=request.product_id, category=request.category, language=request.language,
            market=request.market, worker_id=call.worker_id,
        )  # fmt: skip
        event.at.FromDatetime(datetime.now(UTC))
        owned.outbox.append(lambda: self._publish_event(event))

    async def _publish_event(self, event: calls_pb2.CallEvent) -> None:
        try:
            subject = subjects.join(subjects.CALL_EVENTS, event.call_id)
            await self.bus.publish_fact(subject, event, msg_id=event.event_id)
        except TandemError as exc:
            logger.error("call event not published", extra={"call_id": event.call_id, "error": str(exc)})

    # --- entry points --------------------------------------------------------------------------

    async def consult(self, shopper: Identity, envelope: client_pb2.Envelope) -> None:
        if shopper.is_host:
            raise RoleError("only shoppers request consultations")
        if any(o.call.shopper_id == shopper.user_id and not o.call.ended for o in self.calls.values()):
            raise AlreadyInCallError(shopper.user_id)
        trace_carrier = inject_headers({})
        call = Call(
            call_id=str(uuid.uuid4()), shopper_id=shopper.user_id, request=envelope.consult_request,
            requested_at=self.clock(), owner=self.instance,
            traceparent=trace_carrier.get(TRACEPARENT, ""), tracestate=trace_carrier.get(TRACESTATE, ""),
        )  # fmt: skip
        await self.shoppers.claim(shopper.user_id, call.call_id)
        owned = await self._own(call, otel_context.get_current())  # known before it is stored
        await self.store.create(call)
        self._emit(owned)
        async with owned.lock:
            await self._enqueue(owned, S.END_REASON_UNSPECIFIED, correlation_id=envelope.id)

    async def handle(self, command: calls_pb2.CallCommand) -> empty_pb2.Empty:
        """A client's message about a call this instance owns (local or from another instance)."""
        envelope = command.envelope
        kind = envelope.WhichOneof("payload")
        call_id = call_id_of(envelope)
        owned = self.calls.get(call_id)
        if owned is None and kind is not None and call_id in self._moved:
            await self._pass_on(call_id, command)
            return empty_pb2.Empty()
        if owned is None or kind is None:
            raise CallNotFoundError(call_id)
        call = owned.call
        identity = Identity(command.user_id, command.role)
        if identity.user_id not in (call.shopper_id, call.host_id) or (
            identity.is_host and identity.user_id != call.host_id
        ):
            raise NotAPartyError(identity.user_id, call_id)
        if command.HasField("disconnected_at"):
            resumed = call.resumed_at.get(identity.user_id, 0.0)
            if resumed > command.disconnected_at.ToNanoseconds() / 1e9:
                return empty_pb2.Empty()  # the party came back on another socket
        answering = _ANSWERING.set((identity.user_id, envelope.id))
        sender = trace.get_current_span().get_span_context()
        try:
            with tracer.start_as_current_span(
                f"call {kind}", context=owned.trace, links=[trace.Link(sender)] if sender.is_valid else []
            ):
                async with owned.lock:
                    if call.ended:
                        raise CallEndedError(call_id)
                    await self._handlers[kind](owned, identity, envelope)
        except CallMovedError:
            # Taken over while being handled: nothing of it went out; the new owner handles it.
            await self._pass_on(call_id, command)
        finally:
            _ANSWERING.reset(answering)  # the socket's next frame answers for itself
        return empty_pb2.Empty()

    async def _pass_on(self, call_id: str, command: calls_pb2.CallCommand) -> None:
        """Hand a message for a call another instance has taken over to it, once this instance's
        subscriptions for the call are closed (so that it cannot come back here)."""
        closing = self._moved.get(call_id)
        if closing is not None:
            await asyncio.wait([closing])
        await self.to_owner(command)

    async def to_owner(self, command: calls_pb2.CallCommand) -> None:
        """Hand a client's message about a call to the call's owner: this instance, or another
        over NATS. While the call changes owner nobody answers for it: wait for the new owner, up
        to `takeover_wait_s`."""
        envelope = command.envelope
        call_id = call_id_of(envelope)
        slow = envelope.WhichOneof("payload") in SLOW_CALL_PAYLOADS
        timeout_s = max(self.settings.request_timeout_s, 10.0) if slow else self.settings.request_timeout_s
        deadline = time.monotonic() + self.settings.takeover_wait_s
        while True:
            if call_id in self.calls:
                await self.handle(command)
                return
            try:
                await self.bus.request(
                    subjects.join(subjects.SIGNALING_CALL, call_id), command, empty_pb2.Empty, timeout_s=timeout_s
                )
                return
            except (NoRespondersError, BusTimeoutError) as exc:
                call = await self.store.load(call_id)
                if call is None or call.ended:
                    raise CallNotFoundError(call_id) from None
                # No answer from an owner that still holds its lease is a slow owner, not a move.
                if isinstance(exc, BusTimeoutError) and call.owner in await self.leases.alive(time.time()):
                    raise
                if time.monotonic() > deadline:
                    raise CallMovingError(call_id) from None
            await asyncio.sleep(0.1)

    # --- timeouts ------------------------------------------------------------------------------

    def _arm(self, owned: OwnedCall) -> None:
        """Schedule the current state's timeout (from the stored times, so a call taken over
        times out when it would have at its first owner)."""
        owned.cancel_timer()
        call = owned.call
        deadline = call.deadline(self.timeouts)
        if deadline is None:
            return
        state, since = call.state, call.state_entered_at

        async def fire() -> None:
            _ANSWERING.set(None)  # what fires later answers no one
            await asyncio.sleep(max(0.0, deadline - self.clock()))
            async with owned.lock, _unless_moved():
                if (call.state, call.state_entered_at) != (state, since) or call.ended:
                    return
                owned.timer = None
                reason = call.timeout_reason(self.settings.max_hosts_tried)
                if call.state == S.CALL_STATE_RINGING:
                    await self._requeue(owned, reason)
                else:
                    await self._end(owned, reason)

        owned.timer = self._tasks.spawn(fire(), name=f"timeout-{call.call_id}")

    # --- queue and match -----------------------------------------------------------------------

    async def _enqueue(
        self, owned: OwnedCall, reason: common_pb2.EndReason.ValueType, correlation_id: str = ""
    ) -> None:
        call = owned.call
        call.move(S.CALL_STATE_QUEUED, self.clock(), reason)
        # Position 0: the shard's matcher has not placed the shopper yet; its figures follow.
        self._send(
            owned,
            call.shopper_id,
            new_envelope(correlation_id, queue_update=client_pb2.QueueUpdate(call_id=call.call_id, position=0)),
        )
        self._update(owned, to_host=False)
        await self._save(owned)
        self._arm(owned)
        self._start_matching(owned)

    def _start_matching(self, owned: OwnedCall) -> None:
        # Not a cancellable timer: a match in flight may have reserved a host, which must be freed.
        owned.matching = self._tasks.spawn(self._find_host(owned), name=f"match-{owned.call.call_id}")

    async def _find_host(self, owned: OwnedCall) -> None:
        async with _unless_moved():
            await self._look_for_host(owned)

    async def _look_for_host(self, owned: OwnedCall) -> None:
        """Ask the shard's matcher for a host until one is matched, the call leaves the queue, or
        the queue's time is up (its timeout then ends the call). Each request waits up to
        `match_retry_s`: for a host, or for the shopper's standing, passed on as a queueUpdate
        when it changes. A request nobody answers (a matcher taking the shard over) is asked
        again after a quarter of that."""
        _ANSWERING.set(None)
        call = owned.call
        told: Standing | None = None
        while call.state == S.CALL_STATE_QUEUED and len(call.hosts_tried) < self.settings.max_hosts_tried:
            remaining = call.requested_at + self.timeouts.queue_s - self.clock()
            if remaining <= 0 or self._stopping:
                return
            wait_s = max(0.05, min(self.settings.match_retry_s, remaining))
            try:
                answer = await self.matcher.match(call, wait_s)
            except BusTimeoutError:
                continue  # the matcher held the request: nothing changed
            if answer is None:
                await asyncio.sleep(min(wait_s / 4, remaining))
                continue
            if isinstance(answer, Standing):
                if answer != told and call.state == S.CALL_STATE_QUEUED:
                    told = answer
                    update = client_pb2.QueueUpdate(
                        call_id=call.call_id, position=answer.position, estimated_wait_s=answer.estimated_wait_s
                    )
                    await self.deliver(call.shopper_id, new_envelope(queue_update=update))
                continue
            async with owned.lock:
                if call.state != S.CALL_STATE_QUEUED or self.calls.get(call.call_id) is not owned:
                    # Cancelled or moved meanwhile: the host is not needed.
                    self.matcher.release(call, answer.host_id, matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED)
                    return
                had_worker = bool(call.worker_id)
                try:
                    await self._ring(owned, answer)
                except CallMovedError:
                    # Taken over before the ring was stored: the new owner matches again.
                    if call.worker_id and not had_worker:
                        await self.media.release(call, S.END_REASON_UNSPECIFIED)
                    self.matcher.release(call, answer.host_id, matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED)
                    raise
            return
        async with owned.lock:
            if call.state == S.CALL_STATE_QUEUED and len(call.hosts_tried) >= self.settings.max_hosts_tried:
                await self._end(owned, S.END_REASON_NO_HOST)

    async def _ring(self, owned: OwnedCall, host: matchmaking_pb2.MatchedHost) -> None:
        call = owned.call
        call.host_id = host.host_id
        call.returning_customer = host.returning_customer
        call.hosts_tried.append(host.host_id)
        matched_at = self.clock()
        self._stage(owned, "queued_to_matched", call.state_entered_at, matched_at)
        if not call.worker_id:
            await self._preconnect(call)
        call.move(S.CALL_STATE_RINGING, self.clock())
        self._stage(owned, "matched_to_ringing", matched_at, call.state_entered_at)
        self._stage(owned, "tap_to_ringing", call.requested_at, call.state_entered_at)
        self._send(owned, call.host_id, new_envelope(invite=self._invite(call)))
        self._update(owned, to_host=False)
        self._emit(owned)
        await self._save(owned)
        self._arm(owned)

    async def _preconnect(self, call: Call) -> None:
        """Take the call's worker as the phone starts ringing, held: both parties negotiate and
        connect while it rings, and nothing passes between them until the host accepts. Without
        a worker now, the call still rings; the worker is taken at the accept."""
        try:
            call.worker_id = await self.media.allocate(call, held=True)
        except TandemError as exc:
            logger.warning("no worker to pre-connect", extra={"call_id": call.call_id, "error": str(exc)})

    def _stage(self, owned: OwnedCall, stage: str, start_s: float, end_s: float) -> None:
        """One stage of connecting a call: a histogram sample and a span in the call's trace."""
        STAGE_SECONDS.labels(stage).observe(max(0.0, end_s - start_s))
        span = tracer.start_span(f"stage {stage}", context=owned.trace, start_time=int(start_s * 1e9))
        span.end(end_time=int(max(start_s, end_s) * 1e9))

    def _invite(self, call: Call) -> client_pb2.Invite:
        request = call.request
        ringing_for = self.clock() - call.state_entered_at
        return client_pb2.Invite(
            call_id=call.call_id, product_id=request.product_id, category=request.category,
            language=request.language, market=request.market, returning_customer=call.returning_customer,
            ring_timeout_s=max(0, round(self.timeouts.ring_s - ringing_for)), media_ready=bool(call.worker_id),
        )  # fmt: skip

    async def _requeue(self, owned: OwnedCall, reason: common_pb2.EndReason.ValueType) -> None:
        """The ringing host did not take the call: tell them, free them, and try the next host."""
        call = owned.call
        host_id = call.host_id
        self._tell(owned, host_id, S.CALL_STATE_ENDED, reason)
        call.host_id = ""
        call.forget_legs(media_pb2.LEG_HOST)
        await self._enqueue(owned, reason)
        # The host's leg goes; the shopper's stays connected for the next host.
        await self.media.release(call, reason, leg=media_pb2.LEG_HOST)
        self.matcher.release(call, host_id, MISSED.get(reason, matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED))

    # --- host answers --------------------------------------------------------------------------

    async def _accept(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        call = owned.call
        if who.user_id != call.host_id:
            raise NotTheInvitedHostError(who.user_id, call.call_id, "accept")
        call.expect(S.CALL_STATE_RINGING)
        call.move(S.CALL_STATE_CONNECTING, self.clock())
        call.accepted_at = call.state_entered_at
        if call.worker_id:
            await self._open_gates(owned)
        else:
            try:
                call.worker_id = await self.media.allocate(call)
            except TandemError as exc:
                logger.error("media allocation failed", extra={"call_id": call.call_id, "error": str(exc)})
                await self._end(owned, S.END_REASON_MEDIA_FAILURE)
                return
        if call.ended:
            return
        self._update(owned)
        self._emit(owned)
        if len(call.legs_connected) == 2:
            await self._connected(owned)
        await self._save(owned)
        self._arm(owned)

    async def _open_gates(self, owned: OwnedCall) -> None:
        """Pre-connected: the worker forwards both parties' media from now on. A worker that does
        not answer is replaced, or, if it was only slow (or is the only one), asked again."""
        call = owned.call
        try:
            await self.media.open(call)
        except TandemError as exc:
            logger.warning("pre-connected worker lost", extra={"call_id": call.call_id, "error": str(exc)})
            held_by = call.worker_id
            await self._replace_worker(owned)
            if call.worker_id == held_by and not call.ended:
                with contextlib.suppress(TandemError):  # opening is idempotent
                    await self.media.open(call)
            return
        self._stage(owned, "accept_to_gates_open", call.accepted_at, self.clock())

    async def _decline(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != owned.call.host_id:
            raise NotTheInvitedHostError(who.user_id, owned.call.call_id, "decline")
        owned.call.expect(S.CALL_STATE_RINGING)
        await self._requeue(owned, S.END_REASON_DECLINED)

    async def _cancel(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        if who.user_id != owned.call.shopper_id:
            raise RoleError("only the shopper may cancel")
        owned.call.expect(S.CALL_STATE_QUEUED, S.CALL_STATE_RINGING, S.CALL_STATE_CONNECTING)
        await self._end(owned, S.END_REASON_CANCELLED)

    async def _hangup(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        # A client's own reasons were checked at the edge; PEER_DISCONNECTED comes from the gateway.
        reason = envelope.hangup.reason or S.END_REASON_HANGUP
        if owned.call.state == S.CALL_STATE_RINGING and who.user_id == owned.call.host_id:
            await self._requeue(owned, reason)  # a ringing host that leaves has declined
        else:
            await self._end(owned, reason)

    # --- media ---------------------------------------------------------------------------------

    @staticmethod
    def _leg(call: Call, who: Identity) -> media_pb2.Leg.ValueType:
        return media_pb2.LEG_HOST if who.user_id == call.host_id else media_pb2.LEG_SHOPPER

    async def _sdp(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        call = owned.call
        call.expect(*MEDIA_STATES)
        if not call.worker_id:  # ringing without a worker: offers come at the accept
            call.expect(S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED)
        leg = self._leg(call, who)
        # A restart replaces a negotiated leg's transport; for a leg not negotiated it is an offer.
        restart = envelope.sdp.restart and leg in call.offered_legs
        answer = await self.media.offer(call, leg, envelope.sdp.sdp, restart=restart)
        reply = client_pb2.SessionDescription(
            call_id=call.call_id, type=client_pb2.SessionDescription.TYPE_ANSWER, sdp=answer
        )
        self._send(owned, who.user_id, new_envelope(envelope.id, sdp=reply))
        call.offered_legs.add(leg)
        for candidate in call.early_candidates.pop(leg, []):
            await self.media.candidate(call, leg, candidate)
        await self._save(owned)

    async def _ice_candidate(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        call = owned.call
        call.expect(S.CALL_STATE_RINGING, S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED)
        leg = self._leg(call, who)
        if leg in call.offered_legs:
            await self.media.candidate(call, leg, envelope.ice_candidate)
            return
        # A browser gathers while its offer is on the way: keep a few until the offer has landed.
        early = call.early_candidates.setdefault(leg, [])
        if len(early) >= self.settings.max_early_candidates:
            raise TooManyEarlyCandidatesError(self.settings.max_early_candidates)
        early.append(envelope.ice_candidate)

    async def _on_media_event(self, event: media_pb2.MediaEvent, _: str) -> None:
        owned = self.calls.get(event.call_id)
        if owned is None:
            return
        call = owned.call
        async with owned.lock, _unless_moved():
            if event.kind == media_pb2.MediaEvent.KIND_LEG_FAILED:
                if call.state in (S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED):
                    await self._end(owned, S.END_REASON_MEDIA_FAILURE)
            elif event.kind == media_pb2.MediaEvent.KIND_LEG_CONNECTED and call.state in (
                S.CALL_STATE_RINGING,
                S.CALL_STATE_CONNECTING,
            ):
                call.legs_connected.add(event.leg)
                if len(call.legs_connected) == 2:
                    if call.state == S.CALL_STATE_RINGING:
                        self._stage(owned, "ringing_to_preconnected", call.state_entered_at, self.clock())
                    else:
                        await self._connected(owned)
                await self._save(owned)
            elif event.kind == media_pb2.MediaEvent.KIND_FIRST_FRAME_SENT and call.accepted_at:
                party = "shopper" if event.leg == media_pb2.LEG_SHOPPER else "host"
                self._stage(owned, f"accept_to_first_frame_{party}", call.accepted_at, self.clock())

    async def _connected(self, owned: OwnedCall) -> None:
        """Both legs connected after the accept: the call is live."""
        call = owned.call
        owned.cancel_timer()
        call.move(S.CALL_STATE_CONNECTED, self.clock())
        self._stage(owned, "accept_to_connected", call.accepted_at or call.state_entered_at, call.state_entered_at)
        self._update(owned)
        self._emit(owned)

    # --- commerce and resuming -----------------------------------------------------------------

    async def _commerce(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        call = owned.call
        shown = await self.commerce.handle(call, who, envelope)
        other = call.host_id if who.user_id == call.shopper_id else call.shopper_id
        self._send(owned, who.user_id, shown.envelope(envelope.id))
        self._send(owned, other, shown.envelope())
        await self._save(owned)

    async def _resume(self, owned: OwnedCall, who: Identity, envelope: client_pb2.Envelope) -> None:
        """A party reconnected: send them what they would have on screen."""
        call = owned.call
        call.resumed_at[who.user_id] = self.clock()
        self._tell(owned, who.user_id, call.state, call.reason)
        if who.user_id == call.host_id and call.state == S.CALL_STATE_RINGING:
            self._send(owned, who.user_id, new_envelope(invite=self._invite(call)))
        if call.last_card is not None:
            self._send(owned, who.user_id, new_envelope(product_card=call.last_card))
        if call.last_cart is not None:
            self._send(owned, who.user_id, new_envelope(cart_update=call.last_cart))
        await self._save(owned)

    # --- the end -------------------------------------------------------------------------------

    async def _end(self, owned: OwnedCall, reason: common_pb2.EndReason.ValueType) -> None:
        call = owned.call
        owned.cancel_timer()
        accepted = call.state in (S.CALL_STATE_CONNECTING, S.CALL_STATE_CONNECTED)
        call.move(S.CALL_STATE_ENDED, self.clock(), reason)
        CALLS_ENDED.labels(common_pb2.EndReason.Name(reason)).inc()
        logger.info("call ended", extra={"call_id": call.call_id, "reason": common_pb2.EndReason.Name(reason)})
        self._update(owned)
        self._emit(owned)
        try:
            await self._save(owned)
        except CallMovedError:
            return  # the instance that took the call over runs it on, or ends it
        if call.host_id:
            outcome = matchmaking_pb2.HOST_OUTCOME_COMPLETED if accepted else matchmaking_pb2.HOST_OUTCOME_NOT_NEEDED
            self.matcher.release(call, call.host_id, outcome)
        await self.media.release(call, reason)
        self._let_go(owned)
        self._tasks.spawn(self._forget(call), name=f"forget-{call.call_id}")

    async def _forget(self, call: Call) -> None:
        """Let the shopper go and delete the ended call's record. Without NATS both stay; neither
        blocks anything (an ended call's claim is taken over, its record expires)."""
        try:
            await self.shoppers.release(call.shopper_id, call.call_id)
            await self.store.delete(call.call_id)
        except (TandemError, nats.errors.Error) as exc:
            logger.warning("ended call not forgotten", extra={"call_id": call.call_id, "error": str(exc)})
