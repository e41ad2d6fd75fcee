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
from tandem.common.bus import Bus
from tandem.common.service import bus_config, instance_name

logger = logging.getLogger(__name__)


async def run_operator(
    settings: Settings,
    *,
    stop_flag: asyncio.Event | threading.Event,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until `stop_flag` is set; `ready_flag` is set once kopf watches the pools."""
    bus = Bus(bus_config(settings, instance_name(settings, "media-autoscaler")))
    await bus.connect()
    kube = Kube.connect(settings.kube_api_url)
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
            ready_flag=ready_flag,
        )
    finally:
        await kube.close()
        await bus.close()
