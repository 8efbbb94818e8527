"""Points' application services."""

from __future__ import annotations

from services.points import domain, store
from shared.envelope import EventEnvelope
from shared.events.registry import VolunteerRegistered
from shared.eventstore import Transaction

ACTOR = "system:points"


async def open_account_for(tx: Transaction, cause: EventEnvelope, registered: VolunteerRegistered) -> None:
    number = registered.volunteer_number
    history = await tx.load("account", number)
    opened = domain.open_account(number, history)
    if not opened:
        return
    (envelope,) = await tx.record(
        number,
        len(history),
        opened,
        org_path=cause.org_path,
        actor=ACTOR,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
    )
    await tx.conn.execute(
        store.accounts.insert().values(
            volunteer_number=number,
            district_code=cause.district_code,
            org_path="/".join(cause.org_path),
            balance=0,
            opened_at=envelope.recorded_at,
        )
    )
