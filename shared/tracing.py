"""Traces: a span per request and per message handled, linked across services by the W3C
`traceparent` that an event's outbox row keeps and its NATS message carries. Spans are made
always (their ids join logs and traces); they leave the process only where an exporter is set."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
EXPORTERS = ("", "console", "otlp")

_propagator = TraceContextTextMapPropagator()
_exporting: set[str] = set()
# Delegates to the provider `configure_tracing` sets; a no-op one until then (a CLI, a worker).
tracer = trace.get_tracer("beacon")


def configure_tracing(service: str, exporter: str = "") -> None:
    """The process's tracer provider, once (the first service named in a process names its
    spans' resource); `exporter` sends spans out: "console", or "otlp" (to OTEL_EXPORTER_OTLP_*;
    needs the opentelemetry-exporter-otlp-proto-http package)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"trace exporter is one of {', '.join(repr(e) for e in EXPORTERS)}, not {exporter!r}")
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": f"beacon-{service}"}))
        trace.set_tracer_provider(provider)
    if exporter and exporter not in _exporting:
        provider.add_span_processor(BatchSpanProcessor(_exporter(exporter)))
        _exporting.add(exporter)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError("the otlp trace exporter needs the opentelemetry-exporter-otlp-proto-http package") from None
    return OTLPSpanExporter()  # type: ignore[no-any-return]


def current_traceparent() -> str | None:
    """The `traceparent` of the span being handled now, for the events it causes; None outside one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def parent_from(headers: Mapping[str, str] | None) -> Context | None:
    """The trace context a message or request carries, for the span that handles it; None (a
    new trace) when it carries none."""
    if not headers or TRACEPARENT not in headers:
        return None
    return _propagator.extract(headers)
