"""The client WebSocket `/v1/ws`: authentication, framing, limits, and routing of each message.

One `Envelope` per frame; the first frame's form (binary protobuf or JSON text) is the form the
server answers in. A bad frame gets an error envelope and the connection carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from google.protobuf import empty_pb2
from nats.aio.subscription import Subscription
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from tandem.common import subjects
from tandem.common.aio import TaskSet
from tandem.common.bus import Bus
from tandem.common.envelope import decode_frame, encode_frame, error_envelope, new_envelope, trace_context
from tandem.common.errors import NoRespondersError, TandemError
from tandem.signaling.auth import Identity, verify_token
from tandem.signaling.coordinator import CallCoordinator
from tandem.signaling.presence import PresenceWriter
from tandem.signaling.ratelimit import TokenBucket
from tandem.signaling.settings import Settings
from tandem.v1 import calls_pb2, client_pb2, common_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("tandem.signaling")

CONNECTIONS = Gauge("tandem_signaling_connections", "Open client sockets", ["role"])
CLIENT_ERRORS = Counter("tandem_signaling_client_errors_total", "Error envelopes sent to clients", ["code"])

S = common_pb2
# Close code when the client never authenticates (RFC 6455 "policy violation").
CLOSE_POLICY = 1008


@dataclass
class Connection:
    ws: web.WebSocketResponse
    identity: Identity
    as_json: bool
    limiter: TokenBucket
    calls: set[str] = field(default_factory=set)

    async def send(self, envelope: client_pb2.Envelope) -> None:
        if self.ws.closed:
            return
        frame = encode_frame(envelope, as_json=self.as_json)
        if isinstance(frame, str):
            await self.ws.send_str(frame)
        else:
            await self.ws.send_bytes(frame)

    def track(self, envelope: client_pb2.Envelope) -> None:
        """Remember the calls this socket is part of, for hang-up when it drops."""
        if envelope.HasField("invite"):
            self.calls.add(envelope.invite.call_id)
        elif envelope.HasField("call_update"):
            update = envelope.call_update
            if update.state == S.CALL_STATE_ENDED:
                self.calls.discard(update.call_id)
            else:
                self.calls.add(update.call_id)


class Gateway:
    def __init__(self, settings: Settings, bus: Bus, coordinator: CallCoordinator, presence: PresenceWriter):
        self.settings = settings
        self.bus = bus
        self.coordinator = coordinator
        self.presence = presence
        self.sockets: collections.Counter[str] = collections.Counter()
        self.tasks = TaskSet("gateway")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.settings.heartbeat_interval_s,
            # aiohttp closes the socket above this; our own, lower limit answers with an error instead.
            max_msg_size=4 * self.settings.max_message_bytes,
        )
        await ws.prepare(request)
        conn = await self._authenticate(ws, request.headers.get("Authorization", ""))
        if conn is None:
            return ws
        role = "host" if conn.identity.is_host else "shopper"
        CONNECTIONS.labels(role).inc()
        self.sockets[conn.identity.user_id] += 1

        async def deliver(envelope: client_pb2.Envelope, _: str) -> None:
            conn.track(envelope)
            await conn.send(envelope)

        sub = await self.bus.subscribe(
            subjects.join(subjects.SIGNALING_DELIVER, conn.identity.user_id), client_pb2.Envelope, deliver
        )
        try:
            await conn.send(
                new_envelope(
                    welcome=client_pb2.Welcome(
                        user_id=conn.identity.user_id, role=conn.identity.role,
                        heartbeat_interval_s=int(self.settings.heartbeat_interval_s),
                        max_message_bytes=self.settings.max_message_bytes,
                    )
                )
            )  # fmt: skip
            await self._receive(conn)
        finally:
            CONNECTIONS.labels(role).dec()
            await self._closed(conn, sub)
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse, authorization: str) -> Connection | None:
        """The connection's identity, from the upgrade's bearer token or a Hello as first frame."""
        s = self.settings
        key, audience = s.jwt_key.get_secret_value(), s.jwt_audience
        try:
            msg = await ws.receive(timeout=s.hello_timeout_s)
        except TimeoutError:
            await self._refuse(ws, TandemError("no hello within the time limit", code=S.ERROR_CODE_UNAUTHENTICATED))
            return None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        as_json = msg.type == WSMsgType.TEXT
        try:
            envelope = decode_frame(msg.data, max_bytes=s.max_message_bytes)
            if authorization.startswith("Bearer "):
                identity = verify_token(authorization.removeprefix("Bearer "), key, audience)
            elif envelope.HasField("hello"):
                identity = verify_token(envelope.hello.token, key, audience)
            else:
                raise TandemError("the first message must be a hello", code=S.ERROR_CODE_UNAUTHENTICATED)
        except TandemError as exc:
            await self._refuse(ws, exc, as_json=as_json)
            return None
        return Connection(ws, identity, as_json, TokenBucket(s.rate_per_s, s.rate_burst))

    async def _refuse(self, ws: web.WebSocketResponse, error: TandemError, *, as_json: bool = True) -> None:
        CLIENT_ERRORS.labels(error.code_name).inc()
        frame = encode_frame(error_envelope(error), as_json=as_json)
        await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))
        await ws.close(code=CLOSE_POLICY, message=error.code_name.encode())

    async def _receive(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            correlation_id = ""
            try:
                if not conn.limiter.allow():
                    raise TandemError("too many messages; slow down", code=S.ERROR_CODE_RATE_LIMITED)
                envelope = decode_frame(msg.data, max_bytes=self.settings.max_message_bytes)
                correlation_id = envelope.id
                with tracer.start_as_current_span(
                    f"client {envelope.WhichOneof('payload')}", context=trace_context(envelope), kind=SpanKind.SERVER
                ):
                    await self._dispatch(conn, envelope)
            except TandemError as exc:
                CLIENT_ERRORS.labels(exc.code_name).inc()
                await conn.send(error_envelope(exc, correlation_id))
            except Exception:
                logger.exception("client message failed", extra={"user_id": conn.identity.user_id})
                CLIENT_ERRORS.labels("ERROR_CODE_INTERNAL").inc()
                await conn.send(error_envelope(TandemError("internal error"), correlation_id))

    async def _dispatch(self, conn: Connection, envelope: client_pb2.Envelope) -> None:
        who = conn.identity
        kind = envelope.WhichOneof("payload")
        if kind == "ping":
            await conn.send(new_envelope(envelope.id, pong=client_pb2.Pong(sent_at_ms=envelope.ping.sent_at_ms)))
        elif kind == "hello":
            raise TandemError("already authenticated", code=S.ERROR_CODE_INVALID_STATE)
        elif kind == "host_availability":
            if not who.is_host:
                raise TandemError("only hosts announce availability", code=S.ERROR_CODE_PERMISSION_DENIED)
            await self.presence.announce(who.user_id, envelope.host_availability)
        elif kind == "consult_request":
            await self.coordinator.consult(who, envelope)
        elif kind in CallCoordinator.CALL_PAYLOADS:
            await self.route(who, envelope)
        elif kind is None:
            raise TandemError("the envelope has no payload", code=S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE)
        else:
            raise TandemError(f"{kind} is sent by the server, not by clients", code=S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE)

    async def route(self, who: Identity, envelope: client_pb2.Envelope) -> None:
        """Hand a call message to the call's owner: this instance, or another over NATS."""
        kind = envelope.WhichOneof("payload")
        assert kind is not None
        call_id = getattr(envelope, kind).call_id
        if not call_id or "." in call_id or " " in call_id:
            raise TandemError("a valid call_id is required", code=S.ERROR_CODE_INVALID_ARGUMENT)
        command = calls_pb2.CallCommand(user_id=who.user_id, role=who.role, envelope=envelope)
        if call_id in self.coordinator.calls:
            await self.coordinator.handle(command)
            return
        try:
            await self.bus.request(
                subjects.join(subjects.SIGNALING_CALL, call_id), command, empty_pb2.Empty,
                timeout_s=max(self.settings.request_timeout_s, 10.0),
            )  # fmt: skip
        except NoRespondersError:
            raise TandemError(f"no call {call_id}", code=S.ERROR_CODE_NOT_FOUND) from None

    async def _closed(self, conn: Connection, sub: Subscription) -> None:
        user_id = conn.identity.user_id
        self.sockets[user_id] -= 1
        await sub.unsubscribe()
        if self.sockets[user_id] > 0:
            return
        del self.sockets[user_id]
        if conn.identity.is_host:
            await self.presence.gone(user_id)
        for call_id in conn.calls:
            self.tasks.spawn(self._hang_up_after_grace(conn.identity, call_id), name=f"grace-{call_id}")

    async def _hang_up_after_grace(self, who: Identity, call_id: str) -> None:
        await asyncio.sleep(self.settings.reconnect_grace_s)
        if self.sockets[who.user_id] > 0:
            return  # reconnected
        hangup = client_pb2.Hangup(call_id=call_id, reason=S.END_REASON_PEER_DISCONNECTED)
        try:
            await self.route(who, new_envelope(hangup=hangup))
        except TandemError as exc:
            logger.info("disconnect hang-up not applied", extra={"call_id": call_id, "error": str(exc)})
