"""A service's Prometheus metrics: requests counted as they are served, the rest read when scraped.

Each app has its own registry (several services share a test process). The hot paths keep plain
counters on their own objects (the relay's `published_total`, a reactor's `handled`, a
follower's `applied_total`, updated once per batch); a scrape reads those, the outbox depth from
the store, and consumer lag and dead letters from JetStream, each reading bounded in time. A
reading that fails leaves its samples out and says so in `beacon_reading_ok`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from shared.bus import DEAD_LETTER_STREAM, stream_name

if TYPE_CHECKING:
    from shared.eventstore import EventStore
    from shared.outbox import OutboxRelay
    from shared.replay import Projector, StreamFollower
    from shared.subscriber import Subscription

log = logging.getLogger(__name__)

READING_TIMEOUT_SECONDS = 1.0
UNMATCHED_ROUTE = "<unmatched>"  # a path no route takes: one label, not one per path tried


class Readings:
    """The samples one scrape reads, by metric family."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def gauge(self, name: str, documentation: str, value: float, **labels: str) -> None:
        self._add(GaugeMetricFamily, name, documentation, value, labels)

    def counter(self, name: str, documentation: str, value: float, **labels: str) -> None:
        self._add(CounterMetricFamily, name, documentation, value, labels)

    def _add(self, kind: type, name: str, documentation: str, value: float, labels: dict[str, str]) -> None:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = kind(name, documentation, labels=list(labels))
        family.add_metric(list(labels.values()), value)

    def families(self) -> list[Metric]:
        return list(self._families.values())

    def merge(self, other: Readings) -> None:
        for name, family in other._families.items():
            if name in self._families:
                self._families[name].samples.extend(family.samples)
            else:
                self._families[name] = family


Reader = Callable[[Readings], Awaitable[None]]


class _LastReadings:
    """The registry's view of the latest scrape's readings."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape: nothing to describe beforehand

    def collect(self) -> Iterable[Metric]:
        return self.families


class ServiceMetrics:
    def __init__(self, service: str, js: Callable[[], JetStreamContext]) -> None:
        self.service = service
        self._js = js
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "beacon_http_requests", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "beacon_http_request_duration_seconds", "Time to answer an HTTP request, by route template and method.",
            ["route", "method"], registry=self.registry,
        )  # fmt: skip
        # Each route's children, bound once: `labels()` takes a lock and builds a key a request.
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._last = _LastReadings()
        self.registry.register(self._last)  # type: ignore[arg-type]
        self._readers: dict[str, Reader] = {}
        self._consumers: set[str] = set()  # followers' and projectors' (reactors' are in _subscriptions)
        self._subscriptions: Callable[[], list[Subscription]] = list

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """An HTTP request answered: counted by route template, method and status, and timed."""
        children = self._answered.get((route, method, status))
        if children is None:
            children = self._answered[(route, method, status)] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)

    def read_at_scrape(self, name: str, reader: Reader) -> None:
        self._readers[name] = reader

    async def exposition(self) -> bytes:
        """Prometheus' text format, with every reading taken now."""
        readings = Readings()
        results = await asyncio.gather(*(self._read(name, reader, readings) for name, reader in self._readers.items()))
        for name, ok in zip(self._readers, results, strict=True):
            readings.gauge(
                "beacon_reading_ok", "1 if the scrape could read this part, else 0.", float(ok), reading=name
            )
        self._last.families = readings.families()
        return generate_latest(self.registry)

    async def _read(self, name: str, reader: Reader, readings: Readings) -> bool:
        # Into a scratch copy: a reading that times out half-way adds nothing.
        mine = Readings()
        try:
            await asyncio.wait_for(reader(mine), READING_TIMEOUT_SECONDS)
        except Exception as error:  # noqa: BLE001  (whatever failed, its samples are left out)
            log.debug("metrics: reading %s failed: %r", name, error)
            return False
        readings.merge(mine)
        return True

    # -- what a runtime has ---------------------------------------------------------------------

    def watch_outbox(self, store: EventStore, relay: Callable[[], OutboxRelay | None]) -> None:
        async def outbox(readings: Readings) -> None:
            readings.gauge("beacon_outbox_depth", "Events stored but not yet published.", await store.outbox_depth())
            running = relay()
            if running is not None:
                readings.counter(
                    "beacon_outbox_relayed", "Events the relay published (since the process started).",
                    running.published_total,
                )  # fmt: skip

        self.read_at_scrape("outbox", outbox)

    def watch_subscriptions(self, subscriptions: Callable[[], list[Subscription]]) -> None:
        self._subscriptions = subscriptions

        async def subscribers(readings: Readings) -> None:
            found = subscriptions()
            for s in found:
                for outcome, count in s.reactor.outcomes().items():
                    readings.counter(
                        "beacon_subscriber_messages",
                        "Messages a subscriber handled (applied or already applied), failed (to be retried) "
                        "or dead-lettered (since the process started).",
                        count, consumer=s.reactor.name, outcome=outcome,
                    )  # fmt: skip
            infos = await asyncio.gather(*(self._js().consumer_info(s.stream, s.durable) for s in found))
            for s, info in zip(found, infos, strict=True):
                labels = {"consumer": s.durable, "stream": s.stream}
                readings.gauge(
                    "beacon_consumer_lag", "Messages in the stream not yet delivered to the consumer.",
                    info.num_pending or 0, **labels,
                )  # fmt: skip
                readings.gauge(
                    "beacon_consumer_ack_pending", "Messages delivered to the consumer and not yet acknowledged.",
                    info.num_ack_pending or 0, **labels,
                )  # fmt: skip

        self.read_at_scrape("subscribers", subscribers)

    def watch_dead_letters(self) -> None:
        async def dead_letters(readings: Readings) -> None:
            info = await self._js().stream_info(DEAD_LETTER_STREAM, subjects_filter="deadletter.>")
            counts = dict.fromkeys(self._consumers | {s.reactor.name for s in self._subscriptions()}, 0)
            for subject, count in (info.state.subjects or {}).items():
                consumer = subject.split(".")[1]  # deadletter.<consumer>.<original subject>
                if consumer in counts:
                    counts[consumer] += count
            for consumer, count in sorted(counts.items()):
                readings.gauge(
                    "beacon_dead_letters", "Messages of this service's consumers in the dead-letter stream.",
                    count, consumer=consumer,
                )  # fmt: skip

        self.read_at_scrape("dead letters", dead_letters)

    # -- what a service adds --------------------------------------------------------------------

    def watch_follower(self, follower: StreamFollower, context: str) -> None:
        """A stream follower (shared.replay): events applied, where its time went, and how far
        behind the stream it is."""
        stream = stream_name(context)
        self._consumers.add(follower.name)

        async def following(readings: Readings) -> None:
            readings.counter(
                "beacon_follower_events_applied", "Events a stream follower applied (since the process started).",
                follower.applied_total, consumer=follower.name,
            )  # fmt: skip
            for phase, seconds in follower.seconds.items():
                readings.counter(
                    "beacon_follower_seconds", "Seconds a stream follower spent decoding, applying and committing.",
                    seconds, consumer=follower.name, phase=phase,
                )  # fmt: skip
            done, info = await asyncio.gather(follower.checkpoint(stream), self._js().stream_info(stream))
            readings.gauge(
                "beacon_consumer_lag", "Messages in the stream not yet delivered to the consumer.",
                max(info.state.last_seq - done, 0), consumer=follower.name, stream=stream,
            )  # fmt: skip

        self.read_at_scrape(follower.name, following)

    def watch_projector(self, projector: Projector) -> None:
        """A projection (shared.replay): events folded, lag per stream, and a rebuild's progress."""
        name, consumer = projector.projection.name, projector.consumer_name
        streams = [stream_name(context) for context in projector.projection.contexts]
        self._consumers.add(consumer)

        async def projecting(readings: Readings) -> None:
            readings.counter(
                "beacon_projection_events_folded", "Events a projection folded, live or rebuilding, in this process.",
                projector.applied_total, projection=name,
            )  # fmt: skip
            rebuilding = projector.rebuilding
            readings.gauge(
                "beacon_projection_rebuild_running", "1 while the projection is being rebuilt.",
                float(rebuilding is not None), projection=name,
            )  # fmt: skip
            active = await projector.active_generation()
            lasts = await asyncio.gather(*(self._js().stream_info(stream) for stream in streams))
            for stream, info in zip(streams, lasts, strict=True):
                last = info.state.last_seq
                done = await projector.checkpoint(active, stream)
                readings.gauge(
                    "beacon_consumer_lag", "Messages in the stream not yet delivered to the consumer.",
                    max(last - done, 0), consumer=consumer, stream=stream,
                )  # fmt: skip
                if rebuilding is not None:
                    # From the checkpoints the rebuild commits: worker processes' progress too.
                    readings.gauge(
                        "beacon_projection_rebuild_position", "Stream sequence a running rebuild has folded up to.",
                        await projector.checkpoint(rebuilding, stream), projection=name, stream=stream,
                    )  # fmt: skip
                    readings.gauge(
                        "beacon_projection_rebuild_target", "Stream sequence a running rebuild folds up to (now).",
                        last, projection=name, stream=stream,
                    )  # fmt: skip

        self.read_at_scrape(consumer, projecting)
