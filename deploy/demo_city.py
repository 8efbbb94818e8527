"""A small demo city, loaded through the services' APIs: one district, its streets, communities,
practice sites and volunteers (registry); then, once dispatch has heard of them, a lantern-festival
activity with a shift on now, volunteers signed up, and an order (dispatch). Safe to load twice
(what exists is left as it is). Given an access token (`sign_in` as the demo's city admin), every
request carries it."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import httpx

from shared.citytime import CITY_ZONE

CITY = {"code": "370300", "level": "city", "name": "淄博市", "population": 4_700_000, "party_members": 310_000}
DISTRICT = {"code": "370303", "level": "district", "name": "张店区", "population": 1_000_000, "party_members": 62_000, "parent_code": "370300"}
STREETS = {"370303001000": "车站街道", "370303002000": "公园街道", "370303003000": "体育场街道"}
COMMUNITIES = ("和平社区", "新华社区", "民生社区")
SKILLS = ("first_aid", "traffic_guidance", "elder_care", "tutoring", "legal_aid", "culture_art")
STATUSES = ("party_member", "league_member", "public_servant", "masses", "masses")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
VOLUNTEERS = 36


def _resident_id(rng: random.Random) -> str:
    year, month, day = rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28)
    first17 = f"370303{year:04d}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


ADMIN_USERNAME = "admin"


def sign_in(registry_url: str, username: str, password: str) -> str:
    """An access token for the account (OAuth2 password flow at registry's /auth/token)."""
    response = httpx.post(f"{registry_url}/auth/token", data={"username": username, "password": password}, timeout=30)
    if response.is_error:
        raise RuntimeError(f"signing in as {username} was refused: {response.status_code} {response.text}")
    return response.json()["access_token"]


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> bool:
    """True if created, False if it was there already; anything else is an error."""
    response = client.post(path, json=body)
    if response.status_code == 409:
        return False
    if response.is_error:
        raise RuntimeError(f"{path} refused the demo data: {response.status_code} {response.text}")
    return True


def load(registry_url: str, token: str | None = None) -> dict[str, int]:
    rng = random.Random(370303)
    created = {"org_units": 0, "sites": 0, "volunteers": 0}
    communities = []
    with httpx.Client(base_url=registry_url, timeout=30, headers=_bearer(token)) as client:
        created["org_units"] += _post(client, "/org-units", CITY) + _post(client, "/org-units", DISTRICT)
        created["sites"] += _post(client, "/sites", {"site_id": "centre-370303", "org_unit_code": "370303", "level": "centre", "kind": "district_centre", "name": "张店区新时代文明实践中心"})
        for street_code, street_name in STREETS.items():
            created["org_units"] += _post(client, "/org-units", {"code": street_code, "level": "street", "name": street_name, "population": 90_000, "party_members": 5_500, "parent_code": "370303"})
            created["sites"] += _post(client, "/sites", {"site_id": f"institute-{street_code}", "org_unit_code": street_code, "level": "institute", "kind": "street_institute", "name": f"{street_name}新时代文明实践所"})
            for index, name in enumerate(COMMUNITIES, start=1):
                code = f"{street_code[:9]}{index:03d}"
                communities.append(code)
                created["org_units"] += _post(client, "/org-units", {"code": code, "level": "community", "name": name, "population": 9_000, "party_members": 550, "parent_code": street_code})
                created["sites"] += _post(client, "/sites", {"site_id": f"station-{code}", "org_unit_code": code, "level": "station", "kind": "community", "name": f"{name}新时代文明实践站"})
        for n in range(VOLUNTEERS):
            body = {
                "name": f"志愿者{n + 1:03d}",
                "id_number": _resident_id(rng),
                "phone": f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}",
                "community_code": communities[n % len(communities)],
                "political_status": STATUSES[n % len(STATUSES)],
                "skills": rng.sample(SKILLS, 2),
                "consent": True,
            }
            created["volunteers"] += _post(client, "/volunteers", body)
            _post(client, f"/volunteers/V{n + 1:08d}/verify", {})
    return created


DEMO_STATION = "station-370303001001"
DEMO_COMMUNITY = "370303001001"


def _known_to_dispatch(client: httpx.Client, number: str, timeout: float = 60.0) -> None:
    """Dispatch learns volunteers from registry's events: wait until it has heard of the last one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/volunteers/{number}")
        if response.status_code == 200 and response.json()["status"] == "verified":
            return
        time.sleep(0.2)
    raise RuntimeError(f"dispatch has not heard of volunteer {number} from registry within {timeout:.0f} s")


def load_dispatch(dispatch_url: str, token: str | None = None) -> dict[str, str]:
    """A lantern-festival activity at 和平社区's station: a shift on now (to try the check-in page),
    the next 29 nights 20:00–22:00, the community's volunteers signed up; and an order.
    The ids of what the demo made (or found)."""
    with httpx.Client(base_url=dispatch_url, timeout=30, headers=_bearer(token)) as client:
        existing = client.get("/activities/A00000001")
        if existing.status_code == 200:
            shift_id = existing.json()["shifts"][0]["shift_id"]
            return {"activity_id": "A00000001", "shift_id": shift_id}
        # The community's volunteers: every ninth of the demo's, in registration order.
        members = [f"V{n + 1:08d}" for n in range(0, VOLUNTEERS, 9)]
        _known_to_dispatch(client, f"V{VOLUNTEERS:08d}")
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        today = now.astimezone(CITY_ZONE).date()
        activity = {
            "site_id": DEMO_STATION, "kind": "festival", "theme": "lantern_festival", "field": "civilised_traffic",
            "group_served": "public_needs", "starts_on": today.isoformat(), "ends_on": (today + timedelta(days=30)).isoformat(),
            "title": "元宵灯会文明交通引导", "description": "灯会期间东门路口文明交通引导",
            "posts": [{"post_id": "east_gate", "title": "东门路口", "required_skills": ["traffic_guidance"]}],
        }
        activity_id = _created(client.post("/activities", json=activity))["activity_id"]
        on_now = {"starts_at": (now - timedelta(minutes=10)).isoformat(), "ends_at": (now + timedelta(hours=2)).isoformat(), "capacity": 4, "post_id": "east_gate"}
        (shift_id,) = _created(client.post(f"/activities/{activity_id}/shifts", json=on_now))["shift_ids"]
        first_night = datetime.combine(today + timedelta(days=1), datetime.min.time(), CITY_ZONE).replace(hour=20)
        nights = {"starts_at": first_night.isoformat(), "ends_at": (first_night + timedelta(hours=2)).isoformat(), "capacity": 40, "post_id": "east_gate", "count": 29}
        _created(client.post(f"/activities/{activity_id}/shifts", json=nights))
        for number in members:
            _created(client.post(f"/shifts/{shift_id}/sign-ups", json={"volunteer_number": number}))
        start = now + timedelta(days=1)
        order = {
            "group_served": "elderly", "field": "smart_help_for_elderly", "community_code": DEMO_COMMUNITY, "site_id": DEMO_STATION,
            "description": "帮独居老人学用智能手机挂号", "address": "和平小区3号楼", "window_start": start.isoformat(),
            "window_end": (start + timedelta(hours=2)).isoformat(), "headcount": 1, "placed_via": "community_staff",
        }
        _created(client.post("/orders", json=order))
    return {"activity_id": activity_id, "shift_id": shift_id}


SHOP = (("大米 5kg", 200, 20), ("洗衣液", 80, 30), ("电影票", 150, 10))


def load_points(points_url: str, timeout: float = 60.0, token: str | None = None) -> str:
    """The demo station's love supermarket (爱心超市): a few goods for points. Its site id."""
    with httpx.Client(base_url=points_url, timeout=30, headers=_bearer(token)) as client:
        if client.get(f"/sites/{DEMO_STATION}/items").json()["items"]:
            return DEMO_STATION
        deadline = time.monotonic() + timeout
        for name, price, stock in SHOP:
            while True:  # points learns the station from registry's events
                response = client.post(f"/sites/{DEMO_STATION}/items", json={"name": name, "price_points": price, "stock": stock})
                if response.status_code != 404 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            _created(response)
    return DEMO_STATION


def _created(response: httpx.Response) -> dict[str, object]:
    if response.is_error:
        raise RuntimeError(f"{response.request.url.path} refused the demo data: {response.status_code} {response.text}")
    return response.json()
