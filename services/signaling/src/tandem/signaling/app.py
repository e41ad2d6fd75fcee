"""Signaling wired to HTTP and the bus: `/v1/ws`, and in dev mode `/dev/token`, `/demo` and `/static/`
(the demo page's files, among them the demo catalog's product images)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from aiohttp import web

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.errors import TandemError
from tandem.common.http import HttpServer
from tandem.common.service import BaseApp
from tandem.signaling.auth import ROLES, issue_token
from tandem.signaling.callstore import CallStore, Leases, ShopperCalls
from tandem.signaling.coordinator import CallCoordinator
from tandem.signaling.gateway import Gateway
from tandem.signaling.presence import PresenceWriter
from tandem.signaling.settings import Settings

STATIC = resources.files("tandem.signaling") / "static"
# A call record not written for this long is gone (no call lasts half a day without a change).
CALL_RECORD_TTL_S = 12 * 3600.0


class SignalingApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance
        self.gateway: Gateway | None = None
        self.coordinator: CallCoordinator | None = None

    def routes(self) -> Iterable[web.AbstractRouteDef]:
        yield web.get("/v1/ws", self._ws)
        if self.settings.dev_mode:
            yield web.get("/dev/token", self._dev_token)
            yield web.get("/demo", self._demo)
            yield web.static("/static", Path(str(STATIC)))

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.gateway is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return await self.gateway.handle(request)

    async def _dev_token(self, request: web.Request) -> web.Response:
        role, user = request.query.get("role", ""), request.query.get("user", "")
        try:
            subjects.identifier("user", user, max_chars=64)
        except TandemError as exc:
            raise web.HTTPBadRequest(text=f"use ?role=shopper|host&user=<id>: {exc.message}") from None
        if role not in ROLES:
            raise web.HTTPBadRequest(text="use ?role=shopper|host&user=<id>: role must be shopper or host")
        token = issue_token(user, role, self.settings.jwt_key.get_secret_value(), self.settings.jwt_audience)
        # Dev mode only: a web client served from elsewhere (a dev server) may fetch tokens.
        return web.json_response(
            {"token": token, "user": user, "role": role}, headers={"Access-Control-Allow-Origin": "*"}
        )

    async def _demo(self, _: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "demo.html").read_text(), content_type="text/html")

    async def start(self, bus: Bus, http: HttpServer) -> None:
        for stream in subjects.STREAMS:
            await bus.ensure_stream(stream)
        presence = PresenceWriter(bus, self.instance, self.settings.region)
        store = CallStore(await bus.key_value(subjects.CALLS_BUCKET, ttl_s=CALL_RECORD_TTL_S))
        shoppers = ShopperCalls(await bus.key_value(subjects.SHOPPER_CALLS_BUCKET, ttl_s=CALL_RECORD_TTL_S), store)
        leases = Leases(await bus.key_value(subjects.SIGNALING_LEASES_BUCKET), self.instance, self.settings.lease_ttl_s)
        self.coordinator = CallCoordinator(self.settings, bus, store, shoppers, leases)
        await self.coordinator.start()
        self.gateway = Gateway(self.settings, bus, self.coordinator, presence)

    async def stop(self) -> None:
        # Calls first go to the other instances; then the sockets close and their clients
        # reconnect to another instance and resume there. Nobody is hung up.
        if self.coordinator is not None:
            await self.coordinator.hand_over_all()
        if self.gateway is not None:
            await self.gateway.close_sockets()


def build_app(settings: Settings, instance: str) -> SignalingApp:
    return SignalingApp(settings, instance)
