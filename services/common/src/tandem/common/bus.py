"""The NATS bus every service talks through.

Protobuf messages on the wire; W3C trace context in NATS headers on every hop; request/reply with
deadlines mapped to typed errors; queue-group services whose `TandemError`s travel back to the
caller as typed errors; JetStream streams, de-duplicated publishes and durable pull consumers; KV.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue
from nats.protocol.parser import PERMISSIONS_ERR
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from tandem.common.aio import TaskSet
from tandem.common.errors import (
    BusTimeoutError,
    BusUnavailableError,
    MalformedMessageError,
    MessageTooLargeError,
    NoRespondersError,
    TandemError,
)
from tandem.common.subjects import StreamSpec
from tandem.common.telemetry import extract_context, inject_headers, tracing_on
from tandem.v1 import common_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("tandem.bus")

M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)
T = TypeVar("T")

ERROR_HEADER = "Tandem-Error"
MSG_ID_HEADER = "Nats-Msg-Id"


class BusStatus(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DRAINING = "draining"
    CLOSED = "closed"


@dataclass(frozen=True)
class BusConfig:
    servers: list[str]
    name: str
    connect_timeout_s: float = 2.0
    reconnect_wait_s: float = 1.0
    # Attempts after a lost connection before the bus gives up and closes; -1 is unbounded.
    max_reconnect_attempts: int = 120
    request_timeout_s: float = 2.0
    max_payload_bytes: int = 256 * 1024


# nats-server refuses a control line (verb, subject, reply, sizes) over 4 KiB and closes the connection.
MAX_SUBJECT_BYTES = 1024
_SUBJECT = re.compile(r"[!-~]+")  # printable ASCII, no spaces


class InvalidSubjectError(TandemError):
    """A subject the server would refuse: one bad subject must not cost the connection."""

    code = common_pb2.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, length: int) -> None:
        super().__init__(f"refusing an invalid NATS subject of {length} characters")
        self.length = length


def _checked(subject: str) -> str:
    if len(subject) > MAX_SUBJECT_BYTES or _SUBJECT.fullmatch(subject) is None:
        raise InvalidSubjectError(len(subject))
    return subject


class _Client(Client):
    """nats-py closes a connection for good on any `-ERR` from the server, though the server drops
    the connection after it: a lost connection, which the reconnect policy is for. This client
    reconnects instead (subscriptions are replayed by nats-py), except for permission errors,
    after which the server keeps the connection."""

    async def _process_err(self, err_msg: str) -> None:
        if PERMISSIONS_ERR in err_msg or not self.options["allow_reconnect"]:
            await super()._process_err(err_msg)
            return
        error = nats.errors.Error(f"nats: {err_msg.strip(chr(39))}"[:200])
        self._err = error
        await self._error_cb(error)
        await self._process_op_err(error)


# What a handler raises when a dependency is down or restarting rather than the message being bad:
# its database (a service's UNAVAILABLE), a request that found nobody or no answer, the bus itself.
_OUTAGE_CODES = frozenset({common_pb2.ERROR_CODE_UNAVAILABLE, common_pb2.ERROR_CODE_TIMEOUT})
_OUTAGE_ERRORS = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
)


def _is_outage(exc: Exception) -> bool:
    if isinstance(exc, TandemError):
        return exc.code in _OUTAGE_CODES
    return isinstance(exc, _OUTAGE_ERRORS)


def _span(name: str, kind: SpanKind) -> contextlib.AbstractContextManager[trace.Span]:
    """The span of an outgoing message. Without a tracer provider nothing is recorded and the span
    would only pass the current trace context on as it is, so none is made (a message's span costs
    more CPU than the rest of a reply)."""
    if not tracing_on():
        return contextlib.nullcontext(trace.get_current_span())
    return tracer.start_as_current_span(name, kind=kind)


def _span_of(
    name: str, kind: SpanKind, headers: Mapping[str, str] | None
) -> contextlib.AbstractContextManager[trace.Span]:
    """The span of an incoming message, continuing the trace its headers carry. Without headers and
    without a tracer provider there is no trace to continue and nothing to record: none is made (the
    handler runs in the subscription's context, which carries no span)."""
    if not headers and not tracing_on():
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return tracer.start_as_current_span(name, context=extract_context(headers), kind=kind)


def decode(msg_type: type[M], data: bytes) -> M:
    """Parse a protobuf payload, raising `MalformedMessageError` instead of protobuf's errors."""
    message = msg_type()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError) as exc:
        raise MalformedMessageError(f"undecodable {msg_type.DESCRIPTOR.name}: {exc}") from None
    return message


def _ack(subject: str, msg: Msg) -> api.PubAck | Exception:
    """A stream's answer to a publish, read as nats-py reads it: a `PubAck`, or nats-py's `APIError`
    (by its HTTP-like code) for the stream's refusal; else why there is no answer."""
    if msg.headers and msg.headers.get(api.Header.STATUS) == api.StatusCode.SERVICE_UNAVAILABLE:
        return NoRespondersError(subject)
    try:
        answer = json.loads(msg.data)
        if "error" in answer:
            nats.js.errors.APIError.from_error(answer["error"])
        return api.PubAck.from_response(answer)
    except nats.js.errors.APIError as exc:
        return exc
    except (ValueError, TypeError, KeyError):
        return MalformedMessageError(f"undecodable acknowledgement on {subject}")


class Reply:
    """Where the answer to one served request goes; nowhere when the requester wants none. An answer
    the connection cannot take is logged and dropped (the requester's deadline covers it), so a
    loop answering many requests never stops at one."""

    def __init__(self, bus: Bus, subject: str) -> None:
        self._bus = bus
        self.subject = subject

    async def send(self, message: Message) -> None:
        try:
            payload = self._bus._encode(message)
        except MessageTooLargeError as exc:
            await self.fail(exc)
            return
        await self._publish(payload, None)

    async def fail(self, error: TandemError) -> None:
        await self._publish(error.to_proto().SerializeToString(), {ERROR_HEADER: error.code_name})

    async def _publish(self, payload: bytes, headers: dict[str, str] | None) -> None:
        if not self.subject:
            return
        try:
            await self._bus.client.publish(self.subject, payload, headers=headers)
        except nats.errors.Error as exc:
            logger.warning("reply not sent", extra={"error": repr(exc)})


class Bus:
    """One NATS connection of one process. Create, `await connect()`, use, `await close()`."""

    def __init__(self, config: BusConfig) -> None:
        self.config = config
        self.status = BusStatus.DISCONNECTED
        self._nc = _Client()
        self._js: JetStreamContext | None = None
        self._tasks = TaskSet("bus")
        # Acknowledgements awaited by `publish_all_acked`, by reply subject (see there).
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._ack_prefix = ""
        self._ack_tokens = itertools.count()
        self._shutdown: asyncio.Task[None] | None = None
        self.on_status: list[Callable[[BusStatus], None]] = []

    # --- connection -------------------------------------------------------------------------

    def _set_status(self, status: BusStatus) -> None:
        if status is not self.status:
            logger.info("nats connection status changed", extra={"status": status.value})
        self.status = status
        for callback in self.on_status:
            callback(status)

    @property
    def connected(self) -> bool:
        return self.status is BusStatus.CONNECTED

    async def connect(self) -> None:
        """Connect, retrying every `reconnect_wait_s` until the server answers (cancel to give up)."""
        self._set_status(BusStatus.CONNECTING)

        async def disconnected() -> None:
            if self.status is BusStatus.CONNECTED:
                self._set_status(BusStatus.RECONNECTING)

        async def reconnected() -> None:
            self._set_status(BusStatus.CONNECTED)

        async def closed() -> None:
            self._set_status(BusStatus.CLOSED)

        async def error(exc: Exception) -> None:
            logger.warning("nats error", extra={"error": repr(exc)})

        attempt = 0
        while True:
            attempt += 1
            try:
                await self._nc.connect(
                    servers=self.config.servers,
                    name=self.config.name,
                    connect_timeout=int(max(1, self.config.connect_timeout_s)),
                    reconnect_time_wait=int(max(1, self.config.reconnect_wait_s)),
                    max_reconnect_attempts=self.config.max_reconnect_attempts,
                    allow_reconnect=True,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    closed_cb=closed,
                    error_cb=error,
                )
                break
            except (nats.errors.NoServersError, OSError, TimeoutError) as exc:
                if attempt == 1 or attempt % 10 == 0:
                    logger.warning(
                        "nats not reachable, retrying",
                        extra={
                            "servers": ",".join(self.config.servers),
                            "attempt": attempt,
                            "error": repr(exc),
                        },
                    )
                self._nc = _Client()
                await asyncio.sleep(self.config.reconnect_wait_s)
        self._js = self._nc.jetstream()
        self._set_status(BusStatus.CONNECTED)

    @property
    def client(self) -> Client:
        """The underlying nats-py client (tests; services use the methods below)."""
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailableError("the bus is not connected")
        return self._js

    async def close(self, timeout_s: float = 5.0) -> None:
        """Drain subscriptions (finishing in-flight handlers), then close. Idempotent, and returns
        within about `timeout_s` even when the server is gone (nats-py's drain can outlive its own
        timeout: it swallows cancellation, then flushes)."""
        if self.status in (BusStatus.CLOSED, BusStatus.DRAINING):
            return
        self._set_status(BusStatus.DRAINING)
        await self._tasks.cancel_all()
        self._shutdown = asyncio.create_task(self._drain_and_close(), name="nats-shutdown")
        _, pending = await asyncio.wait({self._shutdown}, timeout=timeout_s)
        if pending:
            logger.warning("nats did not close in time; leaving the connection behind")
        self._set_status(BusStatus.CLOSED)

    async def _drain_and_close(self) -> None:
        if self._nc.is_connected:
            try:
                await self._nc.drain()
            except nats.errors.Error as exc:
                logger.warning("nats drain did not finish", extra={"error": repr(exc)})
        if not self._nc.is_closed:
            await self._nc.close()

    # --- core NATS --------------------------------------------------------------------------

    def _encode(self, message: Message) -> bytes:
        data = message.SerializeToString()
        if len(data) > self.config.max_payload_bytes:
            raise MessageTooLargeError(len(data), self.config.max_payload_bytes)
        return data

    async def publish(self, subject: str, message: Message, *, headers: dict[str, str] | None = None) -> None:
        """Fire-and-forget publish (core NATS), with trace context."""
        with _span(f"publish {subject}", SpanKind.PRODUCER):
            await self._nc.publish(
                _checked(subject), self._encode(message), headers=inject_headers(dict(headers or {})) or None
            )

    async def request(
        self, subject: str, message: Message, reply_type: type[R], *, timeout_s: float | None = None
    ) -> R:
        """Request/reply. Raises `BusTimeoutError`, `NoRespondersError`, or the responder's error."""
        timeout = timeout_s if timeout_s is not None else self.config.request_timeout_s
        with _span(f"request {subject}", SpanKind.CLIENT) as span:
            try:
                reply = await self._nc.request(
                    _checked(subject), self._encode(message), timeout=timeout, headers=inject_headers({}) or None
                )
            except nats.errors.NoRespondersError:
                raise NoRespondersError(subject) from None
            except nats.errors.TimeoutError:
                raise BusTimeoutError(subject, timeout) from None
            except nats.errors.ConnectionClosedError:
                raise BusUnavailableError("the NATS connection is closed") from None
            if reply.headers and ERROR_HEADER in reply.headers:
                error = TandemError.from_proto(decode(common_pb2.Error, reply.data))
                span.set_status(Status(StatusCode.ERROR, error.code_name))
                raise error
            return decode(reply_type, reply.data)

    async def serve(
        self,
        subject: str,
        request_type: type[M],
        handler: Callable[[M], Awaitable[Message]],
        *,
        queue: str,
        concurrent: bool = False,
    ) -> Subscription:
        """Answer requests on `subject` in a queue group. A raised `TandemError` becomes a typed
        error reply; any other exception is logged and answered as INTERNAL, never crashing the loop.
        Requests are handled one at a time, or each in its own task when `concurrent` (handlers that
        hold a request open, such as long polls)."""

        async def on_message(msg: Msg) -> None:
            if concurrent:
                self._tasks.spawn(handle(msg), name=f"serve:{subject}")
            else:
                await handle(msg)

        async def handle(msg: Msg) -> None:
            reply = Reply(self, msg.reply)
            answer = await self._handled(msg, reply, handler, request_type)
            if answer is not None:
                await reply.send(answer)

        return await self._nc.subscribe(_checked(subject), queue=queue, cb=on_message)

    async def serve_held(
        self,
        subject: str,
        request_type: type[M],
        handler: Callable[[M, Reply], Awaitable[None]],
        *,
        queue: str,
    ) -> Subscription:
        """Take requests on `subject` in a queue group and answer them later, without a task per
        request: `handler` is awaited in order as each request arrives, keeps the `Reply` and sends
        it when it has the answer (long polls answered by a batch). A `TandemError` it raises is
        answered as a typed error at once; any other exception is logged and answered as INTERNAL."""

        async def on_message(msg: Msg) -> None:
            reply = Reply(self, msg.reply)
            await self._handled(msg, reply, lambda request: handler(request, reply), request_type)

        return await self._nc.subscribe(_checked(subject), queue=queue, cb=on_message)

    async def _handled(
        self, msg: Msg, reply: Reply, call: Callable[[M], Awaitable[T]], request_type: type[M]
    ) -> T | None:
        """`call` on the decoded request in a server span; its errors answered on `reply` (None then)."""
        with _span_of(f"serve {msg.subject}", SpanKind.SERVER, msg.headers) as span:
            try:
                return await call(decode(request_type, msg.data))
            except TandemError as exc:
                span.set_status(Status(StatusCode.ERROR, exc.code_name))
                await reply.fail(exc)
            except Exception:
                logger.exception("request handler failed", extra={"subject": msg.subject})
                span.set_status(Status(StatusCode.ERROR, "internal"))
                await reply.fail(TandemError("internal error", code=common_pb2.ERROR_CODE_INTERNAL))
            return None

    async def subscribe(
        self,
        subject: str,
        message_type: type[M],
        handler: Callable[[M, str], Awaitable[None]],
        *,
        queue: str = "",
    ) -> Subscription:
        """Receive fire-and-forget messages; the handler gets the message and its subject.
        Undecodable payloads and handler failures are logged and dropped."""

        async def on_message(msg: Msg) -> None:
            with _span_of(f"process {msg.subject}", SpanKind.CONSUMER, msg.headers):
                try:
                    await handler(decode(message_type, msg.data), msg.subject)
                except Exception:
                    logger.exception("message handler failed", extra={"subject": msg.subject})

        return await self._nc.subscribe(_checked(subject), queue=queue, cb=on_message)

    # --- JetStream --------------------------------------------------------------------------

    async def ensure_stream(self, spec: StreamSpec) -> None:
        """Create the stream, or update it to the spec (idempotent; every service may call it)."""
        config = api.StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            duplicate_window=spec.duplicate_window_s,
            max_age=spec.max_age_s,
            storage=api.StorageType.FILE,
        )
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self.js.update_stream(config)

    async def publish_fact(self, subject: str, message: Message, *, msg_id: str) -> api.PubAck:
        """Publish to JetStream with `Nats-Msg-Id`, so a retried publish lands once."""
        with _span(f"publish {subject}", SpanKind.PRODUCER):
            headers = inject_headers({MSG_ID_HEADER: msg_id})
            try:
                return await self.js.publish(
                    _checked(subject), self._encode(message), timeout=self.config.request_timeout_s, headers=headers
                )
            except nats.errors.TimeoutError:
                raise BusTimeoutError(subject, self.config.request_timeout_s) from None
            except nats.js.errors.NoStreamResponseError:
                raise NoRespondersError(subject) from None

    async def publish_all_acked(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]], *, timeout_s: float
    ) -> list[api.PubAck | Exception]:
        """Publish several messages (subject, payload, headers) to JetStream at once: all are sent
        before any acknowledgement is awaited, under one deadline, their acknowledgements taken by
        one inbox subscription, so a batch costs no task, timer or inbox per message. Per message,
        in order: the stream's `PubAck`, its refusal (nats-py's `APIError`), or why there is no answer
        (`BusTimeoutError`, `NoRespondersError`, `MalformedMessageError`; for the message the
        connection would not take and every one after it, nats-py's error — the ones sent before it
        are still awaited, as they may land)."""
        if not self._ack_prefix:
            self._ack_prefix = f"{self._nc.new_inbox()}."
            await self._nc.subscribe(f"{self._ack_prefix}*", cb=self._on_ack)
        loop = asyncio.get_running_loop()
        replies = [f"{self._ack_prefix}{next(self._ack_tokens)}" for _ in messages]
        futures = [self._acks.setdefault(reply, loop.create_future()) for reply in replies]
        sent, refused = 0, None
        try:
            for (subject, payload, headers), reply in zip(messages, replies, strict=True):
                try:
                    await self._nc.publish(_checked(subject), payload, reply=reply, headers=headers)
                except nats.errors.Error as exc:  # reconnecting with a full buffer, closed, too large
                    refused = exc
                    break
                sent += 1
            if sent:
                await asyncio.wait(futures[:sent], timeout=timeout_s)
        finally:
            for reply in replies:
                self._acks.pop(reply, None)
        answers: list[api.PubAck | Exception] = [
            _ack(subject, future.result()) if future.done() else BusTimeoutError(subject, timeout_s)
            for (subject, _, _), future in zip(messages[:sent], futures, strict=False)
        ]
        return answers + [refused] * (len(messages) - sent) if refused is not None else answers

    async def _on_ack(self, msg: Msg) -> None:
        future = self._acks.get(msg.subject)
        if future is not None and not future.done():
            future.set_result(msg)

    def consume(
        self,
        stream: StreamSpec,
        durable: str,
        message_type: type[M],
        handler: Callable[[M], Awaitable[None]],
        *,
        filter_subject: str | None = None,
        batch: int = 32,
        ack_wait_s: float = 30.0,
        max_deliver: int = 10,
    ) -> asyncio.Task[None]:
        """Run a durable pull consumer in the background. A message is acked after the handler
        returns and redelivered (up to `max_deliver` times, with backoff) when it raises.
        Undecodable messages are terminated: redelivery cannot fix them. A handler whose dependency
        is down (a `TandemError` coded UNAVAILABLE or TIMEOUT, such as a lost database; a NATS
        request or KV call that timed out or found no responder) is retried in place, with backoff
        and without spending deliveries, until it succeeds: an outage loses nothing. Handlers must
        be idempotent: a message is redelivered when its ack is lost.

        The loop survives the server: a restart, a consumer that vanished (a server that lost its
        storage) or JetStream not ready yet; it binds the durable again and goes on where the
        consumer left off. Messages fetched but not handled when the loop stops are nak'ed, so
        another replica (or the next process) gets them at once rather than after `ack_wait_s`."""
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            filter_subject=filter_subject,
        )
        subject = filter_subject or stream.subjects[0]

        async def loop() -> None:
            while True:
                try:
                    sub = await self.js.pull_subscribe(subject, durable=durable, stream=stream.name, config=config)
                except (nats.errors.Error, TimeoutError) as exc:
                    logger.warning(
                        "stream consumer not bound; retrying", extra={"consumer": durable, "error": repr(exc)}
                    )
                    await asyncio.sleep(self.config.reconnect_wait_s)
                    continue
                try:
                    await self._fetch_until_lost(sub, message_type, handler, durable, batch, ack_wait_s)
                finally:
                    # Unfetched messages would keep a drain waiting; the server redelivers them.
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await asyncio.wait_for(sub.unsubscribe(), self.config.connect_timeout_s)

        return self._tasks.spawn(loop(), name=f"consume:{durable}")

    async def _fetch_until_lost(
        self,
        sub: JetStreamContext.PullSubscription,
        message_type: type[M],
        handler: Callable[[M], Awaitable[None]],
        durable: str,
        batch: int,
        ack_wait_s: float,
    ) -> None:
        """Fetch and handle until the consumer is gone from the server (then return to bind it again)."""
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except TimeoutError:  # nothing to fetch (nats-py raises both kinds)
                continue
            except (nats.js.errors.ServiceUnavailableError, nats.js.errors.NotFoundError) as exc:
                logger.warning(
                    "stream consumer lost; binding it again", extra={"consumer": durable, "error": repr(exc)}
                )
                await asyncio.sleep(self.config.reconnect_wait_s)
                return
            except nats.errors.Error as exc:  # reconnecting, or the server restarted
                logger.warning("stream fetch failed", extra={"consumer": durable, "error": repr(exc)})
                await asyncio.sleep(self.config.reconnect_wait_s)
                continue
            for index, msg in enumerate(msgs):
                try:
                    await self._deliver(msg, message_type, handler, durable, ack_wait_s)
                except asyncio.CancelledError:
                    await self._release(msgs[index:])
                    raise
                except nats.errors.Error as exc:  # the ack was lost with the connection: redelivered
                    logger.warning("stream ack failed", extra={"consumer": durable, "error": repr(exc)})

    async def _release(self, msgs: list[Msg]) -> None:
        """Hand fetched, unhandled messages back to the server for immediate redelivery."""
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(msg.nak() for msg in msgs)), self.config.connect_timeout_s)

    async def _deliver(
        self,
        msg: Msg,
        message_type: type[M],
        handler: Callable[[M], Awaitable[None]],
        durable: str,
        ack_wait_s: float,
    ) -> None:
        with _span_of(f"process {msg.subject}", SpanKind.CONSUMER, msg.headers):
            try:
                message = decode(message_type, msg.data)
            except MalformedMessageError:
                logger.error("undecodable stream message terminated", extra={"consumer": durable})
                await msg.term()
                return
            outage = 0
            while True:
                try:
                    await handler(message)
                    break
                except Exception as exc:
                    if not _is_outage(exc):
                        await self._redeliver_later(msg, durable)
                        return
                    outage += 1
                    if outage == 1 or outage % 10 == 0:
                        logger.warning(
                            "stream handler's dependency is down; retrying in place",
                            extra={"consumer": durable, "attempt": outage, "error": repr(exc)},
                        )
                # Keep the message ours while we wait (ack_wait restarts), then try again.
                with contextlib.suppress(nats.errors.Error):
                    await msg.in_progress()
                await asyncio.sleep(min(ack_wait_s / 3, 0.2 * 2 ** min(outage, 5)))
            await msg.ack()

    @staticmethod
    async def _redeliver_later(msg: Msg, durable: str) -> None:
        attempt = msg.metadata.num_delivered
        logger.exception("stream handler failed", extra={"consumer": durable, "attempt": attempt})
        await msg.nak(delay=min(30.0, 0.5 * 2**attempt))

    async def key_value(self, bucket: str, *, history: int = 1, ttl_s: float | None = None) -> KeyValue:
        """Open a KV bucket, creating it on first use."""
        try:
            return await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            return await self.js.create_key_value(config=api.KeyValueConfig(bucket=bucket, history=history, ttl=ttl_s))
