"""OpenTelemetry: tracer provider setup and W3C trace context on every hop.

Export is off unless an OTLP endpoint is configured, and a collector that is down never blocks
or fails a service: spans are batched and dropped on export errors. Without an endpoint no span is
recorded (nobody would read it): OpenTelemetry's API without an SDK passes the incoming trace
context on as it came, so the trace continues past the service and its log lines keep the ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


def configure_tracing(service_name: str, instance_id: str, otlp_endpoint: str) -> TracerProvider | None:
    """Install the process-wide tracer provider exporting to `otlp_endpoint` (call once, from a
    service's main); None, and nothing installed, without an endpoint."""
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.instance.id": instance_id})
    )
    exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces", timeout=2)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def tracing_on() -> bool:
    """Whether a tracer provider is installed (`configure_tracing`, or a test's): spans are recorded."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Write the current span's W3C trace context into message headers."""
    propagate.inject(headers)
    return headers


def extract_context(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context carried by message headers (an empty context when there is none)."""
    return propagate.extract(dict(headers or {}))
