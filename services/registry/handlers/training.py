"""Training sessions held at a site, and who attended them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import select

from services.registry import store
from services.registry.domain import training
from services.registry.handlers import Registry, record
from shared.auth import Actor
from shared.errors import NotFound
from shared.eventstore import Transaction


async def hold_session(
    registry: Registry, actor: Actor, *, site_id: str, topic: str, held_on: date, hours: float, trainer: str, today: date
) -> str:
    async with registry.events.transaction() as tx:
        site = await store.find_site(tx.conn, site_id)
        if site is None or not actor.reaches(site.path):
            raise NotFound(f"unknown site {site_id}", field="site_id")
        session_id = await store.next_number(tx.conn, "S")
        event = training.hold(session_id, site_id, topic, held_on, hours, today)
        await record(tx, session_id, 0, [event], org_path=site.path, actor=actor)
        # The trainer is a person: their name stays in this row and never enters an event.
        await tx.conn.execute(
            store.training_sessions.insert().values(
                session_id=session_id, site_id=site_id, topic=topic, held_on=held_on, hours=hours, trainer=trainer
            )
        )
    return session_id


async def _ensure_named(tx: Transaction, actor: Actor, numbers: set[str], site_id: str) -> None:
    """Every number is a volunteer the caller reaches, or a member of a team of the session's site
    (who may live elsewhere); any other is refused as unknown, as a number nobody has."""
    v, m, t = store.volunteers, store.team_members, store.teams
    found = await tx.conn.execute(select(v.c.volunteer_number, v.c.org_path).where(v.c.volunteer_number.in_(numbers)))
    of_the_site = set(
        (
            await tx.conn.execute(
                select(m.c.volunteer_number)
                .join(t, t.c.team_id == m.c.team_id)
                .where(t.c.site_id == site_id, m.c.state == "member", m.c.volunteer_number.in_(numbers))
            )
        ).scalars()
    )
    named = {number for number, path in found if number in of_the_site or actor.reaches(path.split("/"))}
    unknown = sorted(numbers - named)
    if unknown:
        raise NotFound(f"unknown volunteer {', '.join(unknown)}", field="volunteer_numbers")


async def record_attendance(registry: Registry, actor: Actor, session_id: str, volunteer_numbers: Iterable[str]) -> list[str]:
    """Record who attended; returns those newly recorded (repeating a list records nothing)."""
    numbers = set(volunteer_numbers)
    async with registry.events.transaction() as tx:
        history = await tx.history("training", session_id, "training session")
        session = training.fold(history.payloads)
        assert session is not None
        sessions = store.training_sessions
        site_id = await tx.conn.scalar(select(sessions.c.site_id).where(sessions.c.session_id == session_id))
        # One unknown number refuses the whole list: attendance is recorded all at once or not at all.
        await _ensure_named(tx, actor, numbers, site_id)
        events = training.attend(session, numbers)
        await record(tx, session_id, history.version, events, org_path=history.org_path, actor=actor)
    return [event.volunteer_number for event in events]
