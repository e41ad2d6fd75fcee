"""The HTTP side every service has: `/healthz`, `/readyz`, `/metrics`, plus the service's own routes."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], bool]


class PortInUseError(OSError):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"{host}:{port} is already in use; choose another port")
        self.host = host
        self.port = port


class HttpServer:
    """Liveness answers as long as the process runs; readiness is every named check passing."""

    def __init__(self, host: str, port: int, routes: Iterable[web.AbstractRouteDef] = ()) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.checks: dict[str, ReadinessCheck] = {}
        self.app = web.Application(client_max_size=1024 * 1024)
        self.app.add_routes(
            [
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/metrics", self._metrics),
                *routes,
            ]
        )
        self._runner: web.AppRunner | None = None

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def failing_checks(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check()]

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        failing = self.failing_checks()
        status = 503 if failing else 200
        return web.json_response({"ready": not failing, "failing": failing}, status=status)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.host, self.requested_port) from None
            raise
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
