"""Dispatch's orders through its HTTP API, over a real store (SQLite and PostgreSQL) and NATS: the
order lifecycle, idempotent and refused commands, the time-out job, what follows an unanswered
dispatch by itself (the next volunteer, the site above, or the overdue list), publication on the
district's subject, free text kept out of events, and ranked suggestions with what makes a
volunteer busy, loaded or insured."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.dispatch import store
from services.dispatch.app import create_app
from services.dispatch.domain import KnownVolunteer
from services.dispatch.handlers import orders as handlers
from shared.envelope import utcnow
from shared.settings import ServiceSettings
from tests.infra.auth import ADMIN, staff
from tests.infra.waiting import eventually

STAFF = staff()
COMMUNITY = "370303001001"
SITE = "ST-HEPING"
DESCRIPTION = "帮王奶奶学用智能手机挂号"
ADDRESS = "和平小区3号楼2单元501"
COMMENT = "小李很耐心，谢谢"


@contextlib.asynccontextmanager
async def dispatch_app(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(ServiceSettings(nats_url=nats_url, database_url=database_url))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://dispatch", headers=ADMIN) as client:
        yield client, app


@pytest.fixture
async def dispatch(nats_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with dispatch_app(nats_url, database_url) as running:
        yield running


def new_order(**changes: object) -> dict[str, object]:
    start = utcnow() + timedelta(days=1)
    return {
        "kind": "order",
        "group_served": "elderly",
        "field": "smart_help_for_elderly",
        "community_code": COMMUNITY,
        "site_id": SITE,
        "description": DESCRIPTION,
        "address": ADDRESS,
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(hours=2)).isoformat(),
        "headcount": 1,
        "required_skills": ["elder_care"],
        "placed_via": "community_staff",
        **changes,
    }


async def place(client: httpx.AsyncClient, **changes: object) -> str:
    response = await client.post("/orders", json=new_order(**changes), headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()["order_id"]


async def send(
    client: httpx.AsyncClient, order_id: str, to: list[str], deadline: datetime | None = None, *, team: str | None = None
) -> httpx.Response:
    deadline = deadline or utcnow() + timedelta(hours=4)
    body = {"volunteer_numbers": to, "site_id": SITE, "deadline": deadline.isoformat()}
    if team:
        body = {**body, "volunteer_numbers": [], "team_id": team}
    return await client.post(f"/orders/{order_id}/dispatch", json=body, headers=STAFF)


async def event_count(app: Any) -> int:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return await conn.scalar(select(func.count()).select_from(events.schema.events))


async def all_event_bodies(app: Any) -> list[str]:
    events = app.state.runtime.store
    async with events.engine.connect() as conn:
        return [row.envelope if isinstance(row.envelope, str) else row.envelope.decode() for row in await conn.execute(select(events.schema.events.c.envelope))]


def field_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


async def test_an_order_goes_from_placing_through_a_decline_and_redispatch_to_acceptance_completion_and_rating(dispatch) -> None:
    client, app = dispatch
    order_id = await place(client)
    assert order_id == "O00000001"
    placed = (await client.get(f"/orders/{order_id}")).json()
    assert (placed["status"], placed["org_path"], placed["description"], placed["address"]) == (
        "placed", ["370303", "370303001000", COMMUNITY], DESCRIPTION, ADDRESS
    )

    dispatched = await send(client, order_id, ["V000001"])
    assert dispatched.status_code == 200 and dispatched.json()["status"] == "dispatched", dispatched.text
    declined = await client.post(f"/orders/{order_id}/decline", json={"by": "V000001", "reason": "unavailable"})
    assert declined.status_code == 200 and declined.json()["status"] == "placed"
    redispatched = await send(client, order_id, ["V000002"])
    assert redispatched.json()["attempts"] == 2
    accepted = await client.post(f"/orders/{order_id}/accept", json={"by": "V000002"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    before = await event_count(app)
    again = await client.post(f"/orders/{order_id}/accept", json={"by": "V000002"})
    assert again.status_code == 200 and again.json()["accepted_by"] == ["V000002"]
    assert await event_count(app) == before  # accepting twice changes nothing

    completed = await client.post(f"/orders/{order_id}/complete", json={"people_served": 1})
    assert completed.status_code == 200 and completed.json()["status"] == "completed"
    rated = await client.post(f"/orders/{order_id}/rate", json={"rating": 5, "comment": COMMENT})
    assert rated.status_code == 200 and rated.json()["rating"] == 5

    order = (await client.get(f"/orders/{order_id}")).json()
    assert (order["status"], order["people_served"], order["comment"]) == ("rated", 1, COMMENT)
    assert order["completed_at"] is not None and order["accepted_at"] is not None
    assert [h["type"] for h in order["history"]] == [
        "OrderPlaced", "OrderDispatched", "OrderDeclined", "OrderDispatched", "OrderAccepted", "OrderCompleted", "OrderRated",
    ]
    assert order["history"][0]["actor"] == "staff-7" and order["history"][-1]["actor"] == "test-admin"
    listed = (await client.get("/orders", params={"status": "rated"})).json()["items"]
    assert [o["order_id"] for o in listed] == [order_id] and listed[0]["attempts"] == 2
    assert (await client.get("/orders/O99999999")).status_code == 404


async def test_a_cancelled_order_cannot_be_accepted_and_refusals_write_nothing(dispatch) -> None:
    client, app = dispatch
    order_id = await place(client)
    await send(client, order_id, ["V000001"])
    cancelled = await client.post(f"/orders/{order_id}/cancel", json={"reason": "withdrawn_by_resident"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    refused = await client.post(f"/orders/{order_id}/accept", json={"by": "V000001"})
    assert refused.status_code == 409 and refused.json()["state"] == "cancelled", refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    stranger = await place(client)
    await send(client, stranger, ["V000001"])
    before = await event_count(app)
    not_sent = await client.post(f"/orders/{stranger}/accept", json={"by": "V000009"})
    assert not_sent.status_code == 409 and not_sent.json()["state"] == "dispatched"
    rated_early = await client.post(f"/orders/{stranger}/rate", json={"rating": 4})
    assert rated_early.status_code == 409
    assert await event_count(app) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"window_end": (utcnow() + timedelta(hours=1)).isoformat(), "window_start": (utcnow() + timedelta(hours=3)).isoformat()}, "window_end"),
        ({"headcount": 0}, "headcount"),
        ({"required_skills": ["juggling"]}, "required_skills"),
        ({"community_code": "370303"}, "community_code"),
        ({"group_served": "pets"}, "group_served"),
        ({"window_start": "2030-01-01T09:00:00"}, "window_start"),
    ],
)
async def test_bad_order_fields_are_422_naming_the_field_and_leave_no_event(dispatch, changes: dict, field: str) -> None:
    client, app = dispatch
    response = await client.post("/orders", json=new_order(**changes))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field_of(response) == field and response.json()["errors"][0]["reason"]
    assert await event_count(app) == 0
    assert await place(client) == "O00000001"  # the refused order took no number


async def test_the_time_out_job_records_a_time_out_for_a_dispatch_past_its_deadline_once(dispatch) -> None:
    client, app = dispatch
    events = app.state.runtime.store
    late, answered = await place(client), await place(client)
    deadline = utcnow() + timedelta(minutes=5)
    await send(client, late, ["V000001"], deadline)
    await send(client, answered, ["V000002"], deadline)
    await client.post(f"/orders/{answered}/accept", json={"by": "V000002"})

    assert await handlers.time_out_due(events, utcnow()) == []  # not yet due
    later = deadline + timedelta(seconds=1)
    overdue = (await client.get("/orders", params={"overdue": "true"})).json()["items"]
    assert overdue == []  # the deadline has not passed on the server's clock
    assert await handlers.time_out_due(events, later) == [late]
    order = (await client.get(f"/orders/{late}")).json()
    assert order["status"] == "placed" and order["history"][-1] == {**order["history"][-1], "type": "OrderTimedOut", "actor": "system:dispatch"}
    before = await event_count(app)
    assert await handlers.time_out_due(events, later) == []
    assert await event_count(app) == before
    # It waits to be dispatched again.
    assert (await send(client, late, ["V000003"])).json()["attempts"] == 2


async def test_order_events_reach_the_dispatch_stream_without_the_free_text(dispatch, js) -> None:
    client, app = dispatch
    order_id = await place(client)
    await send(client, order_id, ["V000001"])
    await client.post(f"/orders/{order_id}/accept", json={"by": "V000001"})
    await client.post(f"/orders/{order_id}/complete", json={"people_served": 2})
    await client.post(f"/orders/{order_id}/rate", json={"rating": 4, "comment": COMMENT})

    await eventually(lambda: app.state.runtime.store.outbox_depth(), lambda depth: depth == 0)
    info = await js.stream_info("DISPATCH")
    messages = [await js.get_msg("DISPATCH", seq) for seq in range(1, info.state.last_seq + 1)]
    subjects = [m.subject for m in messages]
    assert subjects == [
        f"dispatch.370303.order.{step}" for step in ("placed", "dispatched", "accepted", "completed", "rated")
    ]
    placed = json.loads(messages[0].data)
    assert placed["payload"]["order_id"] == order_id and placed["org_path"] == ["370303", "370303001000", COMMUNITY]
    bodies = [m.data.decode() for m in messages] + await all_event_bodies(app)
    for body in bodies:
        text = json.dumps(json.loads(body), ensure_ascii=False)
        for secret in (DESCRIPTION, ADDRESS, COMMENT):
            assert secret not in text
        assert "description" not in json.loads(body)["payload"] and "address" not in json.loads(body)["payload"]


async def know(app: Any, number: str, community: str, skills: tuple[str, ...], status: str, certs: dict[str, date | None]) -> None:
    """Stands in for registry's VolunteerRegistered, VolunteerVerified and CertificationGranted,
    which the reactor turns into these same rows (tests/e2e follows the real path)."""
    path = ("370303", community[:9] + "000", community)
    async with app.state.runtime.store.transaction() as tx:
        await store.save_volunteer(tx.conn, KnownVolunteer(number, community, path, "35_59", skills))
        await store.change_volunteer(tx.conn, number, status=status)
        for name, expires_on in certs.items():
            await store.certify(tx.conn, number, name, expires_on)


async def test_suggestions_rank_by_skills_then_nearness_and_explain_every_exclusion(dispatch) -> None:
    client, app = dispatch
    never = {"first_aid": None}
    await know(app, "V000001", COMMUNITY, ("first_aid", "elder_care"), "verified", never)
    await know(app, "V000002", "370303001002", ("first_aid", "elder_care"), "verified", never)
    await know(app, "V000003", COMMUNITY, ("first_aid",), "verified", never)
    await know(app, "V000004", COMMUNITY, ("first_aid", "elder_care"), "pending", never)
    await know(app, "V000005", COMMUNITY, ("first_aid", "elder_care"), "verified", {})
    await know(app, "V000006", COMMUNITY, ("first_aid", "elder_care"), "verified", {"first_aid": date(2020, 1, 1)})
    order_id = await place(client, required_skills=["elder_care", "first_aid"], required_certifications=["first_aid"])

    response = await client.get(f"/orders/{order_id}/suggestions")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(s["rank"], s["volunteer_number"]) for s in body["suggestions"]] == [(1, "V000001"), (2, "V000002"), (3, "V000003")]
    assert body["suggestions"][0]["reasons"] == [
        "has elder_care, first_aid", "certified first_aid", "same community", "no shifts in the last 30 days",
    ]
    assert "same street" in body["suggestions"][1]["reasons"]
    assert "lacks elder_care" in body["suggestions"][2]["reasons"]
    assert {e["volunteer_number"]: e["reasons"] for e in body["excluded"]} == {
        "V000004": ["not verified (pending)"],
        "V000005": ["no first_aid certification"],
        "V000006": ["first_aid certification expires on 2020-01-01"],
    }
    assert (await client.get("/orders/O99999999/suggestions")).status_code == 404


# --- What follows an unanswered dispatch, by itself -----------------------------------------------

STREET_INSTITUTE, DISTRICT_CENTRE = "IN-CHEZHAN", "CE-ZHANGDIAN"


async def sites_known(app: Any, *sites: tuple[str, str, str, bool]) -> None:
    """Stands in for registry's SiteOpened and SiteClosed (test_dispatch_orders_following_registry
    follows the real path): (site id, level, org unit code, open)."""
    async with app.state.runtime.store.transaction() as tx:
        for site_id, level, code, is_open in sites:
            path = ("370303", code[:9] + "000", code)[: {"centre": 1, "institute": 2}.get(level, 3)]
            kind = {"centre": "district_centre", "institute": "street_institute"}.get(level, "community")
            await store.save_site(tx.conn, site_id, code, path, level, kind)
            if not is_open:
                await store.close_site(tx.conn, site_id)


async def order_state(client: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    response = await client.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


def steps(order: dict[str, Any]) -> list[str]:
    return [h["type"] for h in order["history"]]


async def overdue_ids(client: httpx.AsyncClient) -> list[str]:
    return [o["order_id"] for o in (await client.get("/orders", params={"overdue": "true"})).json()["items"]]


async def test_when_the_last_addressee_declines_the_order_goes_to_the_next_suggested_volunteer_by_itself(dispatch) -> None:
    client, app = dispatch
    await know(app, "V000001", COMMUNITY, ("elder_care",), "verified", {})
    await know(app, "V000002", "370303001002", ("elder_care",), "verified", {})
    await know(app, "V000003", COMMUNITY, ("elder_care",), "pending", {})
    order_id = await place(client)
    sent = utcnow()
    await send(client, order_id, ["V000001"], sent + timedelta(hours=1))

    declined = await client.post(f"/orders/{order_id}/decline", json={"by": "V000001", "reason": "unavailable"}, headers=STAFF)
    assert declined.status_code == 200, declined.text
    assert (declined.json()["status"], declined.json()["attempts"], declined.json()["addressees"]) == ("dispatched", 2, ["V000002"])
    order = await order_state(client, order_id)
    assert steps(order) == ["OrderPlaced", "OrderDispatched", "OrderDeclined", "OrderDispatched"]
    decline, redispatch = order["history"][-2:]
    assert decline["actor"] == "staff-7" and redispatch["actor"] == "system:dispatch"
    assert redispatch["payload"]["attempt"] == 2 and redispatch["payload"]["automatic"] is True
    assert order["history"][1]["payload"]["automatic"] is False
    answer_time = datetime.fromisoformat(redispatch["payload"]["deadline"]) - datetime.fromisoformat(redispatch["payload"]["at"])
    assert abs(answer_time - timedelta(hours=1)) < timedelta(seconds=5)  # what the first dispatch gave
    assert order["tried"] == ["V000001", "V000002"] and order["overdue"] is False
    assert order_id not in await overdue_ids(client)

    accepted = await client.post(f"/orders/{order_id}/accept", json={"by": "V000002"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"


async def test_a_timed_out_dispatch_goes_to_the_next_suggested_volunteer(dispatch) -> None:
    client, app = dispatch
    events = app.state.runtime.store
    await know(app, "V000001", COMMUNITY, ("elder_care",), "verified", {})
    await know(app, "V000002", COMMUNITY, ("elder_care",), "verified", {})
    order_id = await place(client)
    deadline = utcnow() + timedelta(minutes=2)
    await send(client, order_id, ["V000001"], deadline)

    later = deadline + timedelta(seconds=1)
    assert await handlers.time_out_due(events, later) == [order_id]
    order = await order_state(client, order_id)
    assert steps(order)[-2:] == ["OrderTimedOut", "OrderDispatched"]
    assert {h["actor"] for h in order["history"][-2:]} == {"system:dispatch"}
    redispatch = order["history"][-1]["payload"]
    assert (redispatch["volunteer_numbers"], redispatch["attempt"], redispatch["automatic"]) == (["V000002"], 2, True)
    # Two minutes to answer before: ten, the least an automatic dispatch gives.
    assert datetime.fromisoformat(redispatch["deadline"]) == later + timedelta(minutes=10)
    assert order["status"] == "dispatched" and order["addressees"] == ["V000002"]
    assert await handlers.time_out_due(events, later) == []  # the new dispatch has ten minutes


async def test_with_no_suggested_volunteer_left_the_order_is_escalated_to_the_open_site_above(dispatch) -> None:
    client, app = dispatch
    await sites_known(
        app,
        (SITE, "station", COMMUNITY, True),
        ("IN-A-CLOSED", "institute", "370303001000", False),
        (STREET_INSTITUTE, "institute", "370303001000", True),
        (DISTRICT_CENTRE, "centre", "370303", True),
    )
    await know(app, "V000001", COMMUNITY, ("elder_care",), "verified", {})
    await know(app, "V000002", COMMUNITY, ("elder_care",), "verified", {})
    order_id = await place(client)
    await send(client, order_id, ["V000001", "V000002"])
    await client.post(f"/orders/{order_id}/decline", json={"by": "V000001", "reason": "unavailable"})
    escalated = await client.post(f"/orders/{order_id}/decline", json={"by": "V000002", "reason": "too_far"})
    assert escalated.status_code == 200, escalated.text
    assert (escalated.json()["status"], escalated.json()["site_id"]) == ("placed", STREET_INSTITUTE)
    order = await order_state(client, order_id)
    assert steps(order)[-3:] == ["OrderDeclined", "OrderDeclined", "OrderEscalated"]
    assert order["history"][-1]["payload"] == {
        "order_id": order_id, "from_site_id": SITE, "to_site_id": STREET_INSTITUTE,
        "at": order["history"][-1]["payload"]["at"], "automatic": True,
    }
    assert order["overdue"] is False and order_id not in await overdue_ids(client)  # the institute has it
    listed = (await client.get("/orders", params={"site": STREET_INSTITUTE})).json()["items"]
    assert [o["order_id"] for o in listed] == [order_id]

    # A team's dispatch goes up a level when the team declines, volunteers or not.
    for_team = await place(client)
    await send(client, for_team, [], team="T000001")
    team_declined = await client.post(f"/orders/{for_team}/decline", json={"by": "T000001", "reason": "unavailable"})
    assert (team_declined.json()["status"], team_declined.json()["site_id"]) == ("placed", STREET_INSTITUTE)
    assert steps(await order_state(client, for_team))[-1] == "OrderEscalated"


async def test_at_the_top_of_the_tree_or_with_no_site_above_known_the_order_stays_placed_and_is_listed_overdue(dispatch) -> None:
    client, app = dispatch
    events = app.state.runtime.store
    await sites_known(app, (DISTRICT_CENTRE, "centre", "370303", True))
    await know(app, "V000001", COMMUNITY, ("elder_care",), "verified", {})
    at_the_top = await place(client, site_id=DISTRICT_CENTRE)
    nowhere_above = await place(client)  # its station is not known here: nor is the site above
    deadline = utcnow() + timedelta(minutes=5)
    await send(client, at_the_top, ["V000001"], deadline)
    await send(client, nowhere_above, ["V000001"], deadline)
    assert await overdue_ids(client) == []

    assert await handlers.time_out_due(events, deadline + timedelta(seconds=1)) == [at_the_top, nowhere_above]
    for order_id, site in ((at_the_top, DISTRICT_CENTRE), (nowhere_above, SITE)):
        order = await order_state(client, order_id)
        assert (order["status"], order["site_id"], steps(order)[-1]) == ("placed", site, "OrderTimedOut")
        assert order["overdue"] is True and order["unanswered_at"] is not None
    # Listed overdue a day before the window starts: it waits for staff.
    assert await overdue_ids(client) == [at_the_top, nowhere_above]

    # Staff still dispatch and escalate by hand; then it is no longer overdue.
    await know(app, "V000002", COMMUNITY, ("elder_care",), "verified", {})
    assert (await send(client, at_the_top, ["V000002"])).json()["attempts"] == 2
    escalated = await client.post(f"/orders/{nowhere_above}/escalate", json={"to_site_id": DISTRICT_CENTRE}, headers=STAFF)
    assert escalated.status_code == 200 and escalated.json()["site_id"] == DISTRICT_CENTRE
    assert (await order_state(client, nowhere_above))["history"][-1]["payload"]["automatic"] is False
    assert await overdue_ids(client) == []


async def shift_rows(app: Any, number: str, starts_at: datetime, ends_at: datetime, *, position: str = "confirmed", status: str = "open") -> None:
    """Stands in for the activities handlers, which keep these rows (tests of activities follow them)."""
    shift_id = f"S-{number}-{position}-{status}"
    async with app.state.runtime.store.transaction() as tx:
        await tx.conn.execute(
            store.shifts.insert().values(
                shift_id=shift_id, activity_id="A-1", site_id=SITE, org_path="370303", starts_at=starts_at,
                ends_at=ends_at, capacity=10, status=status, confirmed=1, waitlisted=0,
            )
        )
        await tx.conn.execute(store.signups.insert().values(shift_id=shift_id, volunteer_number=number, position=position, signed_up_at=utcnow()))


async def served(app: Any, number: str, *days_ago: int) -> None:
    async with app.state.runtime.store.transaction() as tx:
        for n, ago in enumerate(days_ago):
            checked_in = utcnow() - timedelta(days=ago)
            await tx.conn.execute(
                store.attendances.insert().values(shift_id=f"S-past-{n}", volunteer_number=number, checked_in_at=checked_in)
            )


def suggested(body: dict[str, Any]) -> list[str]:
    return [s["volunteer_number"] for s in body["suggestions"]]


def left_out(body: dict[str, Any]) -> dict[str, list[str]]:
    return {e["volunteer_number"]: e["reasons"] for e in body["excluded"]}


async def test_suggestions_leave_out_the_busy_and_count_each_volunteers_recent_shifts(dispatch) -> None:
    client, app = dispatch
    for n in range(1, 6):
        await know(app, f"V00000{n}", COMMUNITY, ("elder_care",), "verified", {})
    first = await place(client)
    window = await order_state(client, first)
    start, end = datetime.fromisoformat(window["window_start"]), datetime.fromisoformat(window["window_end"])
    await send(client, first, ["V000001"])
    await client.post(f"/orders/{first}/accept", json={"by": "V000001"})  # serves an order in the window
    await shift_rows(app, "V000002", start - timedelta(hours=1), start + timedelta(minutes=30))  # a confirmed shift
    await shift_rows(app, "V000003", start, end, position="waitlisted")  # only waiting: free
    await shift_rows(app, "V000004", start, end, status="cancelled")  # the shift is off: free
    await served(app, "V000004", 1, 3, 40)  # two shifts in the last 30 days, one older
    await served(app, "V000005", 2)

    second = await place(client)
    body = (await client.get(f"/orders/{second}/suggestions")).json()
    assert suggested(body) == ["V000003", "V000005", "V000004"]  # fewest recent shifts first
    reasons = {s["volunteer_number"]: s["reasons"] for s in body["suggestions"]}
    assert reasons["V000004"][-1] == "2 shifts in the last 30 days" and reasons["V000005"][-1] == "1 shift in the last 30 days"
    excluded = left_out(body)
    assert excluded.keys() == {"V000001", "V000002"}
    assert excluded["V000001"] == [f"busy {start.isoformat()} to {end.isoformat()}"]
    assert excluded["V000002"][0].startswith("busy ")
    # The order served is not what makes its own volunteer busy, and once completed frees them.
    assert "V000001" not in left_out((await client.get(f"/orders/{first}/suggestions")).json())
    await client.post(f"/orders/{first}/complete", json={"people_served": 1})
    assert "V000001" in suggested((await client.get(f"/orders/{second}/suggestions")).json())


async def test_a_risky_order_is_sent_only_to_volunteers_whose_insurance_covers_its_window(dispatch) -> None:
    client, app = dispatch
    for n in (1, 2, 3):
        await know(app, f"V00000{n}", COMMUNITY, ("elder_care",), "verified", {})
    today = utcnow().date()
    async with app.state.runtime.store.transaction() as tx:  # stands in for registry's VolunteerInsured
        await store.insure(tx.conn, "V000001", today - timedelta(days=30), today + timedelta(days=335))
        await store.insure(tx.conn, "V000002", today - timedelta(days=365), today)  # ends before the window
    risky = await place(client, risky=True)
    body = (await client.get(f"/orders/{risky}/suggestions")).json()
    assert suggested(body) == ["V000001"]
    assert left_out(body) == {
        "V000002": ["no insurance record for risky work"],
        "V000003": ["no insurance record for risky work"],
    }
    assert suggested((await client.get(f"/orders/{await place(client)}/suggestions")).json()) == ["V000001", "V000002", "V000003"]
    # Nor does an automatic re-dispatch send it to the uninsured: with nobody left, it waits.
    await send(client, risky, ["V000001"])
    declined = await client.post(f"/orders/{risky}/decline", json={"by": "V000001", "reason": "unavailable"})
    assert declined.json()["status"] == "placed" and risky in await overdue_ids(client)
