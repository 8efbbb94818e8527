"""A small city's events in all three contexts, as their streams would hold them: for
reporting's tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from shared.catalog import Event, catalog
from shared.envelope import EventEnvelope
from shared.events import dispatch as d
from shared.events import points as p
from shared.events import registry as r
from tests.factories import registered

CITY, DISTRICT, STREET = "370300", "370303", "370303001000"
HEPING, XINGFU = "370303001001", "370303001002"
AT_HEPING = (DISTRICT, STREET, HEPING)
AT_XINGFU = (DISTRICT, STREET, XINGFU)
NOV_2, NOV_20, DEC_5 = date(2026, 11, 2), date(2026, 11, 20), date(2026, 12, 5)


def on(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 4, tzinfo=UTC)  # noon in the city


class Streams:
    """Each context's events in the order its stream holds them."""

    def __init__(self) -> None:
        self.by_context: dict[str, list[tuple[EventEnvelope, Event]]] = {"registry": [], "dispatch": [], "points": []}
        self.versions: dict[str, int] = {}

    def add(self, event: Event, aggregate_id: str, path: tuple[str, ...], day: date) -> None:
        self.versions[aggregate_id] = self.versions.get(aggregate_id, 0) + 1
        envelope = catalog.envelope(
            event, aggregate_id=aggregate_id, aggregate_version=self.versions[aggregate_id], org_path=path,
            actor="test", occurred_at=on(day),
        )  # fmt: skip
        self.by_context[type(event).spec.context].append((envelope, event))


def a_city() -> Streams:
    s = Streams()
    s.add(
        r.OrgUnitCreated(
            code=CITY, parent_code=None, level="city", name="淄博市", population=4_700_000, party_members=300_000
        ),
        CITY,
        (CITY,),
        NOV_2,
    )
    s.add(
        r.OrgUnitCreated(
            code=DISTRICT, parent_code=CITY, level="district", name="张店区", population=1_000_000, party_members=60_000
        ),
        DISTRICT,
        (DISTRICT,),
        NOV_2,
    )
    s.add(
        r.OrgUnitCreated(
            code=STREET, parent_code=DISTRICT, level="street", name="车站街道", population=80_000, party_members=5_000
        ),
        STREET,
        (DISTRICT, STREET),
        NOV_2,
    )
    for code, name in ((HEPING, "和平社区"), (XINGFU, "幸福社区")):
        s.add(
            r.OrgUnitCreated(
                code=code, parent_code=STREET, level="community", name=name, population=8_000, party_members=500
            ),
            code,
            (DISTRICT, STREET, code),
            NOV_2,
        )
    s.add(
        r.SiteOpened(
            site_id="ST-HEPING", org_unit_code=HEPING, level="station", kind="community", name="站", opened_on=NOV_2
        ),
        "ST-HEPING",
        AT_HEPING,
        NOV_2,
    )
    s.add(
        r.SiteOpened(
            site_id="ST-OLD", org_unit_code=HEPING, level="station", kind="community", name="旧站", opened_on=NOV_2
        ),
        "ST-OLD",
        AT_HEPING,
        NOV_2,
    )
    s.add(r.SiteClosed(site_id="ST-OLD", closed_on=NOV_20, reason="merged"), "ST-OLD", AT_HEPING, NOV_20)
    for n in (1, 2, 3):
        s.add(registered(n, party=n == 1), f"V{n:08d}", AT_HEPING, NOV_2)
        s.add(r.VolunteerVerified(volunteer_number=f"V{n:08d}"), f"V{n:08d}", AT_HEPING, NOV_2)
    s.add(r.PartyMemberReportedIn(volunteer_number="V00000001", community_code=HEPING), "V00000001", AT_HEPING, NOV_2)
    s.add(
        r.VolunteerTransferred(volunteer_number="V00000002", from_community_code=HEPING, from_org_path=list(AT_HEPING), to_community_code=XINGFU, approved_by="staff"),
        "V00000002", AT_XINGFU, NOV_20,
    )  # fmt: skip
    s.add(r.VolunteerDeregistered(volunteer_number="V00000003", on_request=True), "V00000003", AT_HEPING, DEC_5)
    s.add(
        r.TeamCreated(
            team_id="T00000001",
            site_id="ST-HEPING",
            name="夕阳红",
            kind="general",
            capacity=30,
            leader_number="V00000001",
        ),
        "T00000001",
        AT_HEPING,
        NOV_2,
    )
    s.add(
        r.TrainingSessionHeld(session_id="TS1", site_id="ST-HEPING", topic="first_aid", held_on=NOV_20, hours=2),
        "TS1",
        AT_HEPING,
        NOV_20,
    )
    s.add(r.TrainingAttended(session_id="TS1", volunteer_number="V00000001"), "TS1", AT_HEPING, NOV_20)

    s.add(
        d.ActivityScheduled(activity_id="A00000001", site_id="ST-HEPING", kind="festival", theme="lantern_festival", field="civilised_traffic", group_served="public_needs", starts_on=NOV_20, ends_on=NOV_20),
        "A00000001", AT_HEPING, NOV_2,
    )  # fmt: skip
    s.add(
        d.VolunteerCheckedIn(shift_id="SH00000001", volunteer_number="V00000001", at=on(NOV_20)),
        "SH00000001.V00000001",
        AT_HEPING,
        NOV_20,
    )
    record = dict(record_id="R00000001", volunteer_number="V00000001", activity_id="A00000001", shift_id="SH00000001", site_id="ST-HEPING", field="civilised_traffic", group_served="public_needs", service_date=NOV_20, source="attendance")  # fmt: skip
    s.add(
        d.ServiceHoursConfirmed(**record, minutes=120, hours=Decimal(2), at=on(NOV_20)), "R00000001", AT_HEPING, NOV_20
    )
    s.add(
        d.ServiceHoursAdjusted(
            **record,
            previous_minutes=120,
            previous_hours=Decimal(2),
            minutes=90,
            hours=Decimal("1.5"),
            reason="recount",
            at=on(DEC_5),
        ),
        "R00000001",
        AT_HEPING,
        DEC_5,
    )
    window = dict(window_start=on(NOV_20), window_end=on(DEC_5))
    s.add(d.OrderPlaced(order_id="O00000001", kind="order", group_served="elderly", field="legal_aid", community_code=HEPING, site_id="ST-HEPING", headcount=1, placed_via="resident", placed_at=on(NOV_2), **window), "O00000001", AT_HEPING, NOV_2)  # fmt: skip
    s.add(
        d.OrderAccepted(order_id="O00000001", accepted_by="V00000001", attempt=1, at=on(NOV_20)),
        "O00000001",
        AT_HEPING,
        NOV_20,
    )
    s.add(d.OrderCompleted(order_id="O00000001", people_served=3, at=on(NOV_20)), "O00000001", AT_HEPING, NOV_20)
    s.add(d.OrderRated(order_id="O00000001", rating=5, at=on(NOV_20)), "O00000001", AT_HEPING, NOV_20)

    s.add(p.PointsAccountOpened(volunteer_number="V00000001"), "V00000001", AT_HEPING, NOV_2)
    posting = dict(volunteer_number="V00000001", record_id="R00000001", service_date=NOV_20, service_district=DISTRICT, rule_version=0)  # fmt: skip
    s.add(
        p.ServiceCredited(
            **posting, change="confirmed", hours=Decimal(2), points=20, time_credit_minutes=120, total_hours=Decimal(2)
        ),
        "V00000001",
        AT_HEPING,
        NOV_20,
    )
    s.add(
        p.ServiceDebited(
            **posting,
            change="adjusted",
            hours=Decimal("0.5"),
            points=5,
            time_credit_minutes=30,
            total_hours=Decimal("1.5"),
        ),
        "V00000001",
        AT_HEPING,
        DEC_5,
    )
    s.add(
        p.StarLevelAwarded(volunteer_number="V00000001", star_level=1, previous_star_level=0, total_hours=Decimal(2)),
        "V00000001",
        AT_HEPING,
        NOV_20,
    )
    s.add(
        p.RedemptionHandedOver(
            redemption_id="RD00000001", volunteer_number="V00000001", site_id="ST-HEPING", points=10, at=on(DEC_5)
        ),
        "RD00000001",
        AT_HEPING,
        DEC_5,
    )
    return s


DISTRICTS = ("370302", "370303", "370304", "370305")  # split 2 : 2 by partition_of(code, 2)


def community_in(district: str, n: int) -> tuple[str, str, str]:
    street = f"{district}001000"
    return (district, street, f"{district}001{1 + n % 2:03d}")


def a_city_of_districts(volunteers: int = 60, records: int = 240, orders: int = 40) -> Streams:
    """Four districts' events in all three contexts, with what crosses districts: volunteers
    transferred from one district to another (some after hours confirmed, some before a
    deregistration), and hours served in a district other than the volunteer's, adjusted and
    revoked, each counting to the volunteer's year wherever served."""
    s = Streams()
    s.add(r.OrgUnitCreated(code=CITY, parent_code=None, level="city", name="淄博市", population=4_700_000, party_members=300_000), CITY, (CITY,), NOV_2)  # fmt: skip
    for i, district in enumerate(DISTRICTS):
        s.add(r.OrgUnitCreated(code=district, parent_code=CITY, level="district", name=f"区{i}", population=900_000, party_members=50_000), district, (district,), NOV_2)  # fmt: skip
        street = f"{district}001000"
        s.add(r.OrgUnitCreated(code=street, parent_code=district, level="street", name="街道", population=90_000, party_members=5_000), street, (district, street), NOV_2)  # fmt: skip
        for n in (0, 1):
            path = community_in(district, n)
            s.add(r.OrgUnitCreated(code=path[-1], parent_code=street, level="community", name="社区", population=9_000, party_members=500), path[-1], path, NOV_2)  # fmt: skip
            s.add(r.SiteOpened(site_id=f"ST-{path[-1]}", org_unit_code=path[-1], level="station", kind="community", name="站", opened_on=NOV_2), f"ST-{path[-1]}", path, NOV_2)  # fmt: skip
    home: dict[str, tuple[str, ...]] = {}
    for n in range(1, volunteers + 1):
        number, path = f"V{n:08d}", community_in(DISTRICTS[n % len(DISTRICTS)], n)
        home[number] = path
        joined = registered(n, party=n % 5 == 0).model_copy(update={"community_code": path[-1]})
        s.add(joined, number, path, NOV_2)
        s.add(r.VolunteerVerified(volunteer_number=number), number, path, NOV_2)
        s.add(p.PointsAccountOpened(volunteer_number=number), number, path, NOV_2)
    for i in range(records):
        number = f"V{1 + i % volunteers:08d}"
        day = NOV_2 + timedelta(days=1 + i // volunteers)
        served = community_in(DISTRICTS[(i // 3) % len(DISTRICTS)], i)  # often not the volunteer's district
        record, shift, hours = f"R{i:08d}", f"SH{i:08d}", Decimal(1 + i % 6) / 2
        common = dict(record_id=record, volunteer_number=number, activity_id=f"A{i % 7:08d}", shift_id=shift, site_id=f"ST-{served[-1]}", field="civilised_traffic", group_served="elderly", service_date=day, source="attendance")  # fmt: skip
        s.add(
            d.VolunteerCheckedIn(shift_id=shift, volunteer_number=number, at=on(day)), f"{shift}.{number}", served, day
        )
        s.add(d.ServiceHoursConfirmed(**common, minutes=int(hours * 60), hours=hours, at=on(day)), record, served, day)
        credit = dict(volunteer_number=number, record_id=record, service_date=day, service_district=served[0], rule_version=0)  # fmt: skip
        s.add(p.ServiceCredited(**credit, change="confirmed", hours=hours, points=int(hours * 10), time_credit_minutes=int(hours * 60), total_hours=hours), number, home[number], day)  # fmt: skip
        if i % 5 == 0:
            later = hours + Decimal("0.5")
            s.add(d.ServiceHoursAdjusted(**common, previous_minutes=int(hours * 60), previous_hours=hours, minutes=int(later * 60), hours=later, reason="recount", at=on(day)), record, served, day)  # fmt: skip
        elif i % 11 == 0:
            s.add(d.ServiceHoursRevoked(**common, minutes=int(hours * 60), hours=hours, reason="not_served", at=on(day)), record, served, day)  # fmt: skip
        if i % volunteers == volunteers - 1 and i // volunteers < 2:
            # Halfway through the hours, a third of the volunteers move to the next district.
            for v in range(1, volunteers + 1, 3):
                moved, before = f"V{v:08d}", home[f"V{v:08d}"]
                after = community_in(DISTRICTS[(DISTRICTS.index(before[0]) + 1) % len(DISTRICTS)], v + i)
                s.add(r.VolunteerTransferred(volunteer_number=moved, from_community_code=before[-1], from_org_path=list(before), to_community_code=after[-1], approved_by="staff"), moved, after, day)  # fmt: skip
                home[moved] = after
    for v in range(2, volunteers + 1, 9):
        s.add(
            r.VolunteerDeregistered(volunteer_number=f"V{v:08d}", on_request=True),
            f"V{v:08d}",
            home[f"V{v:08d}"],
            DEC_5,
        )
    for o in range(1, orders + 1):
        order, path, day = f"O{o:08d}", community_in(DISTRICTS[o % len(DISTRICTS)], o), NOV_2 + timedelta(days=o % 10)
        window = dict(window_start=on(day), window_end=on(day) + timedelta(hours=2))
        s.add(d.OrderPlaced(order_id=order, kind="order", group_served="elderly", field="legal_aid", community_code=path[-1], site_id=f"ST-{path[-1]}", headcount=1, placed_via="resident", placed_at=on(day), **window), order, path, day)  # fmt: skip
        if o % 3 == 0:  # dispatched, then dispatched again: the first time counts
            for attempt, minutes in ((1, o % 7), (2, 30)):
                s.add(d.OrderDispatched(order_id=order, volunteer_numbers=[f"V{o:08d}"], site_id=f"ST-{path[-1]}", deadline=on(day) + timedelta(hours=1), attempt=attempt, at=on(day) + timedelta(minutes=minutes)), order, path, day)  # fmt: skip
        s.add(d.OrderAccepted(order_id=order, accepted_by=f"V{o:08d}", attempt=1, at=on(day) + timedelta(minutes=o)), order, path, day)  # fmt: skip
        if o % 4:
            s.add(d.OrderCompleted(order_id=order, people_served=1 + o % 3, at=on(day) + timedelta(hours=1)), order, path, day)  # fmt: skip
            s.add(d.OrderRated(order_id=order, rating=3 + o % 3, at=on(day) + timedelta(hours=2)), order, path, day)  # fmt: skip
    return s
