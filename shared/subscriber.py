"""The one way a service reacts to another context's events: a FastStream pull subscriber.

Durable, explicitly acknowledged after the commit, idempotent through the inbox, retried with
backoff up to a limit, then dead-lettered with the reason while the rest of the stream goes on.
FastStream's default ack policy for NATS would terminate a message on any exception (a points
credit lost to a passing database error), so the policy here is MANUAL and every path acks,
naks with a delay, or dead-letters and terminates.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.subscriber.usecases import stream_pull_subscriber as _pull_loop
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as ServerAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind

from shared.bus import RETRY_STREAM, dead_letter, retry_subject, stream_name
from shared.catalog import Event, EventCatalog, EventRejected
from shared.catalog import catalog as default_catalog
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore, Transaction
from shared.logs import correlated
from shared.tracing import parent_from, tracer

log = logging.getLogger(__name__)

# FastStream 0.7.8's pull loop catches nats.errors.TimeoutError only, but nats-py 2.16's `fetch`
# can raise a bare asyncio.TimeoutError when a partial batch's follow-up fetch runs out of time.
# That escapes the loop, the batch already fetched is dropped unprocessed and comes back only
# after `ack_wait`. Catching the base class (nats' TimeoutError derives from it) keeps the batch.
_pull_loop.TimeoutError = TimeoutError  # type: ignore[attr-defined]

Handler = Callable[[Transaction, EventEnvelope, Any], Awaitable[None]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.first_delay_seconds * 2 ** max(attempt - 1, 0), self.max_delay_seconds)


@dataclass
class Work:
    """A delivery this reactor applies: the message, its envelope and payload, the handler."""

    msg: Msg
    envelope: EventEnvelope
    event: Event
    handler: Handler


class Reactor:
    """Handlers of one service for events of other contexts, applied exactly once each."""

    def __init__(
        self,
        name: str,
        store: EventStore,
        catalog: EventCatalog = default_catalog,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.name = name
        self.store = store
        self.catalog = catalog
        self.retry = retry
        self.handlers: dict[str, Handler] = {}
        # Plain counts (the hot path adds to them), read when /metrics is scraped (shared.metrics).
        self.handled = 0
        self.failed = 0
        self.dead_lettered = 0

    def outcomes(self) -> dict[str, int]:
        return {"handled": self.handled, "failed": self.failed, "dead_lettered": self.dead_lettered}

    def on(self, model: type[Event]) -> Callable[[H], H]:
        def register(handler: H) -> H:
            self.handlers[model.spec.name] = handler
            return handler

        return register

    async def process(self, js: JetStreamContext, msgs: list[Msg]) -> None:
        """Apply a batch in one transaction; if anything fails, fall back to one at a time."""
        work: list[Work] = []
        not_ours: list[Msg] = []
        for msg in msgs:
            try:
                envelope = self.catalog.parse_envelope(msg.data)
                handler = self.handlers.get(envelope.type)
                if handler is None:
                    not_ours.append(msg)
                    continue
                work.append(Work(msg, envelope, self.catalog.payload_of(envelope), handler))
            except EventRejected as rejected:
                await self._reject(js, msg, rejected.reason)
        await asyncio.gather(*(msg.ack() for msg in not_ours))
        if not work:
            return
        if len(work) == 1:
            await self._one_at_a_time(js, work)
            return
        try:
            await self.apply_batch(work)
        except Exception:
            await self._one_at_a_time(js, work)
        else:
            self.handled += len(work)
            await _ack_all([item.msg for item in work])

    async def apply_batch(self, work: list[Work]) -> None:
        """Apply a batch of two or more in one transaction, all or nothing: a failure falls back
        to one at a time. A reactor may do the same work more cheaply (reads before the write
        lock, say), as long as each event is claimed in the inbox with its effects."""
        async with self.store.transaction() as tx:
            for item in work:
                with self._handling(item):
                    await self._apply(tx, item)

    @contextmanager
    def _handling(self, item: Work) -> Iterator[None]:
        """The message's correlation id on the log lines and the events its handling makes, and a
        span that continues the trace of whatever published it (shared.outbox)."""
        envelope = item.envelope
        with (
            correlated(envelope.correlation_id),
            tracer.start_as_current_span(
                f"{self.name} {envelope.type}",
                context=parent_from(item.msg.headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.destination.name": item.msg.subject,
                    "messaging.consumer.group.name": self.name,
                    "beacon.event_id": str(envelope.event_id),
                    "beacon.correlation_id": str(envelope.correlation_id),
                },
            ),
        ):
            yield

    async def _apply(self, tx: Transaction, item: Work) -> None:
        if await tx.claim(self.name, item.envelope.event_id):
            await item.handler(tx, item.envelope, item.event)
            log.debug("%s: handled %s %s", self.name, item.envelope.type, item.envelope.event_id)

    async def _one_at_a_time(self, js: JetStreamContext, work: list[Work]) -> None:
        # Later messages are not held back by a failing one: handlers must not depend on order
        # across aggregates, and redelivery after a delay reorders in any case.
        for item in work:
            with self._handling(item):
                try:
                    async with self.store.transaction() as tx:
                        await self._apply(tx, item)
                except EventRejected as rejected:
                    await self._reject(js, item.msg, rejected.reason)
                    continue
                except Exception as error:
                    await self._retry_later(js, item.msg, error)
                    continue
                self.handled += 1
                await _ack_all([item.msg])

    async def _retry_later(self, js: JetStreamContext, msg: Msg, error: Exception) -> None:
        attempt = msg.metadata.num_delivered
        if attempt >= self.retry.max_attempts:
            await self._reject(js, msg, f"failed {attempt} times, last: {error!r}")
            return
        self.failed += 1
        delay = self.retry.delay(attempt)
        log.warning("%s: %s (attempt %d), retrying in %.1fs", self.name, error, attempt, delay)
        await msg.nak(delay=delay)

    async def _reject(self, js: JetStreamContext, msg: Msg, reason: str) -> None:
        await dead_letter(js, msg, consumer=self.name, reason=reason)
        self.dead_lettered += 1
        await msg.term()


async def _ack_all(msgs: list[Msg]) -> None:
    # Confirmed acks, pipelined; one that fails only means a redelivery the inbox absorbs.
    results = await asyncio.gather(*(msg.ack_sync() for msg in msgs), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("ack failed, the event will be redelivered and skipped: %r", result)


@dataclass(frozen=True)
class Subscription:
    """A reactor's durable consumer on a stream (for /metrics: its counts and its lag)."""

    reactor: Reactor
    stream: str
    durable: str


_subscriptions: weakref.WeakKeyDictionary[NatsBroker, list[Subscription]] = weakref.WeakKeyDictionary()


def subscriptions(broker: NatsBroker) -> list[Subscription]:
    """What `subscribe` attached to `broker`."""
    return list(_subscriptions.get(broker, ()))


def subscribe(
    broker: NatsBroker,
    reactor: Reactor,
    context: str,
    *,
    batch_size: int = 200,
    max_wait_seconds: float = 0.1,
    ack_wait_seconds: float = 30.0,
    subject: str | None = None,
) -> None:
    """Subscribe `reactor` to the stream of `context` with a durable named after both; `subject`
    narrows it to the subjects the reactor applies (the server then sends nothing else). The
    reactor's dead letters, when an operator sends them back (`beacon dlq retry`), come through a
    second durable on the retry stream, `<reactor>-retry` (the stream must exist: ServiceRuntime
    declares it)."""
    retries_attached = any(s.reactor is reactor and s.stream == RETRY_STREAM for s in subscriptions(broker))
    timing = {"batch_size": batch_size, "max_wait_seconds": max_wait_seconds, "ack_wait_seconds": ack_wait_seconds}
    _attach(broker, reactor, stream_name(context), subject or f"{context}.>", f"{reactor.name}-{context}", **timing)
    if not retries_attached:
        _attach(broker, reactor, RETRY_STREAM, retry_subject(reactor.name), f"{reactor.name}-retry", **timing)


def _attach(
    broker: NatsBroker,
    reactor: Reactor,
    stream: str,
    subject: str,
    durable: str,
    *,
    batch_size: int,
    max_wait_seconds: float,
    ack_wait_seconds: float,
) -> None:
    _subscriptions.setdefault(broker, []).append(Subscription(reactor, stream, durable))
    consumer_config = ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=ServerAckPolicy.EXPLICIT,
        ack_wait=ack_wait_seconds,
        # A few more than our own limit: a message that kills the process every time still
        # stops being redelivered; the handler dead-letters at `max_attempts`.
        max_deliver=reactor.retry.max_attempts + 3,
        max_ack_pending=max(1000, batch_size * 4),
    )

    @broker.subscriber(
        subject,
        stream=JStream(stream, declare=False),
        durable=durable,
        config=consumer_config,
        pull_sub=PullSub(batch_size=batch_size, timeout=max_wait_seconds, batch=True),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=None,  # type: ignore[arg-type]  # the connection's own (shared/bus.py inbox_prefix), not `_INBOX`
        title=durable,
        description=f"{reactor.name} applies {', '.join(sorted(reactor.handlers))} from {stream}",
    )
    async def handle(message: NatsMessage) -> None:
        js = broker.config.connection_state.stream
        await reactor.process(js, message.raw_message)
