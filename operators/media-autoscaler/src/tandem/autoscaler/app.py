"""The operator process: NATS for load reports and drains, kopf for the MediaWorkerPools."""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf

from tandem.autoscaler.handlers import build_registry
from tandem.autoscaler.kube import Kube
from tandem.autoscaler.load import LoadBook
from tandem.autoscaler.reconcile import PoolScaler
from tandem.autoscaler.settings import Settings
from tandem.common.aio import cancel_and_wait
from tandem.common.bus import Bus
from tandem.common.http import HttpServer
from tandem.common.service import bus_config, instance_name

logger = logging.getLogger(__name__)


async def run_operator(
    settings: Settings,
    *,
    stop_flag: asyncio.Event | threading.Event,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until `stop_flag` is set; `ready_flag` is set once kopf watches the pools.

    Besides kopf's liveness endpoint, the shared HTTP server answers `/readyz` (NATS connected and
    kopf watching) and `/metrics` on `TANDEM_AUTOSCALER_HTTP_PORT`."""
    bus = Bus(bus_config(settings, instance_name(settings, "media-autoscaler")))
    watching = asyncio.Event()
    http = HttpServer(settings.http_host, settings.http_port)
    http.add_check("nats", lambda: bus.connected)
    http.add_check("kopf", watching.is_set)
    await http.start()
    await bus.connect()
    kube = Kube.connect(settings.kube_api_url)
    # Created before kopf starts, so kopf leaves it alone; it relays readiness to the caller.
    relay = asyncio.create_task(_relay_ready(watching, ready_flag))
    try:
        book = LoadBook()
        await book.subscribe(bus)
        scaler = PoolScaler(kube, bus, book, capacity_stale_after_s=settings.capacity_stale_after_s)
        registry = build_registry(scaler, kube_api_url=settings.kube_api_url)
        liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
        logger.info("operator starting", extra={"namespace": settings.namespace})
        await kopf.operator(
            registry=registry,
            clusterwide=False,
            namespaces=[settings.namespace],
            standalone=True,
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=watching,
        )
    finally:
        await cancel_and_wait(relay)
        await kube.close()
        await bus.close()
        await http.stop()


async def _relay_ready(watching: asyncio.Event, ready_flag: asyncio.Event | threading.Event | None) -> None:
    await watching.wait()
    if ready_flag is not None:
        ready_flag.set()
