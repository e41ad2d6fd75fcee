"""The client WebSocket `/v1/ws`: authentication, framing, limits, and routing of each message.

One `Envelope` per frame; the first frame's form (binary protobuf or JSON text) is the form the
server answers in. A bad frame gets an error envelope and the connection carries on; only a
failed authentication, or a frame over the hard size limit, closes it (after an error frame).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

import nats.errors
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from nats.aio.subscription import Subscription
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from tandem.common import subjects
from tandem.common.aio import TaskSet, cancel_and_wait
from tandem.common.bus import Bus
from tandem.common.envelope import (
    MalformedFrameError,
    decode_frame,
    encode_frame,
    error_envelope,
    new_envelope,
    trace_context,
)
from tandem.common.errors import TandemError
from tandem.signaling.auth import Identity, verify_token
from tandem.signaling.coordinator import CALL_PAYLOADS, CallCoordinator
from tandem.signaling.errors import (
    AlreadyAuthenticatedError,
    FrameOverHardLimitError,
    NotForClientsError,
    RateLimitedError,
    RoleError,
    UnauthenticatedError,
)
from tandem.signaling.presence import PresenceWriter
from tandem.signaling.ratelimit import TokenBucket
from tandem.signaling.settings import Settings
from tandem.signaling.turn import ice_servers
from tandem.signaling.validation import ClientValidator
from tandem.v1 import calls_pb2, client_pb2, common_pb2

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("tandem.signaling")

CONNECTIONS = Gauge("tandem_signaling_connections", "Open client sockets", ["role"])
CLIENT_ERRORS = Counter("tandem_signaling_client_errors_total", "Error envelopes sent to clients", ["code"])

S = common_pb2
# Close code when the client never authenticates (RFC 6455 "policy violation").
CLOSE_POLICY = 1008


class ClientSocket(web.WebSocketResponse):
    """aiohttp closes a socket whose frame passes `max_msg_size` (1009) without a word; this socket
    says why first, in the client's form."""

    def __init__(self, *, heartbeat: float, max_frame_bytes: int) -> None:
        super().__init__(heartbeat=heartbeat, max_msg_size=max_frame_bytes)
        self.max_frame_bytes = max_frame_bytes
        self.as_json = True

    async def send_envelope(self, envelope: client_pb2.Envelope) -> None:
        if self.closed:
            return
        frame = encode_frame(envelope, as_json=self.as_json)
        await (self.send_str(frame) if isinstance(frame, str) else self.send_bytes(frame))

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed:
            error = FrameOverHardLimitError(self.max_frame_bytes)
            CLIENT_ERRORS.labels(error.code_name).inc()
            await self.send_envelope(error_envelope(error))
        return await super().close(code=code, message=message, drain=drain)


@dataclass
class Connection:
    ws: ClientSocket
    identity: Identity
    limiter: TokenBucket
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    calls: set[str] = field(default_factory=set)

    async def send(self, envelope: client_pb2.Envelope) -> None:
        await self.ws.send_envelope(envelope)

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
        self.validator = ClientValidator(settings.client_limits)
        self.turn = settings.turn_config
        self.sockets: collections.Counter[str] = collections.Counter()
        self._open: set[ClientSocket] = set()
        self.tasks = TaskSet("gateway")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = ClientSocket(heartbeat=self.settings.heartbeat_interval_s, max_frame_bytes=self.settings.max_frame_bytes)
        await ws.prepare(request)
        self._open.add(ws)
        try:
            return await self._serve(ws, request)
        finally:
            self._open.discard(ws)

    async def close_sockets(self) -> None:
        """On shutdown: close every socket as "going away" (1001); clients reconnect to another
        instance and resume their calls there. No hang-up follows a socket closed this way."""
        for ws in list(self._open):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down; reconnect")
        await self.tasks.cancel_all()

    async def _serve(self, ws: ClientSocket, request: web.Request) -> web.WebSocketResponse:
        authenticated = await self._authenticate(ws, request.headers.get("Authorization", ""))
        if authenticated is None:
            return ws
        conn, hello, first_frame = authenticated
        role = "host" if conn.identity.is_host else "shopper"
        CONNECTIONS.labels(role).inc()
        self.sockets[conn.identity.user_id] += 1

        async def deliver(envelope: client_pb2.Envelope, _: str) -> None:
            conn.track(envelope)
            await conn.send(envelope)

        sub = await self.bus.subscribe(
            subjects.join(subjects.SIGNALING_DELIVER, conn.identity.user_id), client_pb2.Envelope, deliver
        )
        logger.info("client connected", extra={"user_id": conn.identity.user_id, "session_id": conn.session_id})
        refresher: asyncio.Task[None] | None = None
        try:
            await conn.send(
                new_envelope(
                    hello.id if hello is not None else "",
                    welcome=client_pb2.Welcome(
                        user_id=conn.identity.user_id, role=conn.identity.role, session_id=conn.session_id,
                        heartbeat_interval_s=int(self.settings.heartbeat_interval_s),
                        max_message_bytes=self.settings.max_message_bytes,
                        ice_servers=self._ice_servers(conn),
                    ),
                )
            )  # fmt: skip
            if self.turn.urls:
                refresher = self.tasks.spawn(self._refresh_ice_servers(conn), name=f"turn-{conn.session_id}")
            if hello is not None and hello.hello.resume_call_id:
                # A reconnecting client: the call's owner sends its state, cart and last card again.
                await self._answer(conn, hello.id, self.route(conn.identity, hello))
            if first_frame is not None:
                await self._on_frame(conn, first_frame)
            async for msg in conn.ws:
                await self._on_frame(conn, msg)
        finally:
            CONNECTIONS.labels(role).dec()
            if refresher is not None:
                await cancel_and_wait(refresher)
            await self._closed(conn, sub)
        return ws

    async def _refresh_ice_servers(self, conn: Connection) -> None:
        """New TURN credentials before the last ones expire, for as long as the socket is open."""
        while True:
            await asyncio.sleep(self.turn.refresh_after_s)
            await conn.send(new_envelope(ice_servers=self._ice_servers(conn)))

    def _ice_servers(self, conn: Connection) -> client_pb2.IceServers:
        return ice_servers(self.turn, conn.identity.user_id, time.time())

    async def _authenticate(
        self, ws: ClientSocket, authorization: str
    ) -> tuple[Connection, client_pb2.Envelope | None, WSMessage | None] | None:
        """The connection's identity, from the upgrade's bearer token or a hello as first frame;
        with the hello (answered by the welcome) or, with a bearer token, the first frame to handle."""
        s = self.settings
        key, audience = s.jwt_key.get_secret_value(), s.jwt_audience
        try:
            identity = verify_token(authorization.removeprefix("Bearer "), key, audience) if authorization else None
            try:
                # The first frame sets the form of every answer, so even a bearer's welcome waits for it.
                msg = await ws.receive(timeout=s.hello_timeout_s)
            except TimeoutError:
                raise UnauthenticatedError("no first frame within the time limit") from None
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None
            ws.as_json = msg.type == WSMsgType.TEXT
            hello: client_pb2.Envelope | None = None
            if identity is None:
                hello = decode_frame(msg.data, max_bytes=s.max_message_bytes)
                if not hello.HasField("hello"):
                    raise UnauthenticatedError("the first message must be a hello")
                identity = verify_token(hello.hello.token, key, audience)
                self.validator.check_id(hello)
                self.validator.check(hello)
                first_frame = None
            else:
                first_frame = msg
        except TandemError as exc:
            await self._refuse(ws, exc)
            return None
        conn = Connection(ws, identity, TokenBucket(s.rate_per_s, s.rate_burst))
        return conn, hello, first_frame

    async def _refuse(self, ws: ClientSocket, error: TandemError) -> None:
        CLIENT_ERRORS.labels(error.code_name).inc()
        await ws.send_envelope(error_envelope(error))
        await ws.close(code=CLOSE_POLICY, message=error.code_name.encode())

    async def _on_frame(self, conn: Connection, msg: WSMessage) -> None:
        """Handle one client frame; whatever goes wrong is answered with an error envelope."""
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return
        correlation_id = ""
        try:
            if not conn.limiter.allow():
                raise RateLimitedError(self.settings.rate_per_s, self.settings.rate_burst)
            try:
                envelope = decode_frame(msg.data, max_bytes=self.settings.max_message_bytes)
            except MalformedFrameError as exc:
                correlation_id = exc.envelope_id
                raise
            correlation_id = self.validator.check_id(envelope)
            self.validator.check(envelope)
            kind = envelope.WhichOneof("payload")
            with tracer.start_as_current_span(f"client {kind}", context=trace_context(envelope), kind=SpanKind.SERVER):
                await self._answer(conn, correlation_id, self._dispatch(conn, envelope))
        except TandemError as exc:
            CLIENT_ERRORS.labels(exc.code_name).inc()
            await conn.send(error_envelope(exc, correlation_id))

    async def _answer(self, conn: Connection, correlation_id: str, work: Awaitable[None]) -> None:
        """Run a client's request; its errors become error envelopes, a bug an INTERNAL error."""
        try:
            await work
        except TandemError as exc:
            CLIENT_ERRORS.labels(exc.code_name).inc()
            await conn.send(error_envelope(exc, correlation_id))
        except Exception:
            logger.exception(
                "client message failed", extra={"user_id": conn.identity.user_id, "session_id": conn.session_id}
            )
            CLIENT_ERRORS.labels("ERROR_CODE_INTERNAL").inc()
            await conn.send(error_envelope(TandemError("internal error"), correlation_id))

    async def _dispatch(self, conn: Connection, envelope: client_pb2.Envelope) -> None:
        who = conn.identity
        kind = envelope.WhichOneof("payload")
        if kind == "ping":
            await conn.send(new_envelope(envelope.id, pong=client_pb2.Pong(sent_at_ms=envelope.ping.sent_at_ms)))
        elif kind == "hello":
            raise AlreadyAuthenticatedError
        elif kind == "host_availability":
            if not who.is_host:
                raise RoleError("only hosts announce availability")
            await self.presence.announce(who.user_id, envelope.host_availability)
        elif kind == "consult_request":
            await self.coordinator.consult(who, envelope)
        elif kind in CALL_PAYLOADS:
            await self.route(who, envelope)
        elif kind is None:
            raise NotForClientsError(None)
        else:
            raise NotForClientsError(kind)

    async def route(
        self, who: Identity, envelope: client_pb2.Envelope, *, disconnected_at: float | None = None
    ) -> None:
        """Hand a call message to the call's owner (`CallCoordinator.to_owner`)."""
        command = calls_pb2.CallCommand(user_id=who.user_id, role=who.role, envelope=envelope)
        if disconnected_at is not None:
            command.disconnected_at.FromNanoseconds(round(disconnected_at * 1e9))
        await self.coordinator.to_owner(command)

    async def _closed(self, conn: Connection, sub: Subscription) -> None:
        user_id = conn.identity.user_id
        self.sockets[user_id] -= 1
        with contextlib.suppress(nats.errors.Error):  # the connection is gone, and the subscription with it
            await sub.unsubscribe()
        if self.sockets[user_id] > 0:
            return
        del self.sockets[user_id]
        if conn.identity.is_host:
            try:
                await self.presence.gone(user_id)
            except (TandemError, nats.errors.Error) as exc:
                logger.warning("host presence not cleared", extra={"user_id": user_id, "error": str(exc)})
        closed_at = time.time()
        for call_id in conn.calls:
            self.tasks.spawn(self._hang_up_after_grace(conn.identity, call_id, closed_at), name=f"grace-{call_id}")

    async def _hang_up_after_grace(self, who: Identity, call_id: str, closed_at: float) -> None:
        await asyncio.sleep(self.settings.reconnect_grace_s)
        if self.sockets[who.user_id] > 0:
            return  # reconnected here; one that resumed elsewhere is known to the call's owner
        hangup = client_pb2.Hangup(call_id=call_id, reason=S.END_REASON_PEER_DISCONNECTED)
        try:
            await self.route(who, new_envelope(hangup=hangup), disconnected_at=closed_at)
        except TandemError as exc:
            logger.info("disconnect hang-up not applied", extra={"call_id": call_id, "error": str(exc)})
