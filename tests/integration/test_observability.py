"""Observability over a real NATS: /metrics that move with what the services do, a request's
correlation id and trace carried through the outbox and the stream to the consumer it causes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import nats
import pytest
from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from services.points.app import create_app as create_points
from services.registry.app import create_app as create_registry
from services.reporting.app import create_app as create_reporting
from shared.bus import (
    DEAD_LETTER_STREAM,
    StreamSettings,
    context_stream,
    dead_letter_stream,
    ensure_stream,
    retry_stream,
)
from shared.catalog import catalog
from shared.envelope import EventEnvelope
from shared.events.registry import VolunteerRegistered
from shared.logs import BeaconJsonFormatter
from shared.metrics import ServiceMetrics
from shared.replay import StreamFollower
from shared.settings import ServiceSettings
from shared.subscriber import Reactor, subscribe, subscriptions
from shared.tracing import MAX_BATCH_LINKS, TRACEPARENT, configure_tracing
from tests.factories import event_store, registered, registered_envelope, resident_id
from tests.infra.city import COMMUNITY, STAFF, TREE, ok, registry_settings, running
from tests.infra.nats import streams_exist
from tests.infra.waiting import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parsed(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
    return parsed(answer.text)


async def scraped(metrics: ServiceMetrics) -> Samples:
    return parsed((await metrics.exposition()).decode())


async def now(value: Any) -> Any:
    """`value` as a probe for `eventually`."""
    return value


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def volunteer(n: int) -> dict[str, Any]:
    return {
        "name": "李四", "id_number": resident_id(f"3703031985060{n}002"), "phone": f"1381234{n:04d}",
        "community_code": COMMUNITY, "consent": True,
    }  # fmt: skip


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span the process ends while the test runs (the services set the SDK provider up)."""
    exporter = InMemorySpanExporter()
    configure_tracing("test")  # as a service's runtime does, if none has yet in this process
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    yield exporter
    exporter.shutdown()  # the processor stays on the provider; a shut exporter keeps nothing


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The process's log lines as the services write them (JSON), the subscribers' debug ones too."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(BeaconJsonFormatter("test"))
    root, subscriber_log = logging.getLogger(), logging.getLogger("shared.subscriber")
    level = subscriber_log.level
    subscriber_log.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)
    subscriber_log.setLevel(level)


@contextlib.asynccontextmanager
async def registry_with_tree(nats_url: str, data: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Registry with the small city's tree: a client as the city's admin, and its app."""
    app = create_registry(registry_settings(nats_url, f"sqlite:///{data / 'registry.db'}"))
    async with running(app, "registry") as registry:
        await ok(await registry.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
        yield registry, app


@contextlib.asynccontextmanager
async def registry_and_points(
    nats_url: str, data: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Any]]:
    """Registry (with the small city's tree) and points, which follows registry's volunteers;
    the points app."""
    await streams_exist(nats_url, "dispatch")  # points also follows dispatch: there, nobody writes to it
    async with registry_with_tree(nats_url, data) as (registry, _):
        app = create_points(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{data / 'points.db'}"))
        async with running(app, "points") as points:
            await eventually(lambda: points.get("/readyz"), lambda r: r.status_code == 200)
            yield registry, points, app


def ended(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


async def test_a_request_s_trace_and_correlation_id_reach_the_consumer_of_the_event_it_causes(
    nats_url: str, tmp_path: Path, spans: InMemorySpanExporter, json_logs: io.StringIO
) -> None:
    correlation_id = uuid4()
    async with registry_and_points(nats_url, tmp_path) as (registry, _, points_app):
        registered = await registry.post(
            "/volunteers", json=volunteer(1), headers={**STAFF, "X-Correlation-Id": str(correlation_id)}
        )
        assert registered.status_code == 201, registered.text
        number = registered.json()["volunteer_number"]
        assert registered.headers["X-Correlation-Id"] == str(correlation_id)

        consumed = await eventually(
            lambda: now(ended(spans, "points VolunteerRegistered")), lambda found: len(found) == 1
        )
        runtime = points_app.state.runtime
        outbox = runtime.store.schema.outbox
        async with runtime.engine.connect() as conn:
            opened = (await conn.execute(select(outbox.c.body, outbox.c.traceparent))).one()

    (request,) = ended(spans, "POST /volunteers")
    assert request.kind == SpanKind.SERVER and request.attributes["http.route"] == "/volunteers"
    (consumer,) = consumed
    # The consumer's span is the child of the request's: the traceparent went row → header → span.
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.context.trace_id == request.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == request.context.span_id
    # And what the consumer recorded in turn carries the same trace on, and the same correlation id.
    trace_id = format(request.context.trace_id, "032x")
    assert opened.traceparent.split("-")[1] == trace_id
    account_opened = EventEnvelope.model_validate_json(opened.body)
    assert account_opened.type == "PointsAccountOpened" and account_opened.payload["volunteer_number"] == number
    assert account_opened.correlation_id == correlation_id

    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    handled = [
        r for r in records if r["logger"] == "shared.subscriber" and "handled VolunteerRegistered" in r["message"]
    ]
    assert [(r["correlation_id"], r["trace_id"]) for r in handled] == [(str(correlation_id), trace_id)]


def linked_traces(span: ReadableSpan) -> list[int]:
    return [link.context.trace_id for link in span.links]


async def test_a_request_s_trace_is_linked_from_the_batch_span_of_the_projection_that_folds_its_event(
    nats_url: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    await streams_exist(nats_url, "dispatch", "points")  # reporting follows them too; nobody writes there
    async with registry_with_tree(nats_url, tmp_path) as (registry, _):
        reporting_app = create_reporting(
            ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'reporting.db'}")
        )
        async with running(reporting_app, "reporting"):
            registered = await registry.post("/volunteers", json=volunteer(1), headers=STAFF)
            assert registered.status_code == 201, registered.text
            (request,) = await eventually(lambda: now(ended(spans, "POST /volunteers")), lambda found: len(found) == 1)
            folding = await eventually(
                lambda: now(ended(spans, "projection-figures REGISTRY")),
                lambda found: any(request.context.trace_id in linked_traces(span) for span in found),
            )

    (batch,) = [span for span in folding if request.context.trace_id in linked_traces(span)]
    # Its own trace, linked to the request's (a batch has no one parent).
    assert batch.kind == SpanKind.CONSUMER and batch.parent is None
    assert batch.context.trace_id != request.context.trace_id
    assert batch.attributes["messaging.destination.name"] == "REGISTRY"
    assert batch.attributes["messaging.consumer.group.name"] == "projection-figures"
    assert batch.attributes["messaging.batch.message_count"] >= 1


def traceparent(trace_id: int) -> str:
    return f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-01"


async def test_a_stream_follower_links_its_batch_spans_to_the_events_traces_and_logs_an_event_s_correlation_id(
    nc: Any, js: Any, tmp_path: Path, spans: InMemorySpanExporter, json_logs: io.StringIO
) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    subject = "registry.370303.volunteer.registered"
    traces: dict[int, int] = {}  # stream sequence: the trace its message carries
    failing, unreadable = uuid4(), uuid4()  # correlation ids: of an event that always fails, of one nobody can read
    for n in range(1, 2 * MAX_BATCH_LINKS + 21):
        envelope = registered_envelope(n).model_copy(update={"correlation_id": failing if n == 3 else uuid4()})
        headers = {"Nats-Msg-Id": str(envelope.event_id)}
        if n % 10:  # every tenth carries no trace, and is linked from nothing
            trace_id = random.getrandbits(128) or 1
            headers[TRACEPARENT] = traceparent(trace_id)
        ack = await js.publish(subject, envelope.to_json(), headers=headers, stream="REGISTRY")
        if TRACEPARENT in headers:
            traces[ack.seq] = trace_id
        if n == 50:
            invalid = registered_envelope(9999).model_dump(mode="json") | {"payload": {"volunteer_number": 1}}
            invalid["correlation_id"] = str(unreadable)
            await js.publish(
                subject, json.dumps(invalid).encode(), headers={TRACEPARENT: traceparent(1)}, stream="REGISTRY"
            )
    last = ack.seq
    store = event_store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.create_tables()
    applied: list[str] = []

    async def apply(tx: Any, events: list[tuple[Any, VolunteerRegistered]]) -> None:
        for _, event in events:
            if event.volunteer_number == registered(3).volunteer_number:
                raise RuntimeError("cannot apply V00000003")
            applied.append(event.volunteer_number)

    follower = StreamFollower("traced", store, apply, batch_size=1000, max_attempts=2)
    following = asyncio.ensure_future(follower.follow(nc, "registry"))
    try:
        await eventually(lambda: follower.checkpoint("REGISTRY"), lambda done: done == last, timeout=20)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await store.engine.dispose()

    batches = sorted(ended(spans, "traced REGISTRY"), key=lambda span: span.attributes["beacon.stream_sequence"])
    assert batches and batches[-1].attributes["beacon.stream_sequence"] == last
    previous = 0
    for batch in batches:
        # Each batch links to the traces of the events it applies, in order, the first ones only.
        end = batch.attributes["beacon.stream_sequence"]
        carried = [traces[seq] for seq in range(previous + 1, end + 1) if seq in traces]
        assert linked_traces(batch) == carried[:MAX_BATCH_LINKS]
        assert batch.kind == SpanKind.CONSUMER and batch.parent is None
        previous = end
    assert not any(1 in linked_traces(batch) for batch in batches)  # the unreadable one is applied by none
    # All but the failing one and the unreadable one (a batch that failed was rolled back, then retried).
    assert set(applied) == {registered(n).volunteer_number for n in range(1, 2 * MAX_BATCH_LINKS + 21) if n != 3}

    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    dead_lettered = [r for r in records if r["logger"] == "shared.bus" and "dead-lettered" in r["message"]]
    assert sorted(r["correlation_id"] for r in dead_lettered) == sorted([str(failing), str(unreadable)])
    retried = [r for r in records if r["logger"] == "shared.replay" and "traced applying #" in r["message"]]
    assert retried and {r["correlation_id"] for r in retried} == {str(failing)}
    assert (await js.stream_info(DEAD_LETTER_STREAM)).state.messages == 2


async def test_a_request_without_a_usable_correlation_id_is_given_a_new_one(nats_url: str, tmp_path: Path) -> None:
    async with registry_with_tree(nats_url, tmp_path) as (registry, _):
        plain = await registry.get("/healthz")
        garbled = await registry.get("/healthz", headers={"X-Correlation-Id": "not-a-uuid"})
    given = [UUID(answer.headers["X-Correlation-Id"]) for answer in (plain, garbled)]
    assert given[0] != given[1]


async def test_requests_are_counted_and_timed_by_route_template_not_by_path(nats_url: str, tmp_path: Path) -> None:
    async with registry_with_tree(nats_url, tmp_path) as (registry, _):
        before = await scrape(registry)
        for number in ("V00000001", "V00000002"):
            assert (await registry.get(f"/volunteers/{number}", headers=STAFF)).status_code == 404
        assert (await registry.get("/no/such/route")).status_code == 404
        after = await scrape(registry)
        text = (await registry.get("/metrics")).text

    route = "/volunteers/{number}"
    labels = {"route": route, "method": "GET", "status": "404"}
    assert (value(after, "beacon_http_requests_total", **labels) or 0) - (
        value(before, "beacon_http_requests_total", **labels) or 0
    ) == 2
    assert value(after, "beacon_http_request_duration_seconds_count", route=route, method="GET") == 2
    assert value(after, "beacon_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert "V00000001" not in text and "/no/such/route" not in text


async def test_outbox_depth_counts_the_events_not_yet_published(nats_url: str, tmp_path: Path) -> None:
    async with registry_with_tree(nats_url, tmp_path) as (registry, app):
        runtime = app.state.runtime
        await eventually(lambda: scrape(registry), lambda s: value(s, "beacon_outbox_depth") == 0)
        relayed = value(await scrape(registry), "beacon_outbox_relayed_total")
        (relaying,) = [task for task in runtime._tasks if task.get_name().endswith("outbox relay")]
        runtime.relay.stop()  # the relay publishes nothing more: what is appended now waits
        await relaying
        for n in (1, 2):
            await ok(await registry.post("/volunteers", json=volunteer(n), headers=STAFF))
        waiting = await scrape(registry)
        published = await runtime.relay.publish_pending()
        after = await scrape(registry)

    assert value(waiting, "beacon_outbox_depth") == published >= 2
    assert value(after, "beacon_outbox_depth") == 0
    assert value(after, "beacon_outbox_relayed_total") == relayed + published


async def test_a_dead_lettered_message_is_counted_for_its_consumer(nats_url: str, tmp_path: Path) -> None:
    async with registry_and_points(nats_url, tmp_path) as (_, points, _):
        before = await scrape(points)
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().publish("registry.370303.volunteer.registered", b"{not an envelope", stream="REGISTRY")
        finally:
            await nc.close()
        after = await eventually(
            lambda: scrape(points),
            lambda s: value(s, "beacon_subscriber_messages_total", consumer="points", outcome="dead_lettered") == 1,
        )

    assert value(before, "beacon_subscriber_messages_total", consumer="points", outcome="dead_lettered") == 0
    assert value(before, "beacon_dead_letters", consumer="points") == 0
    assert value(after, "beacon_subscriber_messages_total", consumer="points", outcome="dead_lettered") == 1
    assert value(after, "beacon_dead_letters", consumer="points") == 1
    readings = {dict(labels)["reading"]: v for (name, labels), v in after.items() if name == "beacon_reading_ok"}
    assert readings == {"outbox": 1, "subscribers": 1, "dead letters": 1, "points-ledger": 1, "points-orders": 1}
    assert value(after, "beacon_consumer_lag", consumer="points-registry", stream="REGISTRY") == 0
    assert value(after, "beacon_consumer_lag", consumer="points-ledger", stream="DISPATCH") == 0


async def test_consumer_lag_shows_the_messages_waiting_for_a_subscriber(nats_url: str, tmp_path: Path, js) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    await ensure_stream(js, retry_stream(StreamSettings()))
    store = event_store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.create_tables()
    reactor = Reactor("lagging", store)

    @reactor.on(VolunteerRegistered)
    async def notice(tx: Any, envelope: EventEnvelope, event: VolunteerRegistered) -> None:
        pass

    broker = NatsBroker(nats_url)
    subscribe(broker, reactor, "registry", batch_size=10, max_wait_seconds=0.05)
    # The reactor's durable on registry's stream (its second, on the retry stream, takes sent-back letters).
    (subscription,) = [s for s in subscriptions(broker) if s.stream == "REGISTRY"]
    metrics = ServiceMetrics("test", js=lambda: js)
    metrics.watch_subscriptions(lambda: subscriptions(broker))
    await broker.start()  # creates the durable consumer; stopped at once, it is left with what comes next
    await broker.stop()
    # Its last pull request expired: nothing published now is delivered to the stopped broker.
    await eventually(lambda: js.consumer_info("REGISTRY", subscription.durable), lambda info: info.num_waiting == 0)
    for n in range(3):
        envelope = registered_envelope(100 + n)
        await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream="REGISTRY")

    def lag(samples: Samples) -> float | None:
        return value(samples, "beacon_consumer_lag", consumer=subscription.durable, stream="REGISTRY")

    waiting = await scraped(metrics)
    broker = NatsBroker(nats_url)
    subscribe(broker, reactor, "registry", batch_size=10, max_wait_seconds=0.05)
    await broker.start()
    try:
        caught_up = await eventually(
            lambda: scraped(metrics),
            lambda s: value(s, "beacon_subscriber_messages_total", consumer="lagging", outcome="handled") == 3,
        )
    finally:
        await broker.stop()
        await store.engine.dispose()

    assert lag(waiting) == 3
    assert lag(caught_up) == 0
    assert value(caught_up, "beacon_subscriber_messages_total", consumer="lagging", outcome="handled") == 3


async def test_a_projection_s_folded_events_and_lag_are_measured(nats_url: str, tmp_path: Path, js) -> None:
    for context in ("registry", "dispatch", "points"):
        await ensure_stream(js, context_stream(context, StreamSettings()))
    for n in range(1, 6):
        envelope = registered_envelope(n)
        await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream="REGISTRY")
    app = create_reporting(ServiceSettings(nats_url=nats_url, database_url=f"sqlite:///{tmp_path / 'reporting.db'}"))
    async with running(app, "reporting") as reporting:
        caught_up = await eventually(
            lambda: scrape(reporting),
            lambda s: (
                value(s, "beacon_consumer_lag", consumer="projection-figures", stream="REGISTRY") == 0
                and value(s, "beacon_projection_events_folded_total", projection="figures") == 5
            ),
        )

    assert value(caught_up, "beacon_consumer_lag", consumer="projection-figures", stream="REGISTRY") == 0
    assert value(caught_up, "beacon_projection_events_folded_total", projection="figures") == 5
    assert value(caught_up, "beacon_projection_rebuild_running", projection="figures") == 0
    assert value(caught_up, "beacon_reading_ok", reading="projection-figures") == 1
    assert value(caught_up, "beacon_outbox_depth") is None  # reporting publishes nothing


async def test_a_stream_follower_s_applied_events_and_where_its_time_went_are_measured(
    nats_url: str, tmp_path: Path, js, nc
) -> None:
    await ensure_stream(js, context_stream("registry", StreamSettings()))
    await ensure_stream(js, dead_letter_stream(StreamSettings()))
    for n in range(1, 6):
        envelope = registered_envelope(n)
        await js.publish(catalog.subject_of(envelope), envelope.to_json(), stream="REGISTRY")
    store = event_store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.create_tables()
    seen: list[int] = []

    async def apply(tx: Any, events: list) -> None:
        seen.extend(int(event.volunteer_number[1:]) for _, event in events)

    follower = StreamFollower("following", store, apply, batch_size=2)
    metrics = ServiceMetrics("test", js=lambda: js)
    metrics.watch_follower(follower, "registry")
    task = asyncio.ensure_future(follower.follow(nc, "registry"))
    try:
        caught_up = await eventually(
            lambda: scraped(metrics),
            lambda s: value(s, "beacon_follower_events_applied_total", consumer="following") == 5,
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.engine.dispose()

    assert seen == [1, 2, 3, 4, 5]
    assert value(caught_up, "beacon_follower_events_applied_total", consumer="following") == 5
    assert value(caught_up, "beacon_consumer_lag", consumer="following", stream="REGISTRY") == 0
    for phase in ("decoding", "applying", "committing"):
        assert value(caught_up, "beacon_follower_seconds_total", consumer="following", phase=phase) > 0
