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
# Dead letters an operator sends back to their consumer (`beacon dlq retry`), on `retry.<consumer>`.
RETRY_STREAM = "RETRY"

# Headers a dead letter carries besides the original body.
REASON = "Beacon-Reason"
CONSUMER = "Beacon-Consumer"
ORIGINAL_STREAM = "Beacon-Stream"
ORIGINAL_SEQUENCE = "Beacon-Stream-Sequence"
ORIGINAL_SUBJECT = "Beacon-Subject"
DELIVERIES = "Beacon-Deliveries"
DEAD_LETTER_SEQUENCE = "Beacon-Dead-Letter-Sequence"  # on a retry: the letter it sends back


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


def retry_stream(settings: StreamSettings) -> StreamConfig:
    return stream_config(RETRY_STREAM, ["retry.>"], settings)


def retry_subject(consumer: str) -> str:
    return f"retry.{consumer}"


_COMPARED = (
    "subjects",
    "retention",
    "max_age",
    "storage",
    "num_replicas",
    "duplicate_window",
    "deny_delete",
    "deny_purge",
)


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
    carried = msg.headers or {}  # a retried letter names where the event first came from
    subject = carried.get(ORIGINAL_SUBJECT, msg.subject)
    headers = {
        "Nats-Msg-Id": f"{consumer}:{stream}:{sequence}",
        REASON: reason[:4000].replace("\r", " ").replace("\n", " "),
        CONSUMER: consumer,
        ORIGINAL_STREAM: carried.get(ORIGINAL_STREAM, stream),
        ORIGINAL_SEQUENCE: carried.get(ORIGINAL_SEQUENCE, str(sequence)),
        ORIGINAL_SUBJECT: subject,
        DELIVERIES: str(meta.num_delivered),
    }
    await js.publish(f"deadletter.{consumer}.{subject}", msg.data, headers=headers, stream=DEAD_LETTER_STREAM)
    log.warning("dead-lettered %s #%s for %s: %s", stream, sequence, consumer, reason)


async def send_back(js: JetStreamContext, letter_sequence: int) -> str:
    """Send a dead letter back to the consumer that refused it, once its cause is fixed: a copy on
    `retry.<consumer>` in the retry stream, which the consumer applies like any delivery (and skips
    if it applied the event meanwhile). Sending the same letter again within the duplicate window
    sends nothing. The consumer's name."""
    letter = await js.get_msg(DEAD_LETTER_STREAM, letter_sequence)
    carried = letter.headers or {}
    consumer = carried[CONSUMER]
    headers = {
        name: carried[name] for name in (ORIGINAL_STREAM, ORIGINAL_SEQUENCE, ORIGINAL_SUBJECT) if name in carried
    }
    headers.update({"Nats-Msg-Id": f"retry:{letter_sequence}", DEAD_LETTER_SEQUENCE: str(letter_sequence)})
    await js.publish(retry_subject(consumer), letter.data or b"", headers=headers, stream=RETRY_STREAM)
    return consumer
