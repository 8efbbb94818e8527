"""Scope on registry's volunteers: staff see those under their node, a volunteer themselves, a team
leader their team's members; anyone else is told there is no such volunteer (shared/auth.py)."""

from __future__ import annotations

from pathlib import Path

from shared.auth import Role
from tests.infra.auth import bearer, volunteer
from tests.infra.city import (
    COMMUNITY,
    DISTRICT,
    STREET,
    ok,
    registry_with_tree,
    verified_volunteer,
)

ELSEWHERE = "370303001002"  # another community of the same street


async def test_a_volunteer_is_seen_inside_the_callers_scope_and_is_unknown_outside_it(
    nats_url: str, tmp_path: Path
) -> None:
    async with registry_with_tree(nats_url, f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        number = await verified_volunteer(registry, 1)
        other = await verified_volunteer(registry, 2)
        site = {
            "site_id": "ST-HEPING",
            "org_unit_code": COMMUNITY,
            "level": "station",
            "kind": "community",
            "name": "站",
        }
        await ok(await registry.post("/sites", json=site))
        team = {"site_id": "ST-HEPING", "name": "夕阳红", "kind": "general", "capacity": 10, "leader_number": other}
        team_id = (await ok(await registry.post("/teams", json=team)))["team_id"]

        async def status(headers: dict[str, str], path: str = f"/volunteers/{number}") -> int:
            return (await registry.get(path, headers=headers)).status_code

        inside = [
            bearer(Role.city_admin, "370300"), bearer(Role.district_admin, DISTRICT), bearer(Role.street_staff, STREET),
            bearer(Role.station_staff, COMMUNITY), volunteer(number),
        ]  # fmt: skip
        outside = [bearer(Role.district_admin, "370304"), bearer(Role.station_staff, ELSEWHERE), volunteer(other)]
        assert [await status(h) for h in inside] == [200] * len(inside)
        assert [await status(h) for h in outside] == [404] * len(outside)
        assert [await status(h, f"/volunteers/{number}/history") for h in outside] == [404] * len(outside)
        unknown = await registry.get("/volunteers/V99999999", headers=bearer(Role.station_staff, COMMUNITY))
        hidden = await registry.get(f"/volunteers/{number}", headers=bearer(Role.station_staff, ELSEWHERE))
        assert hidden.json()["detail"] == f"unknown volunteer {number}"  # word for word what nobody's number gets
        assert unknown.json()["detail"] == "unknown volunteer V99999999"
        # The leader of a team `other` leads sees its members only.
        assert await status(bearer(Role.team_leader, team_id), f"/volunteers/{other}") == 200
        assert await status(bearer(Role.team_leader, team_id)) == 404
