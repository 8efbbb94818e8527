"""NATS JetStream: our streams, how they are declared, and the dead-letter stream.

Each bounded context owns one stream on `<context>.>`; only the owner declares it. Streams keep
every event forever (reporting replays them from sequence 1) and refuse deletes and purges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

CONTEXTS = ("registry", "dispatch", "points")
DEAD_LETTER_STREAM = "DEADLETTER"

# Headers a dead letter carries besides the original body.
REASON = "Beacon-Reason"
CONSUMER = "Beacon-Consumer"
ORIGINAL_STREAM = "Beacon-Stream"
ORIGINAL_SEQUENCE = "Beacon-Stream-Sequence"
ORIGINAL_SUBJECT = "Beacon-Subject"
DELIVERIES = "Beacon-Deliveries"


@dataclass(frozen=True)
class StreamSettings:
    replicas: int = 1
    # Must outlast the relay's retry horizon: a row published but not yet marked before a crash
    # is published again on restart and must be recognised as a duplicate.
    duplicate_window_seconds: float = 3600.0


def inbox_prefix(service: str) -> str:
    """Where a service's replies arrive: its own inboxes, so that its NATS user may read no other's
    (deploy/nats/users.conf)."""
    return f"_INBOX.{service}"


def stream_name(context: str) -> str:
    return context.upper()


def stream_config(name: str, subjects: list[str], settings: StreamSettings) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_seconds,
        deny_delete=True,
        deny_purge=True,
    )


def context_stream(context: str, settings: StreamSettings) -> StreamConfig:
    return stream_config(stream_name(context), [f"{context}.>"], settings)


def dead_letter_stream(settings: StreamSettings) -> StreamConfig:
    return stream_config(DEAD_LETTER_STREAM, ["deadletter.>"], settings)


_COMPARED = ("subjects", "retention", "max_age", "storage", "num_replicas", "duplicate_window", "deny_delete", "deny_purge")


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one to exactly this configuration."""
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created stream %s on %s", config.name, config.subjects)
        return
    current = info.config
    if any(getattr(current, field) != getattr(config, field) for field in _COMPARED):
        await js.update_stream(config)
        log.info("updated stream %s", config.name)


async def dead_letter(js: JetStreamContext, msg: Msg, *, consumer: str, reason: str) -> None:
    """Copy a message we will not apply into the dead-letter stream, with why.

    Idempotent: the copy's message id is the consumer and the original stream position.
    """
    meta = msg.metadata
    stream, sequence = meta.stream, meta.sequence.stream
    headers = {
        "Nats-Msg-Id": f"{consumer}:{stream}:{sequence}",
        REASON: reason[:4000].replace("\r", " ").replace("\n", " "),
        CONSUMER: consumer,
        ORIGINAL_STREAM: stream,
        ORIGINAL_SEQUENCE: str(sequence),
        ORIGINAL_SUBJECT: msg.subject,
        DELIVERIES: str(meta.num_delivered),
    }
    await js.publish(f"deadletter.{consumer}.{msg.subject}", msg.data, headers=headers, stream=DEAD_LETTER_STREAM)
    log.warning("dead-lettered %s #%s for %s: %s", stream, sequence, consumer, reason)
