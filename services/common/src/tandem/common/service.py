"""The life of a service process: settings, logging, tracing, NATS, HTTP, graceful shutdown.

A service implements `ServiceApp`; its `__main__` calls `run_service`. On SIGTERM the process
reports not-ready, stops taking work (`app.stop`), drains NATS, and exits 0 within
`drain_timeout_s`. Bad configuration exits 2 with one line naming the setting.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import NoReturn, Protocol, TypeVar

from aiohttp import web
from prometheus_client import Gauge, Histogram

from tandem.common import subjects
from tandem.common.aio import LoopLagMonitor, cancel_and_wait
from tandem.common.bus import Bus, BusConfig, BusStatus
from tandem.common.errors import ConfigError
from tandem.common.http import HttpServer, PortInUseError
from tandem.common.log import configure_logging
from tandem.common.settings import ServiceSettings, load_settings
from tandem.common.telemetry import configure_tracing

logger = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_NATS_LOST = 3

NATS_CONNECTED = Gauge("tandem_nats_connected", "1 while the NATS connection is up")
LOOP_LAG = Histogram(
    "tandem_event_loop_lag_seconds",
    "How late the event loop ran a timer that should have fired immediately",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)

S = TypeVar("S", bound=ServiceSettings)


class ServiceApp(Protocol):
    """What a service plugs into the runtime."""

    def routes(self) -> Iterable[web.AbstractRouteDef]:
        """Extra HTTP routes served beside /healthz, /readyz and /metrics."""
        ...

    async def start(self, bus: Bus, http: HttpServer) -> None:
        """Subscribe and begin work; called once NATS is connected. May add readiness checks."""
        ...

    async def stop(self) -> None:
        """Stop taking new work and finish (or hand over) what is in flight."""
        ...

    async def close(self) -> None:
        """Release resources (database pools) once NATS has drained: nothing uses them any more."""
        ...


class BaseApp:
    """Defaults for `ServiceApp`: no extra routes, nothing to drain."""

    def routes(self) -> Iterable[web.AbstractRouteDef]:
        return ()

    async def start(self, bus: Bus, http: HttpServer) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None


def instance_name(settings: ServiceSettings, service: str) -> str:
    """The process's name on the bus: a subject token (a host name's dots become dashes)."""
    host = subjects.as_identifier(socket.gethostname(), max_chars=64)
    return settings.instance_id or f"{service}-{host}-{os.getpid()}"


def bus_config(settings: ServiceSettings, name: str) -> BusConfig:
    """The NATS connection of a process named `name`, from its settings."""
    return BusConfig(
        servers=settings.nats_servers,
        name=name,
        connect_timeout_s=settings.nats_connect_timeout_s,
        reconnect_wait_s=settings.nats_reconnect_wait_s,
        max_reconnect_attempts=settings.nats_max_reconnect_attempts,
        request_timeout_s=settings.request_timeout_s,
        max_payload_bytes=settings.max_payload_bytes,
    )


async def serve(service: str, settings: S, app_factory: Callable[[S, str], ServiceApp]) -> int:
    """Run one service until SIGTERM/SIGINT; returns the process exit code."""
    instance = instance_name(settings, service)
    app = app_factory(settings, instance)
    bus = Bus(bus_config(settings, instance))
    stopping = asyncio.Event()
    draining = False
    bus.on_status.append(lambda status: NATS_CONNECTED.set(status is BusStatus.CONNECTED))

    def stop_when_nats_is_lost(status: BusStatus) -> None:
        if status is BusStatus.CLOSED and not draining:
            stopping.set()

    bus.on_status.append(stop_when_nats_is_lost)

    http = HttpServer(settings.http_host, settings.http_port, app.routes())
    started = False
    http.add_check("nats", lambda: bus.connected)
    http.add_check("started", lambda: started)
    http.add_check("accepting", lambda: not draining)
    try:
        await http.start()
    except PortInUseError as exc:
        print(f"{service}: {exc} (TANDEM_*_HTTP_PORT)", file=sys.stderr)
        return EXIT_CONFIG

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    logger.info("service listening", extra={"service": service, "instance": instance, "http": http.url})

    lag = LoopLagMonitor(interval_s=0.25)
    lag.observers.append(LOOP_LAG.observe)
    lag_task = asyncio.create_task(lag.run())
    connect = asyncio.create_task(bus.connect())
    stop_wait = asyncio.create_task(stopping.wait())
    await asyncio.wait({connect, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    if connect.done() and not stopping.is_set():
        await app.start(bus, http)
        # What is alive once started (modules, clients, compiled kernels) lives as long as the
        # process: frozen out of the collector's sight, its full collections — which stall the event
        # loop, 120-490 ms in a loaded media worker before — scan only what calls and requests made.
        gc.freeze()
        started = True
        logger.info("service started", extra={"service": service})
        await stopping.wait()
    await cancel_and_wait(connect, stop_wait)

    lost_nats = bus.status is BusStatus.CLOSED
    draining = True
    deadline = time.monotonic() + settings.drain_timeout_s
    logger.info("service stopping", extra={"service": service, "drain_timeout_s": settings.drain_timeout_s})
    if started:
        try:
            await asyncio.wait_for(app.stop(), settings.drain_timeout_s)
        except TimeoutError:
            logger.warning("drain timed out; stopping with work in flight", extra={"service": service})
    await bus.close(timeout_s=max(0.5, deadline - time.monotonic()))
    if started:
        await app.close()
    await http.stop()
    await cancel_and_wait(lag_task)
    if lost_nats:
        logger.error("gave up reconnecting to nats", extra={"service": service})
        return EXIT_NATS_LOST
    logger.info("service stopped", extra={"service": service})
    return 0


def settings_or_exit(service: str, settings_cls: type[S]) -> S:
    """The process's settings; invalid ones exit 2 with one line naming the variable."""
    try:
        return load_settings(settings_cls)
    except ConfigError as exc:
        print(f"{service}: {exc.message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


def run_service(service: str, settings_cls: type[S], app_factory: Callable[[S, str], ServiceApp]) -> NoReturn:
    """Entry point of a service's `__main__`."""
    settings = settings_or_exit(service, settings_cls)
    configure_logging(settings.log_format, settings.log_level)
    tracing = configure_tracing(f"tandem-{service}", instance_name(settings, service), settings.otlp_endpoint)
    code = 0
    try:
        code = asyncio.run(serve(service, settings, app_factory))
    except KeyboardInterrupt:
        pass
    finally:
        if tracing is not None:
            tracing.shutdown()  # flush the spans still batched
    sys.exit(code)
