"""A generated city load over HTTP, keeping a ledger of every command it attempted and every one
acknowledged to it (a 2xx answer) with the ids the answer gave.

Volunteers go the whole way: registered (registry; points opens their account), verified, signed
up for a shift under way, checked in and, a minute on, out by the shift's QR code (dispatch draws
up the service record), and the record confirmed with whole hours (points credits them). Recurring
shift series make the rest of the volume. A command whose answer is lost (the service was killed,
NATS was away) is sent again as a client would; the domain's own idempotency answers the repeat.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from services.dispatch.attendance import REPEAT_WINDOW, ShiftCodes
from shared.citytime import CITY_ZONE, city_date
from tests.infra.auth import admin, volunteer

CITY, DISTRICT, STREET, COMMUNITY = "370300", "370303", "370303001000", "370303001001"
SITE = "station-370303001001"
FIELD, GROUP = "civilised_traffic", "public_needs"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
EVENTS_PER_VOLUNTEER = 9  # registered, account opened, verified, signed up, in, out, recorded, confirmed, credited
SHIFTS_PER_SERIES = 100
CHECK_OUT_AFTER = REPEAT_WINDOW + timedelta(seconds=2)


def resident_id(n: int) -> str:
    """A valid, distinct resident ID number for each n (birth date and sequence from n)."""
    born = datetime(1970, 1, 1) + timedelta(days=n // 1000)
    first17 = f"370303{born:%Y%m%d}{n % 1000:03d}"
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


@dataclass
class Ledger:
    """What the load asked for, and what was acknowledged. Keys are what the answer named."""

    attempted: defaultdict[str, set[Any]] = field(default_factory=lambda: defaultdict(set))
    acked: defaultdict[str, set[Any]] = field(default_factory=lambda: defaultdict(set))
    requests: int = 0
    lost_answers: int = 0  # connection refused or cut, timeouts, 5xx: sent again
    shifts_requested: int = 0  # by shift-series commands, acknowledged or not
    confirmed_minutes: dict[str, int] = field(default_factory=dict)  # record -> minutes asked for


class Unanswered(Exception):
    """A command was never answered within the load's patience."""


class Commands:
    """HTTP commands, sent again until answered (anything below 500)."""

    def __init__(self, session: aiohttp.ClientSession, urls: dict[str, str], ledger: Ledger, patience: float) -> None:
        self.session = session
        self.urls = urls
        self.ledger = ledger
        self.patience = patience

    async def send(
        self,
        kind: str,
        key: Any,
        service: str,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        deadline = time.monotonic() + self.patience
        delay = 0.1
        while True:
            if key is not None:
                self.ledger.attempted[kind].add(key)
            self.ledger.requests += 1
            status, answer = None, None
            try:
                # A long run outlasts a token: the admin's is made fresh for each attempt.
                async with self.session.request(
                    method, self.urls[service] + path, json=body, headers=headers or admin()
                ) as response:
                    status = response.status
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            if status is not None and status < 500:
                return status, answer
            self.ledger.lost_answers += 1
            if time.monotonic() > deadline:
                raise Unanswered(f"{method} {service}{path}: no answer within {self.patience:.0f}s (last {status})")
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)

    async def until(
        self, what: str, call: Callable[[], Awaitable[tuple[int, Any]]], done: Callable[[int, Any], bool]
    ) -> tuple[int, Any]:
        """Ask again while the answer says "not yet" (another service has not heard of something)."""
        deadline = time.monotonic() + self.patience
        while True:
            status, answer = await call()
            if done(status, answer):
                return status, answer
            if time.monotonic() > deadline:
                raise Unanswered(f"{what}: still {status} {answer} after {self.patience:.0f}s")
            await asyncio.sleep(0.3)


def _expect(status: int, answer: Any, what: str, *ok: int) -> Any:
    if status not in ok:
        raise AssertionError(f"{what}: {status} {answer}")
    return answer


class CityLoad:
    def __init__(self, commands: Commands, codes: ShiftCodes, volunteers: int, series: int, seed: int = 8) -> None:
        self.c = commands
        self.ledger = commands.ledger
        self.codes = codes
        self.volunteers = volunteers
        self.series = series
        self.rng = random.Random(seed)
        self.shifts: list[str] = []
        self.activity = ""
        self.series_activity = ""
        self.checked_in: asyncio.Queue[tuple[float, str, str]] = asyncio.Queue()
        self.outcomes: Counter[str] = Counter()
        self.timings: dict[str, float] = {}

    # -- the city ------------------------------------------------------------------------------

    async def set_up(self) -> None:
        org = [
            {"code": CITY, "level": "city", "name": "淄博市", "population": 4_700_000, "party_members": 310_000},
            {"code": DISTRICT, "level": "district", "name": "张店区", "population": 1_000_000, "party_members": 62_000, "parent_code": CITY},
            {"code": STREET, "level": "street", "name": "车站街道", "population": 90_000, "party_members": 5_500, "parent_code": DISTRICT},
            {"code": COMMUNITY, "level": "community", "name": "和平社区", "population": 9_000, "party_members": 550, "parent_code": STREET},
        ]  # fmt: skip
        for unit in org:
            status, answer = await self.c.send("org_unit", unit["code"], "registry", "POST", "/org-units", unit)
            self._ack("org_unit", unit["code"], status, answer, 201, 409)
        site = {
            "site_id": SITE,
            "org_unit_code": COMMUNITY,
            "level": "station",
            "kind": "community",
            "name": "和平社区新时代文明实践站",
        }
        status, answer = await self.c.send("site", SITE, "registry", "POST", "/sites", site)
        self._ack("site", SITE, status, answer, 201, 409)
        today = city_date(datetime.now(UTC))
        self.activity = await self._schedule(today - timedelta(days=1), today + timedelta(days=1))
        self.series_activity = await self._schedule(today, today + timedelta(days=400))
        now = datetime.now(UTC)
        under_way = {
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=6)).isoformat(),
            "capacity": 100_000,
        }
        for _ in range(max(1, self.volunteers // 100)):
            self.shifts += await self._open_shifts(self.activity, under_way, 1)

    async def _schedule(self, starts_on: Any, ends_on: Any) -> str:
        body = {
            "site_id": SITE, "kind": "regular", "theme": "civilised_traffic", "field": FIELD, "group_served": GROUP,
            "starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat(), "title": "文明交通引导",
        }  # fmt: skip
        # Dispatch learns the site from registry's events: 404 until it has.
        status, answer = await self.c.until(
            "scheduling an activity",
            lambda: self.c.send("activity", None, "dispatch", "POST", "/activities", body),
            lambda status, _: status != 404,
        )
        activity_id = _expect(status, answer, "scheduling an activity", 201)["activity_id"]
        self._ack("activity", activity_id, status, answer, 201)
        return activity_id

    async def _open_shifts(self, activity_id: str, body: dict[str, Any], count: int) -> list[str]:
        self.ledger.shifts_requested += count
        status, answer = await self.c.send(
            "open_shifts", None, "dispatch", "POST", f"/activities/{activity_id}/shifts", {**body, "count": count}
        )
        shift_ids = _expect(status, answer, "opening shifts", 201)["shift_ids"]
        self.ledger.acked["shift"].update(shift_ids)
        return shift_ids

    def _ack(self, kind: str, key: Any, status: int, answer: Any, acked: int, *also_fine: int) -> None:
        _expect(status, answer, kind, acked, *also_fine)
        if status == acked:
            self.ledger.acked[kind].add(key)

    # -- volunteers ----------------------------------------------------------------------------

    async def volunteer_comes(self, n: int) -> None:
        """Register, verify, sign up and check in; the check-out waits its minute in a queue."""
        id_number = resident_id(n)
        body = {
            "name": f"志愿者{n:05d}", "id_number": id_number, "phone": f"138{n:08d}", "community_code": COMMUNITY,
            "political_status": "masses", "skills": ["traffic_guidance"], "consent": True,
        }  # fmt: skip
        status, answer = await self.c.send("register", id_number, "registry", "POST", "/volunteers", body, headers={})
        if status == 201:
            number = answer["volunteer_number"]
            self.ledger.acked["register"].add(number)
        else:  # an earlier try went through but its answer was lost: the ID number is taken, by whom it says
            number = _expect(status, answer, "registering", 409)["volunteer_number"]
        self.ledger.attempted["registered_as"].add(number)
        status, answer = await self.c.send("verify", number, "registry", "POST", f"/volunteers/{number}/verify", {})
        self._ack("verify", number, status, answer, 200)
        shift = self.shifts[n % len(self.shifts)]
        # Dispatch learns of the volunteer, then of the verification, from registry's events.
        status, answer = await self.c.until(
            f"signing {number} up",
            lambda: self.c.send(
                "sign_up",
                (shift, number),
                "dispatch",
                "POST",
                f"/shifts/{shift}/sign-ups",
                {"volunteer_number": number},
            ),
            lambda status, _: status not in (409, 422),
        )
        self._ack("sign_up", (shift, number), status, answer, 200)
        status, answer = await self.scan("check_in", shift, number)
        at = datetime.fromisoformat(answer["at"]).timestamp()
        await self.checked_in.put((at, shift, number))

    async def scan(self, kind: str, shift: str, number: str) -> tuple[int, Any]:
        async def once() -> tuple[int, Any]:
            code = self.codes.code_for(shift, datetime.now(UTC))
            body = {"code": code, "volunteer_number": number}
            return await self.c.send(kind, number, "dispatch", "POST", "/scans", body, headers=volunteer(number))

        status, answer = await self.c.until(f"{kind} of {number}", once, lambda status, _: status != 429)
        answer = _expect(status, answer, kind, 200)
        wanted = {"check_in": "checked_in", "check_out": "checked_out"}[kind]
        if answer["result"] == wanted:
            self.ledger.acked[kind].add(number)
        self.outcomes[f"{kind}:{answer['result']}"] += 1
        return status, answer

    async def volunteer_leaves(self, checked_in_at: float, shift: str, number: str, hours: int) -> None:
        """Check out once the minute is past, then confirm the record dispatch drew up, with `hours`."""
        wait = checked_in_at + CHECK_OUT_AFTER.total_seconds() - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.scan("check_out", shift, number)
        query = f"/service-records?volunteer={number}&activity={self.activity}"
        status, answer = await self.c.until(
            f"the record of {number}",
            lambda: self.c.send("find_record", None, "dispatch", "GET", query),
            lambda status, answer: status == 200 and bool(answer["items"]),
        )
        (record,) = answer["items"]
        record_id = record["record_id"]
        minutes = 60 * hours
        self.ledger.confirmed_minutes[record_id] = minutes
        body = {"minutes": minutes, "reason": "recount"}
        status, answer = await self.c.send(
            "confirm", record_id, "dispatch", "POST", f"/service-records/{record_id}/confirm", body
        )
        self._ack("confirm", record_id, status, answer, 200)

    async def one_series(self) -> None:
        first = datetime.combine(
            city_date(datetime.now(UTC)) + timedelta(days=1), datetime.min.time(), CITY_ZONE
        ).replace(hour=20)
        body = {
            "starts_at": first.isoformat(),
            "ends_at": (first + timedelta(hours=2)).isoformat(),
            "capacity": 40,
            "every_days": 1,
        }
        await self._open_shifts(self.series_activity, body, SHIFTS_PER_SERIES)

    # -- the whole load ------------------------------------------------------------------------

    async def run(self, keep_going: Callable[[], bool], arriving: int = 12, leaving: int = 12) -> None:
        """Every volunteer's way and every series; series go on while `keep_going` (the chaos has
        more to do), so that every fault falls while commands are being sent."""
        numbers = iter(range(1, self.volunteers + 1))
        left = {"count": self.volunteers}

        async def arrive() -> None:
            for n in numbers:
                await self.volunteer_comes(n)

        async def leave() -> None:
            while left["count"]:
                left["count"] -= 1
                at, shift, number = await self.checked_in.get()
                await self.volunteer_leaves(at, shift, number, hours=self.rng.randint(1, 5))

        async def series() -> None:
            sent = 0
            while sent < self.series or keep_going():
                await self.one_series()
                sent += 1
                await asyncio.sleep(0.2 if sent < self.series else 2.0)  # past the target: a trickle

        started = time.monotonic()

        async def timed(name: str, *parts: Awaitable[None]) -> None:
            await asyncio.gather(*parts)
            self.timings[name] = time.monotonic() - started

        await asyncio.gather(
            timed("arriving", *(arrive() for _ in range(arriving))),
            timed("leaving", *(leave() for _ in range(leaving))),
            timed("series", series()),
        )
