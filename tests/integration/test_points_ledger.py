"""The ledger posts dispatch's confirmed, adjusted and revoked hours: rules and their versions,
caps, campaigns, administrators' entries, debts, expiry, and events that must wait or come twice.
On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.points import handlers, store
from services.points.books import RuleCache
from services.points.subscribers import ledger_batch, ledger_follower, start_from_whole_ledger
from shared.events.dispatch import RecordSource
from shared.events.points import Campaign, Expiry, RateOverride
from shared.eventstore import EventStore
from shared.web import Actor
from tests.infra.points import (
    DISTRICT,
    DispatchRecords,
    open_account,
    open_site,
    points_store,
    post,
    read_books,
    rebuild,
)
from tests.infra.statements import plan_of, statements_sent

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in the city
STAFF = Actor("staff-1", frozenset({"district_staff"}))


@pytest.fixture
async def points(database_url: str) -> AsyncIterator[EventStore]:
    events = points_store(database_url)
    await events.create_tables()
    yield events
    await events.engine.dispose()


async def account(events: EventStore, number: str) -> dict:
    async with events.engine.connect() as conn:
        return dict((await conn.execute(select(store.accounts).where(store.accounts.c.volunteer_number == number))).mappings().one())


async def test_confirmed_hours_earn_points_time_credits_and_hours_by_the_default_rule(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    await post(points, rules, dispatch.confirm(number, Decimal("2.5"), NOW))

    row = await account(points, number)
    assert (row["balance"], Decimal(row["hours"]), row["time_minutes"]) == (25, Decimal("2.5"), 150)
    books = await read_books(points)
    credited = [e for e in books.events if e.type == "ServiceCredited"]
    assert credited[0].payload["points"] == 25 and credited[0].payload["rule_version"] == 0
    assert credited[0].payload["expires_on"] == "2027-12-31"  # the end of the year after
    assert books.balances[(f"issuance:{DISTRICT}", "points")] == -25
    assert books.balances[("time-issuance:city", "minutes")] == -150


async def test_a_rule_prices_by_the_most_specific_rate_times_campaigns_and_caps_each_day(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    day = date(2026, 12, 1)
    rule = await handlers.set_rule(
        points,
        {
            "district_code": DISTRICT,
            "effective_from": day,
            "points_per_hour": Decimal(10),
            "overrides": [
                RateOverride(field="legal_aid", points_per_hour=Decimal(20)),
                RateOverride(field="legal_aid", group_served="elderly", points_per_hour=Decimal(30)),
            ],
            "campaigns": [Campaign(name="winter", multiplier=Decimal("1.5"), starts_on=day, ends_on=day)],
            "daily_cap": 60,
            "expiry": Expiry(kind="after_years", years=3),
        },
        STAFF,
        NOW,
    )
    assert rule.version == 1
    at = datetime(2026, 12, 1, 12, tzinfo=UTC)
    await post(points, rules, dispatch.confirm(number, Decimal(1), at, field_="legal_aid", group="elderly"))  # 30 × 1.5
    await post(points, rules, dispatch.confirm(number, Decimal(1), at, field_="legal_aid", group="children"))  # 20 × 1.5, capped
    await post(points, rules, dispatch.confirm(number, Decimal(1), at, day=date(2026, 11, 30)))  # before the rule: default

    credited = [e.payload for e in (await read_books(points)).events if e.type == "ServiceCredited"]
    assert [(c["points"], c["rule_version"], c["capped_from"]) for c in credited] == [(45, 1, None), (15, 1, 30), (10, 0, None)]
    assert credited[0]["expires_on"] == "2029-12-01"
    assert (await account(points, number))["balance"] == 70


async def test_a_days_cap_counts_the_records_of_the_same_batch_and_of_earlier_ones(points: EventStore) -> None:
    # Default rule: 10 points an hour, at most 100 a day. What a day has earned is its records'
    # points, read from their index by volunteer and day (no table of day totals beside them).
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    today, tomorrow, hours = NOW, NOW + timedelta(days=1), Decimal(4)
    await post(points, rules, dispatch.confirm(number, hours, today), dispatch.confirm(number, hours, today))

    def day_totals(statement: str) -> bool:
        return statement.startswith("SELECT") and "service_records" in statement and "record_id" not in statement

    with statements_sent(points.engine, day_totals) as statements:
        await post(points, rules, dispatch.confirm(number, hours, today), dispatch.confirm(number, hours, tomorrow))

    credited = [e.payload for e in (await read_books(points)).events if e.type == "ServiceCredited"]
    assert [(c["points"], c["capped_from"]) for c in credited] == [(40, None), (40, None), (20, 40), (40, None)]
    assert len(statements) == 1  # the batch's days in one query
    if points.engine.dialect.name == "sqlite":
        plan = await plan_of(points.engine, *statements[0])
        assert "COVERING INDEX ix_service_records_volunteer_day" in plan, plan


async def test_a_rule_cannot_take_effect_in_the_past(points: EventStore) -> None:
    from shared.errors import Invalid

    with pytest.raises(Invalid) as refused:
        await handlers.set_rule(
            points, {"district_code": DISTRICT, "effective_from": date(2026, 1, 1), "points_per_hour": Decimal(5)}, STAFF, NOW
        )
    assert refused.value.field == "effective_from"


async def test_an_administrators_entry_counts_hours_and_time_credits_but_earns_no_points(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    await post(points, rules, dispatch.confirm(number, Decimal(3), NOW, source=RecordSource.admin_entry))
    row = await account(points, number)
    assert (row["balance"], Decimal(row["hours"]), row["time_minutes"]) == (0, Decimal(3), 180)


async def test_adjustments_restate_and_a_revocation_leaves_a_debt_later_credits_repay_first(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    await open_site(points, rules)
    first = dispatch.confirm(number, Decimal(4), NOW)
    await post(points, rules, first)
    record = first[1].record_id
    await post(points, rules, dispatch.adjust(record, Decimal(5), NOW))  # +10
    await post(points, rules, dispatch.adjust(record, Decimal(3), NOW))  # -20
    assert (await account(points, number))["balance"] == 30

    item = await handlers.list_item(points, "S-370303001001", "rice 5 kg", 25, 3, STAFF)
    await handlers.redeem(points, number, item.item_id, 1, STAFF, NOW)  # 5 left
    await post(points, rules, dispatch.revoke(record, NOW))  # -30: 25 more than there is
    row = await account(points, number)
    assert (row["balance"], row["debt"], Decimal(row["hours"])) == (-25, 25, Decimal(0))

    await post(points, rules, dispatch.confirm(number, Decimal(4), NOW + timedelta(days=1)))  # +40
    row = await account(points, number)
    assert (row["balance"], row["debt"]) == (15, 0)
    credited = [e.payload for e in (await read_books(points)).events if e.type == "ServiceCredited"]
    assert credited[-1]["debt_repaid"] == 25


async def test_lower_hours_whose_points_rise_as_the_days_cap_frees_are_a_debit_then_a_credit(points: EventStore) -> None:
    # Default rule: 10 points an hour, at most 100 a day. A 9-hour day fills 90 of it; a second
    # record of 1.5 h is capped to 10. Taking the first back frees the cap: the second, adjusted
    # down to 1.25 h, loses a quarter hour but earns 12 points, 2 more than it had.
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    long_day = dispatch.confirm(number, Decimal(9), NOW)
    await post(points, rules, long_day)
    short = dispatch.confirm(number, Decimal("1.5"), NOW)
    await post(points, rules, short)
    await post(points, rules, dispatch.revoke(long_day[1].record_id, NOW))
    assert (await account(points, number))["balance"] == 10

    adjustment = dispatch.adjust(short[1].record_id, Decimal("1.25"), NOW)
    await post(points, rules, adjustment)

    row = await account(points, number)
    assert (row["balance"], Decimal(row["hours"]), row["time_minutes"]) == (12, Decimal("1.25"), 75)
    books = await read_books(points)
    answers = [e for e in books.events if e.causation_id == adjustment[0].event_id]
    assert [(e.type, e.payload["hours"], e.payload["points"], e.payload["time_credit_minutes"]) for e in answers] == [
        ("ServiceDebited", "0.25", 0, 15),
        ("ServiceCredited", "0", 2, 0),
    ]
    assert answers[-1].payload["total_hours"] == "1.25"
    rebuilt, _ = rebuild(books.events)
    assert rebuilt == books.accounts


async def test_points_expire_by_a_daily_job_once(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    await post(points, rules, dispatch.confirm(number, Decimal(2), NOW))  # expires 2027-12-31
    assert await handlers.expire_due(points, datetime(2027, 12, 31, 15, tzinfo=UTC)) == []  # 23:00 in the city
    done = await handlers.expire_due(points, datetime(2027, 12, 31, 16, tzinfo=UTC))  # midnight
    assert done == [f"{number}: 20 points of 2027-12-31"]
    assert await handlers.expire_due(points, datetime(2028, 1, 2, tzinfo=UTC)) == []
    books = await read_books(points)
    assert books.accounts[number].balance == 0
    assert books.balances[(f"expiry:{DISTRICT}", "points")] == 20


async def test_a_redelivered_or_replayed_event_is_posted_once(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    confirmed = dispatch.confirm(number, Decimal(2), NOW)
    adjusted = dispatch.adjust(confirmed[1].record_id, Decimal(3), NOW)
    await post(points, rules, confirmed, confirmed, adjusted)
    await post(points, rules, confirmed, adjusted)
    assert (await account(points, number))["balance"] == 30
    postings = [e for e in (await read_books(points)).events if e.type.startswith("Service")]
    assert len(postings) == 2


async def test_events_for_an_account_not_open_yet_wait_for_it_then_apply_in_order(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    confirmed = dispatch.confirm("V00000009", Decimal(2), NOW)
    revoked = dispatch.revoke(confirmed[1].record_id, NOW)
    await post(points, rules, confirmed, revoked)
    async with points.engine.connect() as conn:
        waiting = (await conn.execute(select(store.waiting.c.reason))).scalars().all()
    assert waiting == ["no points account yet", "no points account yet"]

    await open_account(points, rules, 9)
    row = await account(points, "V00000009")
    assert (row["balance"], row["debt"], Decimal(row["hours"])) == (0, 0, Decimal(0))
    types = [e.type for e in (await read_books(points)).events]
    assert types == ["PointsAccountOpened", "ServiceCredited", "ServiceDebited"]
    async with points.engine.connect() as conn:
        assert (await conn.execute(select(store.waiting))).first() is None


async def test_an_adjustment_before_its_confirmation_waits_for_it(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    confirmed = dispatch.confirm(number, Decimal(2), NOW)
    adjusted = dispatch.adjust(confirmed[1].record_id, Decimal(1), NOW)
    await post(points, rules, adjusted)
    assert (await account(points, number))["balance"] == 0
    await post(points, rules, confirmed)
    row = await account(points, number)
    assert (row["balance"], Decimal(row["hours"])) == (10, Decimal(1))


async def test_stars_rise_with_hours_fall_with_revocations_and_follow_new_thresholds(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    records = []
    for day in range(13):  # 13 × 8 h = 104 h, on different days (one record a day)
        confirmed = dispatch.confirm(number, Decimal(8), NOW + timedelta(days=day))
        records.append(confirmed[1].record_id)
        await post(points, rules, confirmed)
    assert (await account(points, number))["star_level"] == 1
    await post(points, rules, dispatch.revoke(records[0], NOW))
    assert (await account(points, number))["star_level"] == 0
    await handlers.set_star_thresholds(points, [Decimal(h) for h in (50, 90, 200, 300, 400)], STAFF)
    assert (await account(points, number))["star_level"] == 2
    types = [e.type for e in (await read_books(points)).events if e.type.startswith("Star")]
    assert types == ["StarLevelAwarded", "StarLevelLowered", "StarThresholdsSet", "StarLevelAwarded"]


async def test_the_stored_ledger_is_what_its_events_fold_to(points: EventStore) -> None:
    rules, dispatch = RuleCache(), DispatchRecords()
    number = await open_account(points, rules, 1)
    await open_site(points, rules)
    await post(points, rules, dispatch.confirm(number, Decimal(6), NOW))
    item = await handlers.list_item(points, "S-370303001001", "tea", 7, 5, STAFF)
    held = await handlers.redeem(points, number, item.item_id, 2, STAFF, NOW)
    await handlers.redeem(points, number, item.item_id, 1, STAFF, NOW)
    await handlers.settle(points, held.redemption_id, STAFF, NOW, cancel_reason="changed_mind")
    books = await read_books(points)
    accounts, balances = rebuild(books.events)
    assert accounts[number] == books.accounts[number]
    assert balances == {k: v for k, v in books.journal_balances.items() if v}


async def test_a_whole_batch_for_accounts_not_open_yet_waits_in_one_transaction(points: EventStore) -> None:
    # On PostgreSQL each account not open yet is held by an advisory lock until the batch
    # commits: the service's batch must fit the server's lock table (16,000 did not).
    rules, dispatch = RuleCache(), DispatchRecords()
    batch = [dispatch.confirm(f"V{n:08d}", Decimal(1), NOW) for n in range(1, ledger_batch(points) + 1)]
    await post(points, rules, *batch)

    async with points.engine.connect() as conn:
        waiting = await conn.scalar(select(func.count()).select_from(store.waiting))
    assert waiting == len(batch)


@pytest.mark.parametrize(
    ("stored", "partitions", "starts_after"),
    [
        ({}, 2, 0),  # a new ledger: from the stream's start
        ({"points-ledger": 120}, 2, 120),  # partitioned at last: where the one follower was
        ({"points-ledger-1of2": 90, "points-ledger-2of2": 70}, 4, 70),  # every volunteer's events to 70
        ({"points-ledger": 40, "points-ledger-1of2": 90, "points-ledger-2of2": 70}, 4, 70),
        ({"points-ledger": 40, "points-ledger-1of4": 90}, 2, 40),  # four partitions, one of which never ran
        ({"points-ledger-1of2": 90, "points-ledger-2of2": 70, "points-ledger-1of4": 95}, 4, 70),
    ],
)
async def test_a_new_ledger_partition_starts_where_every_volunteers_events_are_applied(
    points: EventStore, stored: dict[str, int], partitions: int, starts_after: int
) -> None:
    checkpoints = points.schema.checkpoints
    async with points.transaction() as tx:
        for name, sequence in stored.items():
            await tx.conn.execute(checkpoints.insert().values(consumer=name, stream="DISPATCH", sequence=sequence))
            await tx.conn.execute(checkpoints.insert().values(consumer=name, stream="OTHER", sequence=1000))
    follower = ledger_follower(points, RuleCache(), partition=partitions - 1, partitions=partitions)
    await start_from_whole_ledger(follower, "DISPATCH")
    assert await follower.checkpoint("DISPATCH") == starts_after
    await start_from_whole_ledger(follower, "DISPATCH")  # once started, its own checkpoint stays
    assert await follower.checkpoint("DISPATCH") == starts_after
