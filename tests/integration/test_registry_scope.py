"""Scope on registry's volunteers: staff see those under their node, a volunteer themselves, a team
leader their team's members; anyone else is told there is no such volunteer (shared/auth.py)."""

from __future__ import annotations

from pathlib import Path

from shared.auth import Role
from tests.factories import resident_id
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


async def _elsewhere(registry) -> str:  # type: ignore[no-untyped-def]
    """A second community of the street, with one verified volunteer living there."""
    unit = {
        "code": ELSEWHERE,
        "parent_code": STREET,
        "level": "community",
        "name": "东风社区",
        "population": 1,
        "party_members": 0,
    }
    await ok(await registry.post("/org-units", json=unit))
    body = {
        "name": "王五", "id_number": resident_id("37030319850609002"), "phone": "13812349999",
        "community_code": ELSEWHERE, "consent": True,
    }  # fmt: skip
    number = (await ok(await registry.post("/volunteers", json=body)))["volunteer_number"]
    await ok(await registry.post(f"/volunteers/{number}/verify"))
    return number


async def test_lists_show_the_callers_part_and_a_filter_naming_another_part_is_unknown(
    nats_url: str, tmp_path: Path
) -> None:
    async with registry_with_tree(nats_url, f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        here, there = await verified_volunteer(registry, 1), await _elsewhere(registry)
        site = {
            "site_id": "ST-HEPING",
            "org_unit_code": COMMUNITY,
            "level": "station",
            "kind": "community",
            "name": "站",
        }
        await ok(await registry.post("/sites", json=site))
        team = {"site_id": "ST-HEPING", "name": "夕阳红", "kind": "general", "capacity": 10, "leader_number": here}
        team_id = (await ok(await registry.post("/teams", json=team)))["team_id"]
        station, other_station = bearer(Role.station_staff, COMMUNITY), bearer(Role.station_staff, ELSEWHERE)

        async def numbers(headers: dict[str, str]) -> list[str]:
            return [
                v["volunteer_number"] for v in (await ok(await registry.get("/volunteers", headers=headers)))["items"]
            ]

        assert await numbers(station) == [here] and await numbers(other_station) == [there]
        assert len(await numbers(bearer(Role.street_staff, STREET))) == 2
        hidden = await registry.get("/volunteers", params={"org": COMMUNITY}, headers=other_station)
        unknown = await registry.get("/volunteers", params={"org": "370303001099"}, headers=other_station)
        assert (hidden.status_code, unknown.status_code) == (404, 404)
        assert hidden.json()["detail"] == f"unknown org unit {COMMUNITY}"
        for name, value in (("site", "ST-HEPING"), ("team", team_id)):
            assert (await registry.get("/volunteers", params={name: value}, headers=other_station)).status_code == 404

        async def teams(headers: dict[str, str]) -> list[str]:
            return [t["team_id"] for t in (await ok(await registry.get("/teams", headers=headers)))["items"]]

        # Staff see their part's teams; any volunteer every team, to join one.
        assert await teams(station) == [team_id] and await teams(other_station) == []
        assert await teams(volunteer(there)) == [team_id]
        assert (await registry.get("/teams", params={"site": "ST-HEPING"}, headers=other_station)).status_code == 404


async def test_a_leader_names_their_teams_people_and_their_sites_volunteers_and_nobody_else(
    nats_url: str, tmp_path: Path
) -> None:
    async with registry_with_tree(nats_url, f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        leader, neighbour, member = [await verified_volunteer(registry, n) for n in (1, 2, 3)]
        stranger = await _elsewhere(registry)
        site = {
            "site_id": "ST-HEPING",
            "org_unit_code": COMMUNITY,
            "level": "station",
            "kind": "community",
            "name": "站",
        }
        await ok(await registry.post("/sites", json=site))
        team = {"site_id": "ST-HEPING", "name": "夕阳红", "kind": "general", "capacity": 10, "leader_number": leader}
        team_id = (await ok(await registry.post("/teams", json=team)))["team_id"]
        leads = bearer(Role.team_leader, team_id)

        # A volunteer applies for themselves only, to any team; one from elsewhere on the rolls
        # is then the leader's to approve.
        applying_for_another = await registry.post(
            f"/teams/{team_id}/applications", json={"volunteer_number": member}, headers=volunteer(stranger)
        )
        assert applying_for_another.status_code == 404
        assert applying_for_another.json()["detail"] == f"unknown volunteer {member}"
        for number in (member, stranger):
            await ok(
                await registry.post(
                    f"/teams/{team_id}/applications", json={"volunteer_number": number}, headers=volunteer(number)
                )
            )
            await ok(await registry.post(f"/teams/{team_id}/applications/{number}/approve", headers=leads))
        await ok(await registry.post(f"/teams/{team_id}/members/{stranger}/leave", headers=volunteer(stranger)))
        # The leader invites whoever lives under the site; someone from elsewhere off the rolls
        # is nobody they know.
        await ok(
            await registry.post(f"/teams/{team_id}/invitations", json={"volunteer_number": neighbour}, headers=leads)
        )
        invited = await registry.post(
            f"/teams/{team_id}/invitations", json={"volunteer_number": stranger}, headers=leads
        )
        assert invited.status_code == 404 and invited.json()["detail"] == f"unknown volunteer {stranger}"
        assert (await registry.delete(f"/teams/{team_id}/members/{stranger}", headers=leads)).status_code == 404
        # A volunteer sees a team's size, and of its people only themselves.
        seen = await ok(await registry.get(f"/teams/{team_id}", headers=volunteer(neighbour)))
        assert (seen["member_count"], seen["members"], seen["invited"]) == (2, [], [neighbour])
        assert sorted((await ok(await registry.get(f"/teams/{team_id}", headers=leads)))["members"]) == sorted(
            [leader, member]
        )


async def test_staff_create_only_under_their_own_node(nats_url: str, tmp_path: Path) -> None:
    async with registry_with_tree(nats_url, f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        await _elsewhere(registry)
        other_station = bearer(Role.station_staff, ELSEWHERE)
        grid = {
            "code": f"{COMMUNITY}001",
            "parent_code": COMMUNITY,
            "level": "grid",
            "name": "网格",
            "population": 1,
            "party_members": 0,
        }
        hidden = await registry.post("/org-units", json=grid, headers=other_station)
        unknown = await registry.post("/org-units", json={**grid, "parent_code": "370303001099"}, headers=other_station)
        assert (hidden.status_code, unknown.status_code) == (404, 404)
        assert hidden.json()["detail"] == f"unknown parent org unit {COMMUNITY}"
        own = {**grid, "code": f"{ELSEWHERE}001", "parent_code": ELSEWHERE}
        assert (await registry.post("/org-units", json=own, headers=other_station)).status_code == 201
        tree = f"code,parent_code,level,name,population,party_members\n{COMMUNITY}002,{COMMUNITY},grid,网格,1,0\n"
        imported = await registry.post(
            "/org-units/import", content=tree, headers={"content-type": "text/csv", **other_station}
        )
        assert imported.status_code == 404 and "line 2" in imported.json()["detail"]
        site = {
            "site_id": "ST-HEPING",
            "org_unit_code": COMMUNITY,
            "level": "station",
            "kind": "community",
            "name": "站",
        }
        assert (await registry.post("/sites", json=site, headers=other_station)).status_code == 404
        rows = f"name,id_number,phone,community_code\n赵六,{resident_id('37030319850610002')},13812340001,{COMMUNITY}\n"
        report = await ok(
            await registry.post(
                "/volunteers/import", content=rows, headers={"content-type": "text/csv", **other_station}
            )
        )
        assert (report["imported"], report["refused"]) == (0, 1)
        assert report["problems"][0]["field"] == "community_code" and COMMUNITY not in str(report)
        assert (await registry.get("/org-units/370303001002001")).status_code == 200
        assert (await registry.get(f"/org-units/{COMMUNITY}002")).status_code == 404
