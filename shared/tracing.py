"""Traces: a span per request and per message handled, linked across services by the W3C
`traceparent` that an event's outbox row keeps and its NATS message carries. A span's ids are
made always (they join logs and traces); the span is recorded only where something takes
spans (an exporter, a test's processor): else it is a bare context that carries the trace on."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
EXPORTERS = ("", "console", "otlp")
# A batch span links to its first messages' traces only: a batch of a thousand would otherwise
# carry a thousand links (the SDK keeps 128 at most in any case).
MAX_BATCH_LINKS = 100

_propagator = TraceContextTextMapPropagator()
_exporting: set[str] = set()
# Delegates to the provider `configure_tracing` sets; a no-op one until then (a CLI, a worker).
tracer = trace.get_tracer("beacon")


class _Provider(TracerProvider):
    """The SDK's provider, which knows whether anything takes its spans."""

    listened = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.listened = True


def configure_tracing(service: str, exporter: str = "") -> None:
    """The process's tracer provider, once (the first service named in a process names its
    spans' resource); `exporter` sends spans out: "console", or "otlp" (to OTEL_EXPORTER_OTLP_*;
    needs the opentelemetry-exporter-otlp-proto-http package)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"trace exporter is one of {', '.join(repr(e) for e in EXPORTERS)}, not {exporter!r}")
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = _Provider(resource=Resource.create({"service.name": f"beacon-{service}"}))
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


def _recording() -> bool:
    # Another kind of provider (none set up: a CLI) decides for itself, as before.
    return getattr(trace.get_tracer_provider(), "listened", True)


@contextmanager
def server_span(name: str, headers: Mapping[str, str] | None, kind: SpanKind = SpanKind.SERVER) -> Iterator[Span]:
    """The current span while a request or message is handled, continuing the trace its
    `headers` carry (a new one without). Recorded only where spans are taken; else a bare span
    context (an SDK span costs ~90 µs a request: attributes checked, events kept, ended) whose
    ids the logs, the events caused (`current_traceparent`) and the next service see the same,
    with the caller's sampling flag, or sampled for a new trace (as the SDK's default sampler)."""
    parent = parent_from(headers)
    if _recording():
        with tracer.start_as_current_span(name, context=parent, kind=kind, record_exception=True) as span:
            yield span
        return
    caller = trace.get_current_span(parent).get_span_context() if parent is not None else None
    if caller is not None and caller.is_valid:
        trace_id, flags, state = caller.trace_id, caller.trace_flags, caller.trace_state
    else:
        trace_id, flags, state = random.getrandbits(128) or 1, TraceFlags(TraceFlags.SAMPLED), None
    span_id = random.getrandbits(64) or 1
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags, trace_state=state))
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    finally:
        otel_context.detach(token)


def spans_taken() -> bool:
    """Whether anything takes spans (an exporter, a test's processor). Unlike `_recording`, no
    provider set up (a CLI) means no: its spans would be dropped."""
    provider = trace.get_tracer_provider()
    return isinstance(provider, TracerProvider) and getattr(provider, "listened", True)


def links_to(carried: Iterable[Mapping[str, str] | None], limit: int = MAX_BATCH_LINKS) -> list[Link]:
    """Links to the traces that the first `limit` of these messages' headers carry (a message
    without a `traceparent` is passed over); reads no further than that."""
    links: list[Link] = []
    if limit <= 0:
        return links
    for headers in carried:
        if not headers or TRACEPARENT not in headers:
            continue
        context = trace.get_current_span(_propagator.extract(headers)).get_span_context()
        if context.is_valid:
            links.append(Link(context))
            if len(links) >= limit:
                break
    return links


@contextmanager
def batch_span(
    name: str, carried: Iterable[Mapping[str, str] | None], attributes: Mapping[str, str | int]
) -> Iterator[Span | None]:
    """The current span while a batch consumer applies a batch: a new trace of its own, linked
    to the trace of each of its first `MAX_BATCH_LINKS` messages (OpenTelemetry's way for a
    batch, which has no one parent); the events it causes continue it. Where no spans are taken
    there is none (None), and `carried`, which may be lazy, is never read: a follower's hot path
    does no work per message for traces nobody keeps."""
    if not spans_taken():
        yield None
        return
    with tracer.start_as_current_span(
        name,
        context=Context(),
        kind=SpanKind.CONSUMER,
        links=links_to(carried),
        attributes=attributes,
        record_exception=True,
    ) as span:
        yield span
