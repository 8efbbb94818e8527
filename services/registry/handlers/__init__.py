"""Registry's application services: load an aggregate, let the domain decide, record the events
and their views in one transaction. Each function is plain and can be called from a test."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from services.registry import views
from services.registry.vault import Vault
from shared.auth import Actor
from shared.catalog import Event
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore, Transaction


@dataclass(frozen=True)
class Registry:
    events: EventStore
    vault: Vault


async def record(
    tx: Transaction,
    aggregate_id: str,
    expected_version: int,
    events: Sequence[Event],
    *,
    org_path: tuple[str, ...],
    actor: Actor,
    correlation_id: UUID | None = None,
) -> list[EventEnvelope]:
    """Append the decided events and bring the views along, in the caller's transaction."""
    if not events:
        return []
    envelopes = await tx.record(
        aggregate_id, expected_version, events, org_path=org_path, actor=actor.id, correlation_id=correlation_id
    )
    await views.project(tx.conn, envelopes)
    return envelopes
