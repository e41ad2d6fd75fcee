"""Signaling wired to HTTP and the bus: `/v1/ws`, and in dev mode `/dev/token` and `/demo`."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

from aiohttp import web

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.http import HttpServer
from tandem.common.service import BaseApp
from tandem.signaling.auth import ROLES, issue_token
from tandem.signaling.coordinator import CallCoordinator
from tandem.signaling.gateway import Gateway
from tandem.signaling.presence import PresenceWriter
from tandem.signaling.settings import Settings

STATIC = resources.files("tandem.signaling") / "static"


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

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.gateway is None:
            raise web.HTTPServiceUnavailable(text="starting")
        return await self.gateway.handle(request)

    async def _dev_token(self, request: web.Request) -> web.Response:
        role, user = request.query.get("role", ""), request.query.get("user", "")
        if role not in ROLES or not user or len(user) > 64 or not user.replace("-", "").replace("_", "").isalnum():
            raise web.HTTPBadRequest(text="use ?role=shopper|host&user=<letters, digits, - or _>")
        token = issue_token(user, role, self.settings.jwt_key.get_secret_value(), self.settings.jwt_audience)
        return web.json_response({"token": token, "user": user, "role": role})

    async def _demo(self, _: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "demo.html").read_text(), content_type="text/html")

    async def start(self, bus: Bus, http: HttpServer) -> None:
        for stream in subjects.STREAMS:
            await bus.ensure_stream(stream)
        presence = PresenceWriter(bus, self.instance, self.settings.region)
        self.coordinator = CallCoordinator(self.settings, bus)
        self.gateway = Gateway(self.settings, bus, self.coordinator, presence)

    async def stop(self) -> None:
        if self.coordinator is not None:
            await self.coordinator.hang_up_all()
        if self.gateway is not None:
            await self.gateway.tasks.cancel_all()


def build_app(settings: Settings, instance: str) -> SignalingApp:
    return SignalingApp(settings, instance)
