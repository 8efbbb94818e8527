"""Every service fuzzed through its own OpenAPI document (schemathesis): the four run for real over
a real NATS with SQLite stores and the demo city in them; each operation gets valid and invalid
input, half of its path ids aimed at what exists. No answer may be a server error or differ from
what the document promises (status, media type, schema), and nothing accepted before is lost."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deploy import demo_city
from shared.citytime import city_date
from tests.infra.auth import staff
from tests.infra.auth import volunteer as as_volunteer
from tests.infra.dispatch import Clock
from tests.infra.nats import nats_server
from tests.infra.served import SERVICES, ServedCity, served_city

Mode = schemathesis.GenerationMode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STAFF = staff("fuzz-staff")
# Examples per operation, valid and invalid: about a minute for the four services on two cores.
EXAMPLES = {Mode.POSITIVE: 16, Mode.NEGATIVE: 8}

Known = dict[str, list[str]]  # existing ids, by the name of the path parameter that takes them


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedCity, dict[str, Known]]]:
    """The four services with the demo city in them, and what exists in each."""
    with nats_server() as nats_url, served_city(nats_url, tmp_path_factory.mktemp("fuzz")) as served:
        yield served, seed(served)


def seed(city: ServedCity) -> dict[str, Known]:
    """The demo city, a team, a training session, and a volunteer's half hour on the demo's shift,
    checked in and out and confirmed: its points buy something at the demo shop and its time
    credits are set aside."""
    token = STAFF["Authorization"].removeprefix("Bearer ")
    demo_city.load(city.urls["registry"], token)
    demo = demo_city.load_dispatch(city.urls["dispatch"], token)
    shop = demo_city.load_points(city.urls["points"], token=token)
    volunteer, *others = [f"V{n:08d}" for n in (1, 10, 19, 28)]  # signed up for the demo's shift on now
    communities = ["370303001001", "370303002002"]
    clock = Clock(datetime.now(UTC))
    city.apps["dispatch"].state.clock = clock
    today = city_date(clock.now).isoformat()
    registry, dispatch, points = (client(city, s) for s in ("registry", "dispatch", "points"))
    with registry, dispatch, points:
        team = ok(registry.post("/teams", json={
            "site_id": demo_city.DEMO_STATION, "name": "灯会引导队", "capacity": 10, "leader_number": volunteer,
        }))["team_id"]  # fmt: skip
        session = ok(registry.post("/training-sessions", json={
            "site_id": demo_city.DEMO_STATION, "topic": "first_aid", "held_on": today, "hours": 2, "trainer": "王医生",
        }))["session_id"]  # fmt: skip

        ok(points.post("/districts/370303/points-rules", json={"effective_from": today, "points_per_hour": 1000}))

        def scan() -> None:
            shift = demo["shift_id"]
            code = ok(dispatch.get(f"/shifts/{shift}/code"))["code"]
            scanned = {"code": code, "volunteer_number": volunteer, "shift_id": shift}
            ok(dispatch.post("/scans", json=scanned, headers=as_volunteer(volunteer)))

        scan()  # in
        clock.move(minutes=30)
        scan()  # and out
        recorded = until(
            lambda: dispatch.get("/service-records", params={"volunteer": volunteer}), lambda r: bool(r.json()["items"])
        )
        record = recorded.json()["items"][0]["record_id"]
        ok(dispatch.post(f"/service-records/{record}/confirm", json={}))
        until(lambda: points.get(f"/accounts/{volunteer}"), lambda r: r.status_code == 200 and r.json()["balance"] > 0)
        items = sorted(points.get(f"/sites/{shop}/items").json()["items"], key=lambda item: item["price_points"])
        cheapest = items[0]["item_id"]
        redemption = ok(points.post("/redemptions", json={"volunteer_number": volunteer, "item_id": cheapest}))
        reservation = ok(points.post(f"/time-bank/{volunteer}/reservations", json={"minutes": 10}))
        ok(points.post(f"/time-bank/{volunteer}/family", json={"member_number": others[0], "relation": "spouse"}))
        orders = [o["order_id"] for o in dispatch.get("/orders").json()["items"]]
    volunteers = [volunteer, *others]
    return {
        "registry": {
            "code": ["370300", "370303", *communities], "site_id": [demo_city.DEMO_STATION, "centre-370303"],
            "number": volunteers, "team_id": [team], "session_id": [session],
        },
        "dispatch": {
            "volunteer_number": volunteers, "order_id": orders, "activity_id": [demo["activity_id"]],
            "shift_id": [demo["shift_id"]], "record_id": [record], "district_code": ["370303"],
        },
        "points": {
            "volunteer_number": volunteers, "member_number": volunteers, "district_code": ["370303"], "site_id": [shop],
            "item_id": [item["item_id"] for item in items], "redemption_id": [redemption["redemption_id"]],
            "reservation_id": [reservation["reservation_id"]], "level": ["1", "5"],
        },
        "reporting": {"code": ["370300", "370303", *communities]},
    }  # fmt: skip


def client(city: ServedCity, service: str) -> httpx.Client:
    return httpx.Client(base_url=city.urls[service], headers=STAFF, timeout=30)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def until(probe: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while not done(response := probe()):
        assert time.monotonic() < deadline, f"{response.request.url}: still {response.status_code} {response.text}"
        time.sleep(0.1)
    return response


def accepted(database: Path) -> list[tuple[Any, ...]]:
    """Every event in a service's store, as stored."""
    with sqlite3.connect(database) as conn:
        columns = "position, event_id, aggregate_id, aggregate_version, envelope"
        return conn.execute(f"SELECT {columns} FROM events ORDER BY position").fetchall()


def fuzz(operation: schemathesis.APIOperation, mode: Mode, known: Known) -> tuple[int, str | None]:
    """One operation's examples: how many ran, and what the first failing one found."""
    ran = 0

    @settings(
        max_examples=EXAMPLES[mode], derandomize=True, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False,
    )  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def examples(case: schemathesis.Case, data: st.DataObject) -> None:
        nonlocal ran
        ran += 1
        for name in list(case.path_parameters or {}):
            if known.get(name) and data.draw(st.booleans(), label=f"an existing {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(known[name]), label=name)
        if data.draw(st.booleans(), label="as staff"):
            case.headers = {**(case.headers or {}), **STAFF}
        case.call_and_validate(checks=CHECKS, timeout=30)

    try:
        examples()
    except Unsatisfiable:
        if mode is Mode.NEGATIVE:
            return ran, None  # the operation takes nothing that can be made invalid
        raise
    except schemathesis.errors.FailureGroup as finding:
        return ran, f"{operation.label} ({mode.value} input):\n{finding}"
    return ran, None


@pytest.mark.parametrize("service", SERVICES)
def test_no_input_gets_a_server_error_or_an_answer_the_document_does_not_promise(city, service: str) -> None:
    served, known = city
    schema = schemathesis.openapi.from_url(f"{served.urls[service]}/openapi.json")
    before = accepted(served.databases[service]) if service != "reporting" else []  # reporting keeps no events
    started, operations, examples, findings = time.monotonic(), 0, 0, []
    for result in schema.get_all_operations():
        operation = result.ok()  # an operation the document itself gets wrong fails here
        operations += 1
        for mode in EXAMPLES:
            ran, finding = fuzz(operation, mode, known[service])
            examples += ran
            if finding:
                findings.append(finding)
    print(f"{service}: {operations} operations, {examples} examples, {time.monotonic() - started:.1f} s")
    assert not findings, f"{len(findings)} operations answered against their document:\n\n" + "\n\n".join(findings)
    assert accepted(served.databases[service])[: len(before)] == before, "an event accepted before changed or went"


@pytest.mark.parametrize(
    ("service", "method", "path", "sent", "field"),
    [
        ("registry", "GET", "/volunteers?site=ST%00", {}, "site"),  # PostgreSQL cannot compare it
        ("registry", "GET", "/sites/ST%00X", {}, "site_id"),
        ("registry", "POST", "/sites", {"json": {"site_id": "ST-1", "name": "站\u0000"}}, "name"),
        ("registry", "POST", "/org-units", {"content": b'{"code": "\xff"}', "headers": {"content-type": "application/json"}}, "body"),
        ("registry", "POST", "/org-units", {"content": b'{"code": ', "headers": {"content-type": "application/json"}}, "body"),
        ("registry", "POST", "/org-units/import", {"content": b"code\n\xff", "headers": {"content-type": "text/csv"}}, "file"),
        ("registry", "POST", "/org-units/import", {"content": b"[", "headers": {"content-type": "application/json"}}, "file"),
        ("registry", "POST", "/org-units", {"json": {"code": "370399", "level": "district", "name": "区", "population": 2**31, "party_members": 0}}, "population"),
        ("dispatch", "GET", "/volunteers/V00000001/notices?after=9223372036854775808", {}, "after"),  # past a 64-bit integer
        ("points", "GET", "/accounts/V00000001/statement?after=9223372036854775808", {}, "after"),
        ("reporting", "GET", "/figures/370303/trend?figure=service.hours&by=day&to=0001-01-01", {}, "to"),  # 30 days before it: no calendar
    ],
)  # fmt: skip
def test_bad_input_is_refused_as_problem_details_naming_the_field(
    city, service: str, method: str, path: str, sent: dict[str, Any], field: str
) -> None:
    served, _ = city
    with client(served, service) as http:
        refused = http.request(method, path, **sent)
    assert (refused.status_code, refused.headers["content-type"]) == (422, "application/problem+json"), refused.text
    assert refused.json()["errors"][0]["field"] == field, refused.text
