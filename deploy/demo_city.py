"""A small demo city, loaded through registry's API: one district, its streets, communities,
practice sites and volunteers. Safe to load twice (what exists is left as it is)."""

from __future__ import annotations

import random

import httpx

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


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> bool:
    """True if created, False if it was there already; anything else is an error."""
    response = client.post(path, json=body, headers={"X-Beacon-Actor": "demo-loader"})
    if response.status_code == 409:
        return False
    if response.is_error:
        raise RuntimeError(f"{path} refused the demo data: {response.status_code} {response.text}")
    return True


def load(registry_url: str) -> dict[str, int]:
    rng = random.Random(370303)
    created = {"org_units": 0, "sites": 0, "volunteers": 0}
    communities = []
    with httpx.Client(base_url=registry_url, timeout=30) as client:
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
    return created
