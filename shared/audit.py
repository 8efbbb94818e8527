"""Audit: who did what to one thing (a volunteer, an order, a ledger account), read from the
owning service's own event store, where every event records its actor and when.

Staff see the trail of what lies in their part of the tree (the org path of the thing's latest
event); anyone else, or a thing outside their reach, is answered as if it did not exist.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from shared.auth import STAFF
from shared.errors import NotFound
from shared.web import CurrentActor, allow, events_of, problems


class AuditEntry(BaseModel):
    event_id: UUID
    type: str = Field(description="The event's name, e.g. VolunteerTransferred (see the AsyncAPI document).")
    version: int = Field(description="The thing's version after this event: 1 for its first.")
    occurred_at: datetime
    recorded_at: datetime
    actor: str = Field(description="Who caused it: an account id, or system:<service> for what Beacon did by itself.")
    correlation_id: UUID = Field(description="Shared by every event one request or reaction caused.")
    causation_id: UUID | None = Field(description="The event this one reacted to, if any.")


class AuditTrail(BaseModel):
    aggregate_type: str
    aggregate_id: str
    org_path: list[str] = Field(description="Where the thing stands now in the org tree, district first.")
    entries: list[AuditEntry]


def audit_router(aggregate_type: str, path: str, tag: str) -> APIRouter:
    """A router with `GET {path}` (a path with `{aggregate_id}`): the thing's whole history."""
    router = APIRouter()

    @router.get(path, **allow(*STAFF), response_model=AuditTrail, tags=[tag], responses=problems(404))
    async def audit_trail(aggregate_id: str, request: Request, actor: CurrentActor) -> AuditTrail:
        envelopes = await events_of(request).load(aggregate_type, aggregate_id)
        if not envelopes or not actor.reaches(envelopes[-1].org_path):
            raise NotFound(f"no {aggregate_type} {aggregate_id}")
        return AuditTrail(
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            org_path=list(envelopes[-1].org_path),
            entries=[
                AuditEntry(
                    event_id=e.event_id, type=e.type, version=e.aggregate_version, occurred_at=e.occurred_at,
                    recorded_at=e.recorded_at, actor=e.actor, correlation_id=e.correlation_id,
                    causation_id=e.causation_id,
                )  # fmt: skip
                for e in envelopes
            ],
        )

    audit_trail.__doc__ = f"Who did what to this {aggregate_type.replace('_', ' ')}, event by event, oldest first."
    return router
