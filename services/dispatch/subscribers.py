"""Dispatch follows registry to know the volunteers it can send."""

from __future__ import annotations

from services.dispatch import domain, store
from shared.envelope import EventEnvelope
from shared.events.registry import VolunteerRegistered
from shared.eventstore import EventStore, Transaction
from shared.subscriber import Reactor


async def remember_volunteer(tx: Transaction, envelope: EventEnvelope, registered: VolunteerRegistered) -> None:
    await store.save_volunteer(tx.conn, domain.known_volunteer(registered, envelope.org_path))


def reactor(events: EventStore) -> Reactor:
    dispatch = Reactor("dispatch", events)
    dispatch.on(VolunteerRegistered)(remember_volunteer)
    return dispatch
