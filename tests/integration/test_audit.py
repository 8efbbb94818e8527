"""Audit: who did what to a volunteer, from registry's own events, shown to staff over them only."""

from __future__ import annotations

from pathlib import Path

from shared.auth import Role
from tests.infra.auth import bearer, staff, volunteer
from tests.infra.city import COMMUNITY, ok, registry_with_tree, verified_volunteer


async def test_a_volunteers_trail_names_who_did_each_thing_and_only_staff_over_them_see_it(
    nats_url: str, tmp_path: Path
) -> None:
    async with registry_with_tree(nats_url, f"sqlite:///{tmp_path / 'registry.db'}") as registry:
        number = await verified_volunteer(registry, 1)
        await ok(
            await registry.post(f"/volunteers/{number}/suspend", json={"reason": "review"}, headers=staff("staff-9"))
        )

        trail = await ok(
            await registry.get(f"/volunteers/{number}/audit", headers=bearer(Role.station_staff, COMMUNITY))
        )
        assert [(e["type"], e["actor"], e["version"]) for e in trail["entries"]] == [
            ("VolunteerRegistered", "staff-7", 1),
            ("VolunteerVerified", "staff-7", 2),
            ("VolunteerSuspended", "staff-9", 3),
        ]
        assert trail["org_path"][-1] == COMMUNITY

        elsewhere = await registry.get(
            f"/volunteers/{number}/audit", headers=bearer(Role.station_staff, "370303001002")
        )
        unknown = await registry.get("/volunteers/V99999999/audit", headers=bearer(Role.station_staff, COMMUNITY))
        assert elsewhere.status_code == unknown.status_code == 404  # outside their reach: as if it did not exist
        assert elsewhere.json()["detail"] == f"no volunteer {number}"
        assert (await registry.get(f"/volunteers/{number}/audit", headers=volunteer(number))).status_code == 403
