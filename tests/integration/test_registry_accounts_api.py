"""Registry's sign-in through its HTTP API, over a real store (SQLite and PostgreSQL) and NATS:
tokens and their claims, the same 401 for a wrong username and a wrong password, the lock-out,
refresh rotation and reuse, sign-out, accounts opened inside and outside the opener's scope and
level, closing and passwords, and no username or password in any event or log line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from services.registry import credentials, store
from services.registry.handlers import accounts as account_handlers
from services.registry.handlers import sign_in as sign_in_handlers
from shared.auth import AUDIENCE, ISSUER, Actor, Role
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.accounts import VERIFIER, registry_app
from tests.infra.auth import TEST_PUBLIC_KEY, bearer
from tests.infra.dispatch import Clock

NOW = datetime.now(UTC).replace(microsecond=0)  # access tokens are checked against the real time
CITY, DISTRICT = "370300", "370303"
STREET, COMMUNITY = "370303001000", "370303001001"
OTHER_STREET, OTHER_COMMUNITY = "370303002000", "370303002001"
TREE = (
    {"code": CITY, "level": "city", "name": "淄博市", "population": 4_700_000, "party_members": 300_000},
    {
        "code": DISTRICT,
        "level": "district",
        "name": "张店区",
        "population": 1_000_000,
        "party_members": 60_000,
        "parent_code": CITY,
    },
    {
        "code": STREET,
        "level": "street",
        "name": "车站街道",
        "population": 80_000,
        "party_members": 5_000,
        "parent_code": DISTRICT,
    },
    {
        "code": COMMUNITY,
        "level": "community",
        "name": "和平社区",
        "population": 8_000,
        "party_members": 500,
        "parent_code": STREET,
    },
    {
        "code": OTHER_STREET,
        "level": "street",
        "name": "公园街道",
        "population": 90_000,
        "party_members": 5_500,
        "parent_code": DISTRICT,
    },
    {
        "code": OTHER_COMMUNITY,
        "level": "community",
        "name": "新华社区",
        "population": 9_000,
        "party_members": 550,
        "parent_code": OTHER_STREET,
    },
)
ADMIN = bearer(Role.city_admin, CITY, account="AC99999999")
STATION = bearer(Role.station_staff, COMMUNITY, account="AC99999998")
PASSWORD = "lantern-festival-2026"


@dataclass
class City:
    client: httpx.AsyncClient
    app: Any
    clock: Clock
    volunteer: str  # in COMMUNITY
    other_volunteer: str  # in OTHER_COMMUNITY
    team: str  # at COMMUNITY's station
    other_team: str  # at OTHER_COMMUNITY's station


async def _volunteer(client: httpx.AsyncClient, n: int, community: str) -> str:
    body = {
        "name": "王芳", "id_number": resident_id(f"37030319850612{n:03d}"), "phone": f"1391234{n:04d}",
        "community_code": community, "skills": ["first_aid"], "consent": True,
    }  # fmt: skip
    response = await client.post("/volunteers", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["volunteer_number"]


async def _team(client: httpx.AsyncClient, site: str, leader: str) -> str:
    body = {"site_id": site, "name": "和平志愿服务队", "capacity": 10, "leader_number": leader}
    response = await client.post("/teams", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["team_id"]


@pytest.fixture
async def city(nats_url: str, database_url: str) -> Any:
    async with registry_app(nats_url, database_url, NOW) as (client, app, clock):
        for unit in TREE:
            response = await client.post("/org-units", json=unit, headers=ADMIN)
            assert response.status_code == 201, response.text
        for site, community in (("ST-HEPING", COMMUNITY), ("ST-XINHUA", OTHER_COMMUNITY)):
            body = {
                "site_id": site,
                "org_unit_code": community,
                "level": "station",
                "kind": "community",
                "name": "文明实践站",
            }
            response = await client.post("/sites", json=body, headers=ADMIN)
            assert response.status_code == 201, response.text
        here, there = await _volunteer(client, 1, COMMUNITY), await _volunteer(client, 2, OTHER_COMMUNITY)
        yield City(
            client,
            app,
            clock,
            here,
            there,
            await _team(client, "ST-HEPING", here),
            await _team(client, "ST-XINHUA", there),
        )


async def open_account(city: City, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await city.client.post("/accounts", json={"password": PASSWORD, **body}, headers=headers)


async def opened(city: City, username: str, role: Role, scope: str, headers: dict[str, str] = ADMIN) -> str:
    response = await open_account(city, headers, username=username, role=role, scope=scope)
    assert response.status_code == 201, response.text
    return response.json()["account_id"]


async def sign_in(city: City, username: str, password: str = PASSWORD) -> httpx.Response:
    return await city.client.post("/auth/token", data={"username": username, "password": password})


async def tokens(city: City, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await sign_in(city, username, password)
    assert response.status_code == 200, response.text
    return response.json()


def as_holder(answer: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {answer['access_token']}"}


async def refresh(city: City, refresh_token: str) -> httpx.Response:
    return await city.client.post("/auth/refresh", data={"refresh_token": refresh_token})


async def envelopes(app: Any) -> list[bytes]:
    events = app.state.registry.events
    async with events.engine.connect() as conn:
        stored = (await conn.execute(select(events.schema.events.c.envelope))).scalars().all()
        published = (await conn.execute(select(events.schema.outbox.c.body))).scalars().all()
    return [*stored, *published]


async def account_events(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, actor, payload) of every account event, in order."""
    events = app.state.registry.events
    loaded = []
    async with events.engine.connect() as conn:
        ids = (
            await conn.execute(
                select(events.schema.events.c.aggregate_id).where(events.schema.events.c.aggregate_type == "account")
            )
        ).scalars()
        for account_id in sorted(set(ids)):
            loaded += [(e.type, e.actor, e.payload) for e in await events.load("account", account_id)]
    return loaded


# --- signing in ---------------------------------------------------------------------------------


async def test_signing_in_gives_an_access_token_that_names_the_account_its_role_and_scope(city: City) -> None:
    account_id = await opened(city, "heping-station", Role.station_staff, COMMUNITY)
    response = await sign_in(city, "Heping-Station")  # the username's case does not matter
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert (answer["token_type"], answer["expires_in"], answer["password_change_required"]) == ("bearer", 900, True)
    assert len(answer["refresh_token"]) >= 40

    assert VERIFIER.actor(answer["access_token"]) == Actor(account_id, Role.station_staff, COMMUNITY)
    claims = jwt.decode(
        answer["access_token"],
        TEST_PUBLIC_KEY,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_iat": False, "verify_exp": False},
    )
    assert (claims["sub"], claims["role"], claims["scope"]) == (account_id, "station_staff", COMMUNITY)
    assert claims["exp"] - claims["iat"] == 900 and claims["iat"] == int(NOW.timestamp())
    assert jwt.get_unverified_header(answer["access_token"])["alg"] == "EdDSA"

    # The token is the caller: the holder reads their own account with it.
    mine = await city.client.get(f"/accounts/{account_id}", headers=as_holder(answer))
    assert mine.status_code == 200 and mine.json()["username"] == "heping-station"


async def test_a_wrong_password_and_an_unknown_username_get_the_same_401_after_the_same_argon2_work(city: City) -> None:
    await opened(city, "heping-station", Role.station_staff, COMMUNITY)
    checked = credentials._hasher.checks
    checked.clear()
    wrong_password = await sign_in(city, "heping-station", "not-the-password")
    unknown_user = await sign_in(city, "nobody-at-all", "not-the-password")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json() == unknown_user.json()
    assert wrong_password.json()["detail"] == "wrong username or password"
    assert wrong_password.headers["www-authenticate"] == unknown_user.headers["www-authenticate"]
    assert wrong_password.headers["content-type"] == "application/problem+json"
    assert len(checked) == 2 and all(
        h.startswith("$argon2id$") for h in checked
    )  # a stand-in hash for the unknown name


async def test_five_failures_lock_a_username_out_for_15_minutes_with_429_and_retry_after(city: City) -> None:
    await opened(city, "heping-station", Role.station_staff, COMMUNITY)
    for _ in range(5):
        assert (await sign_in(city, "heping-station", "guess")).status_code == 401
    locked = await sign_in(city, "heping-station")  # even the right password
    assert locked.status_code == 429, locked.text
    assert locked.headers["retry-after"] == "900" and locked.json()["retry_after"] == 900
    assert locked.headers["content-type"] == "application/problem+json"

    # A username without an account is locked out the same way: the answer says nothing of which exist.
    for _ in range(5):
        assert (await sign_in(city, "nobody-at-all", "guess")).status_code == 401
    nobody = await sign_in(city, "nobody-at-all", "guess")
    assert (nobody.status_code, nobody.json()["detail"]) == (429, locked.json()["detail"])

    city.clock.move(minutes=10)
    still = await sign_in(city, "heping-station")
    assert still.status_code == 429 and still.headers["retry-after"] == "300"
    city.clock.move(minutes=5)
    assert (await sign_in(city, "heping-station")).status_code == 200


async def test_a_success_resets_the_count_and_old_failures_run_out(city: City) -> None:
    await opened(city, "heping-station", Role.station_staff, COMMUNITY)
    for _ in range(4):
        assert (await sign_in(city, "heping-station", "guess")).status_code == 401
    assert (await sign_in(city, "heping-station")).status_code == 200
    for _ in range(4):
        assert (await sign_in(city, "heping-station", "guess")).status_code == 401
    city.clock.move(minutes=15)  # those four are no longer in a row within 15 minutes
    for _ in range(4):
        assert (await sign_in(city, "heping-station", "guess")).status_code == 401
    assert (await sign_in(city, "heping-station")).status_code == 200


async def test_attempts_at_once_are_all_counted_and_no_more_than_five_passwords_are_checked(city: City) -> None:
    await opened(city, "heping-station", Role.station_staff, COMMUNITY)
    checked = credentials._hasher.checks
    checked.clear()
    answers = await asyncio.gather(*(sign_in(city, "heping-station", f"guess-{n}") for n in range(12)))
    assert sorted(a.status_code for a in answers) == [401] * 5 + [429] * 7
    assert len(checked) == 5


# --- refresh tokens -----------------------------------------------------------------------------


async def test_a_refresh_rotates_and_a_used_refresh_token_revokes_its_whole_sign_in(city: City) -> None:
    account_id = await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    first = await tokens(city, "volunteer-1")
    elsewhere = await tokens(city, "volunteer-1")  # another device: another sign-in

    rotated = await refresh(city, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert VERIFIER.actor(second["access_token"]) == Actor(account_id, Role.volunteer, city.volunteer)

    reused = await refresh(city, first["refresh_token"])  # a copy of the first token turns up
    assert reused.status_code == 401 and "used before" in reused.json()["detail"]
    assert (await refresh(city, second["refresh_token"])).status_code == 401  # the thief's and the holder's alike
    assert (await refresh(city, elsewhere["refresh_token"])).status_code == 200  # the other sign-in goes on
    assert (await refresh(city, "not-a-token-at-all")).status_code == 401


async def test_signing_out_revokes_the_refresh_token_and_refresh_tokens_expire_after_30_days(city: City) -> None:
    await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    signed_out = await tokens(city, "volunteer-1")
    revoked = await city.client.post("/auth/revoke", data={"token": signed_out["refresh_token"]})
    assert revoked.status_code == 200 and revoked.json() == {"status": "revoked"}
    assert (await refresh(city, signed_out["refresh_token"])).status_code == 401
    assert (await city.client.post("/auth/revoke", data={"token": "unknown"})).status_code == 200

    kept = await tokens(city, "volunteer-1")
    city.clock.move(days=30)
    expired = await refresh(city, kept["refresh_token"])
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


async def test_the_hourly_clean_up_forgets_expired_refresh_tokens_and_spent_failure_counts(city: City) -> None:
    await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    await tokens(city, "volunteer-1")
    await sign_in(city, "somebody-else", "guess")
    city.clock.move(minutes=5)
    for _ in range(5):
        await sign_in(city, "nobody-at-all", "guess")  # locked out until NOW + 20 minutes
    registry = city.app.state.registry
    assert await sign_in_handlers.forget_expired(registry, NOW) == []
    assert await sign_in_handlers.forget_expired(registry, NOW + timedelta(minutes=15)) == [
        "1 sign-in failure counts forgotten"  # the other username is still locked out
    ]
    assert await sign_in_handlers.forget_expired(registry, NOW + timedelta(days=30)) == [
        "1 expired refresh tokens dropped",
        "1 sign-in failure counts forgotten",
    ]


async def test_closing_an_account_ends_its_refresh_tokens_and_its_sign_in(city: City) -> None:
    account_id = await opened(city, "volunteer-1", Role.volunteer, city.volunteer, headers=STATION)
    held = await tokens(city, "volunteer-1")
    closed = await city.client.post(f"/accounts/{account_id}/close", headers=STATION)
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert (await refresh(city, held["refresh_token"])).status_code == 401
    refused = await sign_in(city, "volunteer-1")
    assert refused.status_code == 401 and refused.json()["detail"] == "wrong username or password"
    assert (await city.client.post(f"/accounts/{account_id}/close", headers=STATION)).status_code == 409
    # The username is free again, for the same person's new account.
    assert await opened(city, "volunteer-1", Role.volunteer, city.volunteer, headers=STATION) != account_id


async def test_the_holder_changes_their_password_with_the_old_one_and_their_refresh_tokens_end(city: City) -> None:
    account_id = await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    held = await tokens(city, "volunteer-1")
    assert held["password_change_required"] is True
    path = f"/accounts/{account_id}/password"

    wrong = await city.client.put(
        path, json={"old_password": "not-it", "new_password": "new-password-1"}, headers=as_holder(held)
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "old_password"
    someone_else = bearer(Role.volunteer, city.other_volunteer, account="AC99999997")
    assert (
        await city.client.put(
            path, json={"old_password": PASSWORD, "new_password": "new-password-1"}, headers=someone_else
        )
    ).status_code == 404

    changed = await city.client.put(
        path, json={"old_password": PASSWORD, "new_password": "new-password-1"}, headers=as_holder(held)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["password_change_required"] is False
    assert (await refresh(city, held["refresh_token"])).status_code == 401
    assert (await sign_in(city, "volunteer-1")).status_code == 401
    assert (await tokens(city, "volunteer-1", "new-password-1"))["password_change_required"] is False


async def test_staff_over_an_account_reset_its_password_to_a_temporary_one(city: City) -> None:
    account_id = await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    held = await tokens(city, "volunteer-1")
    path = f"/accounts/{account_id}/password-reset"

    assert (await city.client.post(path, headers=as_holder(held))).status_code == 403  # not staff
    outside = bearer(Role.station_staff, OTHER_COMMUNITY, account="AC99999996")
    assert (await city.client.post(path, headers=outside)).status_code == 404

    reset = await city.client.post(path, headers=STATION)
    assert reset.status_code == 200, reset.text
    temporary = reset.json()["temporary_password"]
    assert len(temporary) >= 16 and reset.json()["password_change_required"] is True
    assert (await refresh(city, held["refresh_token"])).status_code == 401
    assert (await tokens(city, "volunteer-1", temporary))["password_change_required"] is True
    given = await city.client.post(path, json={"temporary_password": "handed-over-1"}, headers=STATION)
    assert given.status_code == 200 and "temporary_password" not in given.json()
    assert (await sign_in(city, "volunteer-1", "handed-over-1")).status_code == 200


# --- opening accounts ---------------------------------------------------------------------------


async def test_station_staff_open_accounts_for_their_communitys_volunteers_and_teams_only(city: City) -> None:
    before = len(await account_events(city.app))
    assert (
        await open_account(city, STATION, username="v-here", role="volunteer", scope=city.volunteer)
    ).status_code == 201
    assert (
        await open_account(city, STATION, username="t-here", role="team_leader", scope=city.team)
    ).status_code == 201
    assert (
        await open_account(city, STATION, username="s-here", role="station_staff", scope=COMMUNITY)
    ).status_code == 201

    outside = [
        await open_account(city, STATION, username="v-there", role="volunteer", scope=city.other_volunteer),
        await open_account(city, STATION, username="t-there", role="team_leader", scope=city.other_team),
        await open_account(city, STATION, username="s-there", role="station_staff", scope=OTHER_COMMUNITY),
    ]
    assert [r.status_code for r in outside] == [404, 404, 404]
    # Outside their part of the city is answered exactly as what does not exist.
    unknown = await open_account(city, STATION, username="v-none", role="volunteer", scope="V99999999")
    assert unknown.json()["detail"] == "unknown volunteer V99999999"
    assert outside[0].json()["detail"] == f"unknown volunteer {city.other_volunteer}"

    above = [
        await open_account(city, STATION, username="street", role="street_staff", scope=STREET),
        await open_account(city, STATION, username="partner", role="partner", scope=""),
        await open_account(
            city,
            bearer(Role.volunteer, city.volunteer),
            username="by-volunteer",
            role="volunteer",
            scope=city.volunteer,
        ),
        await open_account(
            city, bearer(Role.team_leader, city.team), username="by-leader", role="volunteer", scope=city.volunteer
        ),
    ]
    assert [r.status_code for r in above] == [403, 403, 403, 403]
    assert above[0].headers["content-type"] == "application/problem+json"

    opened_events = (await account_events(city.app))[before:]
    assert [(t, actor, p["role"], p["scope"]) for t, actor, p in opened_events] == [
        ("AccountOpened", "AC99999998", "volunteer", city.volunteer),
        ("AccountOpened", "AC99999998", "team_leader", city.team),
        ("AccountOpened", "AC99999998", "station_staff", COMMUNITY),
    ]


async def test_staff_grant_roles_at_or_below_their_level_over_scopes_of_the_right_level(city: City) -> None:
    district = bearer(Role.district_admin, DISTRICT, account="AC99999995")
    street = bearer(Role.street_staff, STREET, account="AC99999994")
    assert (
        await open_account(city, district, username="street-1", role="street_staff", scope=STREET)
    ).status_code == 201
    assert (
        await open_account(city, district, username="district-2", role="district_admin", scope=DISTRICT)
    ).status_code == 201
    assert (await open_account(city, district, username="city-2", role="city_admin", scope=CITY)).status_code == 403
    assert (
        await open_account(city, street, username="station-1", role="station_staff", scope=COMMUNITY)
    ).status_code == 201
    assert (
        await open_account(city, street, username="station-2", role="station_staff", scope=OTHER_COMMUNITY)
    ).status_code == 404
    assert (
        await open_account(city, street, username="district-3", role="district_admin", scope=DISTRICT)
    ).status_code == 403

    wrong_level = await open_account(city, district, username="station-3", role="station_staff", scope=STREET)
    assert wrong_level.status_code == 422 and wrong_level.json()["errors"][0]["field"] == "scope"
    no_scope = await open_account(city, ADMIN, username="vol", role="volunteer", scope="")
    assert no_scope.status_code == 422

    assert (
        await open_account(city, ADMIN, username="provincial-platform", role="partner", scope="")
    ).status_code == 201
    partner = await tokens(city, "provincial-platform")
    assert VERIFIER.actor(partner["access_token"]).role is Role.partner
    taken = await open_account(city, ADMIN, username="STREET-1", role="street_staff", scope=OTHER_STREET)
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "username"

    made = await city.client.post(
        "/accounts", json={"username": "13912340001", "role": "volunteer", "scope": city.volunteer}, headers=ADMIN
    )
    assert made.status_code == 201
    assert (await sign_in(city, "13912340001", made.json()["temporary_password"])).status_code == 200


async def test_staff_change_an_accounts_role_and_its_next_refresh_carries_it(city: City) -> None:
    account_id = await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    held = await tokens(city, "volunteer-1")
    path = f"/accounts/{account_id}/role"
    assert (
        await city.client.put(path, json={"role": "team_leader", "scope": city.other_team}, headers=STATION)
    ).status_code == 404
    assert (
        await city.client.put(path, json={"role": "street_staff", "scope": STREET}, headers=STATION)
    ).status_code == 403
    changed = await city.client.put(path, json={"role": "team_leader", "scope": city.team}, headers=STATION)
    assert changed.status_code == 200 and (changed.json()["role"], changed.json()["scope"]) == (
        "team_leader",
        city.team,
    )

    renewed = (await refresh(city, held["refresh_token"])).json()
    assert VERIFIER.actor(renewed["access_token"]) == Actor(account_id, Role.team_leader, city.team)
    payload = {"account_id": account_id, "role": "team_leader", "scope": city.team}
    previous = {"previous_role": "volunteer", "previous_scope": city.volunteer}
    assert (await account_events(city.app))[-1] == ("AccountRoleChanged", "AC99999998", payload | previous)


async def test_an_account_is_shown_to_its_holder_and_staff_over_it_only(city: City) -> None:
    account_id = await opened(city, "volunteer-1", Role.volunteer, city.volunteer)
    assert (await city.client.get(f"/accounts/{account_id}", headers=STATION)).status_code == 200
    outside = bearer(Role.station_staff, OTHER_COMMUNITY, account="AC99999996")
    hidden = await city.client.get(f"/accounts/{account_id}", headers=outside)
    missing = await city.client.get("/accounts/AC00009999", headers=outside)
    assert hidden.status_code == missing.status_code == 404
    assert (hidden.json()["detail"], missing.json()["detail"]) == (
        f"unknown account {account_id}",
        "unknown account AC00009999",
    )
    assert (await city.client.get(f"/accounts/{account_id}")).status_code == 401


# --- no personal data ---------------------------------------------------------------------------


async def test_no_username_or_password_reaches_an_event_or_a_log_line(
    city: City, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    username, password, new_password = "13987654321", "a-very-secret-1", "a-very-secret-2"
    response = await city.client.post(
        "/accounts",
        json={"username": username, "password": password, "role": "volunteer", "scope": city.volunteer},
        headers=STATION,
    )
    account_id = response.json()["account_id"]
    for _ in range(6):
        await sign_in(city, username, "guessing-wrong")
    city.clock.move(minutes=15)
    held = await tokens(city, username, password)
    await refresh(city, held["refresh_token"])
    await refresh(city, held["refresh_token"])  # reused: logged, without the token
    await city.client.put(
        f"/accounts/{account_id}/password",
        json={"old_password": password, "new_password": new_password},
        headers=as_holder(held),
    )
    await city.client.post(
        f"/accounts/{account_id}/password-reset", json={"temporary_password": "a-very-secret-3"}, headers=STATION
    )
    await city.client.put(
        f"/accounts/{account_id}/role", json={"role": "team_leader", "scope": city.team}, headers=STATION
    )
    await city.client.post(f"/accounts/{account_id}/close", headers=STATION)

    secrets = [username, password, new_password, "a-very-secret-3", "guessing-wrong", held["refresh_token"], "9876"]
    text = b"\n".join(await envelopes(city.app)).decode()
    assert "AccountOpened" in text and "PasswordChanged" in text and "AccountClosed" in text
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert any("revoked" in r.getMessage() for r in caplog.records)  # the reuse was logged
    # Times and ids are digits that may hold "9876" by chance (…T06:27:34.987669Z): not the username's.
    text, logged = (re.sub(_TIMES_AND_IDS, "", t) for t in (text, logged))
    for secret in secrets:
        assert secret not in text, f"{secret!r} in an event"
        assert secret not in logged, f"{secret!r} in a log line"


_TIMES_AND_IDS = re.compile(
    r"\d{4}-\d\d-\d\d[T ][\d:.]+(?:Z|[+-]\d\d:\d\d)?|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


# --- the first admin ----------------------------------------------------------------------------


def _cli(*args: str, database_url: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ, "BEACON_DATABASE_URL": database_url,
        "BEACON_PERSONAL_DATA_KEY": TEST_PERSONAL_DATA_KEY, "BEACON_ID_INDEX_KEY": TEST_ID_INDEX_KEY,
    }  # fmt: skip
    command = [sys.executable, "-m", "services.registry", "create-admin", *args]
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )


async def test_the_first_city_admin_is_made_on_the_command_line_and_signs_in(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("first-admin-password\n")
    made = _cli("--username", "admin", "--password-file", str(secret), "--city", CITY, database_url=database_url)
    assert made.returncode == 0, made.stderr
    assert "first-admin-password" not in made.stdout + made.stderr
    again = _cli("--username", "Admin", "--password-file", str(secret), database_url=database_url)
    assert again.returncode == 2 and "taken" in again.stderr
    assert (
        _cli(
            "--username", "admin", "--if-missing", "--password-file", str(secret), database_url=database_url
        ).returncode
        == 0
    )
    second = _cli("--username", "second", database_url=database_url, stdin="second-admin-password\n")
    assert second.returncode == 0, second.stderr  # for the first admin's city: the org tree has none yet
    other_city = _cli(
        "--username", "third", "--city", "370400", database_url=database_url, stdin="third-admin-password\n"
    )
    assert other_city.returncode == 2 and CITY in other_city.stderr
    short = _cli("--username", "fourth", database_url=database_url, stdin="short\n")
    assert short.returncode == 2 and "password" in short.stderr

    async with registry_app(nats_url, database_url, datetime.now(UTC)) as (client, app, _):
        answer = await client.post("/auth/token", data={"username": "admin", "password": "first-admin-password"})
        assert answer.status_code == 200, answer.text
        admin = VERIFIER.actor(answer.json()["access_token"])
        assert (admin.role, admin.scope, answer.json()["password_change_required"]) == (Role.city_admin, CITY, False)
        # Events name the command line's user as the actor, never the username.
        events = app.state.registry.events
        (opening,) = await events.load("account", admin.id)
        assert opening.actor.startswith("cli:") and opening.payload == {
            "account_id": admin.id,
            "role": "city_admin",
            "scope": CITY,
        }


async def test_an_account_opened_by_a_handler_call_has_its_password_hashed_with_argon2id(
    nats_url: str, database_url: str
) -> None:
    async with registry_app(nats_url, database_url, NOW) as (client, app, _):
        registry = app.state.registry
        account_id = await account_handlers.open_first_admin(
            registry, Actor("cli:test"), username="root", password="root-password", city=CITY, now=NOW
        )
        async with registry.events.engine.connect() as conn:
            row = (await conn.execute(select(store.accounts).where(store.accounts.c.account_id == account_id))).one()
        assert row.password_hash.startswith("$argon2id$")
        assert b"root" not in row.username_sealed and len(row.username_index) == 64
        assert registry.vault.open_username(account_id, row.username_sealed) == "root"
        assert (
            await client.post("/auth/token", data={"username": "ROOT", "password": "root-password"})
        ).status_code == 200


async def test_the_cli_reads_the_password_from_standard_input(database_url: str) -> None:
    made = _cli("--username", "admin", "--city", CITY, database_url=database_url, stdin="from-standard-input\n")
    assert made.returncode == 0, made.stderr
    assert "AC" in made.stdout
