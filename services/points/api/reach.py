"""Who reaches what in points: one dependency per kind of thing, solved before a route reads its
body, so that a caller outside gets the 404 an unknown id gets whatever they send (shared/auth.py).

- A volunteer's account (and so their statement, time bank and reservations): the volunteer
  themselves, and staff over the community the volunteer belongs to (the account's org path,
  kept from registry's VolunteerRegistered and VolunteerTransferred).
- A site's shop (its items and redemptions): staff over the site (its org path, kept from
  registry's SiteOpened); volunteers and team leaders see any site's items (the shop is city-wide);
  a volunteer reaches their own redemptions.
- A district's rules and figures: staff of the district, and the city admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Path, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.points import store
from shared.auth import Actor, Role
from shared.db import reading
from shared.errors import NotFound
from shared.events.common import ReservationId, SiteId, VolunteerNumber
from shared.events.points import ItemId, RedemptionId
from shared.web import CurrentActor, events_of

VolunteerPath = Annotated[VolunteerNumber, Path(description="A volunteer number, e.g. V00000001.")]
DistrictPath = Annotated[str, Path(pattern=r"^\d{6}$", description="A district's 6-digit division code.")]

Row = dict[str, Any]
SHOPPERS = (Role.volunteer, Role.team_leader)


def _path(org_path: str) -> Sequence[str]:
    return org_path.split("/")


def no_account(number: str) -> NotFound:
    return NotFound(f"volunteer {number} has no points account", field="volunteer_number")


def unknown_item(item_id: str) -> NotFound:
    return NotFound(f"unknown item {item_id}", field="item_id")


async def reached_account(conn: AsyncConnection, number: str, actor: Actor) -> Row:
    """The account's row if the caller reaches the volunteer; else as if there were none."""
    row = (
        (await conn.execute(select(store.accounts).where(store.accounts.c.volunteer_number == number)))
        .mappings()
        .first()
    )
    if row is None or not (actor.is_volunteer(number) or actor.reaches(_path(row["org_path"]))):
        raise no_account(number)
    return dict(row)


async def account_in_reach(volunteer_number: VolunteerPath, request: Request, actor: CurrentActor) -> Row:
    async with reading(events_of(request).engine) as conn:
        return await reached_account(conn, volunteer_number, actor)


async def account_for_star_check(volunteer_number: VolunteerPath, request: Request, actor: CurrentActor) -> Row:
    """As `account_in_reach`, and a partner asks about any volunteer of the city: the yes or no
    of the star check is what partners are for (shops and venues honouring stars)."""
    async with reading(events_of(request).engine) as conn:
        if actor.role is Role.partner:
            row = (
                (
                    await conn.execute(
                        select(store.accounts).where(store.accounts.c.volunteer_number == volunteer_number)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                raise no_account(volunteer_number)
            return dict(row)
        return await reached_account(conn, volunteer_number, actor)


async def _site(conn: AsyncConnection, site_id: str) -> Row | None:
    row = (
        (await conn.execute(select(store.known_sites).where(store.known_sites.c.site_id == site_id))).mappings().first()
    )
    return dict(row) if row else None


async def site_in_reach(site_id: Annotated[SiteId, Path()], request: Request, actor: CurrentActor) -> Row:
    """A site whose shop staff over it run."""
    async with reading(events_of(request).engine) as conn:
        row = await _site(conn, site_id)
    if row is None or not actor.reaches(_path(row["org_path"])):
        raise NotFound(f"unknown site {site_id}", field="site_id")
    return row


async def shop_in_reach(site_id: Annotated[SiteId, Path()], request: Request, actor: CurrentActor) -> Row:
    """A site's shop window: staff over the site, and any volunteer or team leader of the city."""
    async with reading(events_of(request).engine) as conn:
        row = await _site(conn, site_id)
    if row is None or not (actor.role in SHOPPERS or actor.reaches(_path(row["org_path"]))):
        raise NotFound(f"unknown site {site_id}", field="site_id")
    return row


async def reached_item(conn: AsyncConnection, item_id: str, actor: Actor) -> Row:
    """An item if the caller reaches it: staff over its site; volunteers anywhere (they shop
    city-wide)."""
    query = (
        select(store.shop_items, store.known_sites.c.org_path)
        .join(store.known_sites, store.known_sites.c.site_id == store.shop_items.c.site_id)
        .where(store.shop_items.c.item_id == item_id)
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None or not (actor.role in SHOPPERS or actor.reaches(_path(row["org_path"]))):
        raise unknown_item(item_id)
    return dict(row)


async def item_in_reach(item_id: Annotated[ItemId, Path()], request: Request, actor: CurrentActor) -> Row:
    async with reading(events_of(request).engine) as conn:
        return await reached_item(conn, item_id, actor)


async def redemption_in_reach(
    redemption_id: Annotated[RedemptionId, Path()], request: Request, actor: CurrentActor
) -> Row:
    """A redemption: staff over the site that hands the goods over, and the volunteer who redeemed."""
    r, s = store.redemptions.c, store.known_sites.c
    query = (
        select(store.redemptions, s.org_path)
        .join(store.known_sites, s.site_id == r.site_id)
        .where(r.redemption_id == redemption_id)
    )
    async with reading(events_of(request).engine) as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None or not (actor.is_volunteer(row["volunteer_number"]) or actor.reaches(_path(row["org_path"]))):
        raise NotFound(f"unknown redemption {redemption_id}")
    return dict(row)


async def reservation_in_reach(
    reservation_id: Annotated[ReservationId, Path()], request: Request, actor: CurrentActor
) -> Row:
    """A reservation of time credits: as its volunteer's account."""
    r, a = store.reservations.c, store.accounts.c
    query = (
        select(store.reservations, a.org_path)
        .join(store.accounts, a.volunteer_number == r.volunteer_number)
        .where(r.reservation_id == reservation_id)
    )
    async with reading(events_of(request).engine) as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None or not (actor.is_volunteer(row["volunteer_number"]) or actor.reaches(_path(row["org_path"]))):
        raise NotFound(f"unknown reservation {reservation_id}")
    return dict(row)


async def district_in_reach(district_code: DistrictPath, actor: CurrentActor) -> str:
    """A district, for its own staff and the city admin (whose routes `allow` no one else)."""
    if not actor.reaches((district_code,)):
        raise NotFound(f"unknown district {district_code}", field="district_code")
    return district_code
