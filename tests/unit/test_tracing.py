"""A batch consumer's span: links to its messages' traces, capped, and no work at all where no
spans are taken."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import ProxyTracerProvider

from shared.tracing import MAX_BATCH_LINKS, TRACEPARENT, _Provider, batch_span, links_to, spans_taken


def carrying(trace_id: int) -> dict[str, str]:
    return {TRACEPARENT: f"00-{trace_id:032x}-{trace_id:016x}-01", "Nats-Msg-Id": str(trace_id)}


def test_links_go_to_the_first_traces_carried_and_stop_reading_there() -> None:
    def headers() -> Iterator[Mapping[str, str] | None]:
        for n in range(1, MAX_BATCH_LINKS + 11):
            yield None if n == 2 else {"Nats-Msg-Id": "no trace"} if n == 3 else carrying(n)
        raise AssertionError("read past the last link")

    links = links_to(headers())

    assert [link.context.trace_id for link in links] == [1, *range(4, MAX_BATCH_LINKS + 3)]
    assert all(link.context.is_remote for link in links)


def test_a_traceparent_that_is_not_one_is_linked_to_nothing() -> None:
    assert links_to([{TRACEPARENT: "00-not-a-trace-01"}, {TRACEPARENT: f"00-{0:032x}-{1:016x}-01"}]) == []


def never_read() -> Iterator[Mapping[str, str] | None]:
    raise AssertionError("a message's headers were read with no spans taken")
    yield  # a generator


@pytest.mark.parametrize("provider", [ProxyTracerProvider(), _Provider()], ids=["none set up", "no exporter"])
def test_where_no_spans_are_taken_a_batch_has_no_span_and_its_messages_are_not_read(
    monkeypatch: pytest.MonkeyPatch, provider: trace.TracerProvider
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)

    with batch_span("follower STREAM", never_read(), {"messaging.system": "nats"}) as span:
        assert span is None
        assert not trace.get_current_span().get_span_context().is_valid


def test_spans_are_taken_once_something_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _Provider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert not spans_taken()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert spans_taken()
