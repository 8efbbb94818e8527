"""Registry follows dispatch's service records, to certify them (志愿服务记录证明): the hours
confirmed, adjusted and revoked, each event carrying the whole record's attribution. Only the
newest event of a record counts: one that arrives late (a redelivery after a delay) changes
nothing, so the row ends the same whatever the order."""

from __future__ import annotations

from services.registry import store
from services.registry.domain.certificates import CONFIRMED, REVOKED
from shared.db import upsert
from shared.envelope import EventEnvelope
from shared.events.dispatch import ServiceHoursAdjusted, ServiceHoursConfirmed, ServiceHoursRevoked
from shared.eventstore import EventStore, Transaction
from shared.subscriber import Reactor

RECORDS_CONSUMER = "registry-records"
# Dispatch's service-record events only (`dispatch.<district>.service_record.<action>`): the
# server keeps its scans and orders from this consumer.
RECORD_SUBJECTS = "dispatch.*.service_record.>"


async def follow_record(
    tx: Transaction, envelope: EventEnvelope, event: ServiceHoursConfirmed | ServiceHoursAdjusted | ServiceHoursRevoked
) -> None:
    table = store.service_records
    values = {
        "volunteer_number": event.volunteer_number,
        "event_id": str(envelope.event_id),
        "version": envelope.aggregate_version,
        "state": REVOKED if isinstance(event, ServiceHoursRevoked) else CONFIRMED,
        "service_date": event.service_date,
        "minutes": event.minutes,
        "hours": event.hours,
        "site_id": event.site_id,
        "activity_id": event.activity_id,
        "field": event.field,
        "group_served": str(event.group_served),
    }
    statement = upsert(tx.conn, table).values(record_id=event.record_id, **values)
    await tx.conn.execute(
        statement.on_conflict_do_update(
            index_elements=["record_id"], set_=values, where=table.c.version < envelope.aggregate_version
        )
    )


def records_reactor(events: EventStore) -> Reactor:
    following = Reactor(RECORDS_CONSUMER, events)
    for model in (ServiceHoursConfirmed, ServiceHoursAdjusted, ServiceHoursRevoked):
        following.on(model)(follow_record)
    return following
