"""One consultation is one trace: the shopper app's trace context continues through signaling,
matchmaking, the media worker and orders, as exported over OTLP to a collector."""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tandem.devstack.bots import Bot, dev_token
from tandem.devstack.consultation import run_consultation
from tandem.devstack.nats import NatsServer
from tandem.devstack.ports import free_port
from tandem.devstack.stack import standard_services, supervised

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PREFIXES = {"signaling": "SIGNALING", "matchmaking": "MATCHMAKING", "media-worker": "MEDIA", "orders": "ORDERS"}


class Collector:
    """A minimal OTLP/HTTP traces receiver: span names per (trace id, service)."""

    def __init__(self) -> None:
        self.spans: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))

    async def receive(self, request: web.Request) -> web.Response:
        export = trace_service_pb2.ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans[span.trace_id.hex()][attributes["service.name"]].add(span.name)
        return web.Response(body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def traced(
    module_nats: NatsServer, module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, Collector]]:
    collector = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    export = {
        name: {f"TANDEM_{prefix}_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
        for name, prefix in PREFIXES.items()
    }
    specs = standard_services([free_port() for _ in range(4)], module_database, **export)
    log: Path = tmp_path_factory.mktemp("traced") / "services.log"
    try:
        async with supervised(specs, module_nats.url, log, drain_timeout_s=3):
            yield specs[0].url, collector
    finally:
        await runner.cleanup()


async def test_a_consultation_is_one_trace_across_every_service(traced: tuple[str, Collector]) -> None:
    url, collector = traced
    trace_id = secrets.token_hex(16)
    shopper = Bot(
        url, await dev_token(url, "shopper", "shopper-traced"), name="shopper",
        traceparent=f"00-{trace_id}-{secrets.token_hex(8)}-01",
    )  # fmt: skip
    host = Bot(url, await dev_token(url, "host", "host-traced"), name="host")
    await shopper.connect()
    await host.connect()
    try:
        await run_consultation(host, shopper, language="yo")
    finally:
        await shopper.close()
        await host.close()

    expected = {
        "tandem-signaling": {"client consult_request", "call accept", "call checkout"},  # the host's accept too
        "tandem-matchmaking": {"serve tandem.v1.match.request.local.yo"},
        "tandem-media-worker": {"serve tandem.v1.media.allocate.local"},
        "tandem-orders": {"serve tandem.v1.orders.product_card", "serve tandem.v1.orders.checkout"},
    }

    def missing() -> dict[str, set[str]]:
        return {service: names - collector.spans[trace_id][service] for service, names in expected.items()}

    for _ in range(100):  # spans are exported in batches
        if not any(missing().values()):
            break
        await asyncio.sleep(0.1)
    assert not any(missing().values()), f"missing from the trace: {missing()}; seen: {dict(collector.spans[trace_id])}"
