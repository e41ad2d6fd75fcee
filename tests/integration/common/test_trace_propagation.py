"""One trace across a NATS hop between two processes."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tandem.common.bus import Bus
from tandem.devstack.nats import NatsServer
from tandem.v1 import common_pb2

pytestmark = pytest.mark.integration

# The consumer process: serves one request, and answers with the trace id its handler's span has,
# as recorded by its own in-memory exporter.
CONSUMER = textwrap.dedent(
    """
    import asyncio, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from tandem.common.bus import Bus, BusConfig
    from tandem.v1 import common_pb2

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    async def main():
        bus = Bus(BusConfig(servers=[sys.argv[1]], name="consumer"))
        await bus.connect()
        done = asyncio.Event()

        async def handle(_):
            with trace.get_tracer("consumer").start_as_current_span("consumer work"):
                pass
            done.set()
            return common_pb2.Error()

        await bus.serve("t.traced", common_pb2.Error, handle, queue="q")
        await bus.client.flush()
        print("ready", flush=True)
        await done.wait()
        await bus.close()
        for span in exporter.get_finished_spans():
            print(span.name, format(span.context.trace_id, "032x"), flush=True)

    asyncio.run(main())
    """
)


async def test_a_span_continues_in_a_consumer_in_another_process(bus: Bus, nats_server: NatsServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    trace._TRACER_PROVIDER = None  # let this test install its own provider
    trace.set_tracer_provider(provider)

    consumer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONSUMER, nats_server.url, stdout=asyncio.subprocess.PIPE
    )
    assert consumer.stdout is not None
    assert (await asyncio.wait_for(consumer.stdout.readline(), 30)).strip() == b"ready"

    with tracer.start_as_current_span("shopper taps consult") as root:
        await bus.request("t.traced", common_pb2.Error(), common_pb2.Error, timeout_s=5)
    out, _ = await asyncio.wait_for(consumer.communicate(), 30)

    trace_id = format(root.get_span_context().trace_id, "032x")
    consumer_spans = [line.rsplit(" ", 1) for line in out.decode().splitlines() if line]
    assert sorted(name for name, _ in consumer_spans) == ["consumer work", "serve t.traced"]
    assert {span_trace for _, span_trace in consumer_spans} == {trace_id}
    assert {s.name for s in exporter.get_finished_spans()} == {"shopper taps consult", "request t.traced"}
