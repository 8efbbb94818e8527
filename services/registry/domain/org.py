"""The administrative tree and the practice sites on it: pure rules."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from shared.errors import Conflict, Invalid, NotFound
from shared.events.common import OrgLevel, SiteKind, SiteLevel
from shared.events.registry import OrgUnitCreated, SiteClosed, SiteOpened

LEVEL_ORDER = (OrgLevel.city, OrgLevel.district, OrgLevel.street, OrgLevel.community, OrgLevel.grid)

# What each level's code looks like, which level is its parent, and how many leading digits a
# child shares with that parent (districts share only the province and city digits).
_CODE_SHAPE = {
    OrgLevel.city: re.compile(r"^\d{4}00$"),
    OrgLevel.district: re.compile(r"^\d{6}$"),
    OrgLevel.street: re.compile(r"^\d{9}000$"),
    OrgLevel.community: re.compile(r"^\d{12}$"),
    OrgLevel.grid: re.compile(r"^\d{15}$"),
}
_PARENT_LEVEL = {
    OrgLevel.district: OrgLevel.city,
    OrgLevel.street: OrgLevel.district,
    OrgLevel.community: OrgLevel.street,
    OrgLevel.grid: OrgLevel.community,
}
_SHARED_DIGITS = {OrgLevel.district: 4, OrgLevel.street: 6, OrgLevel.community: 9, OrgLevel.grid: 12}
# Where a site of each level may stand.
_SITE_ORG_LEVEL = {
    SiteLevel.centre: {OrgLevel.district},
    SiteLevel.institute: {OrgLevel.street},
    SiteLevel.station: {OrgLevel.community},
    SiteLevel.point: {OrgLevel.community, OrgLevel.grid},
}


@dataclass(frozen=True)
class OrgUnit:
    code: str
    level: OrgLevel
    path: tuple[str, ...]  # from the district (or the city itself) down to this node
    parent_code: str | None = None
    name: str = ""


def create_org_unit(
    code: str, level: OrgLevel, name: str, population: int, party_members: int, parent: OrgUnit | None
) -> tuple[OrgUnitCreated, OrgUnit]:
    """Decide a new node of the tree; return its event and the node."""
    if not _CODE_SHAPE[level].match(code):
        raise Invalid(f"{code} is not a {level} division code", field="code")
    if party_members > population:
        raise Invalid("party members cannot outnumber the population", field="party_members")
    if level is OrgLevel.city:
        if parent is not None:
            raise Invalid("a city has no parent", field="parent_code")
        path: tuple[str, ...] = (code,)
    else:
        expected = _PARENT_LEVEL[level]
        if parent is None:
            raise Invalid(f"a {level} needs its {expected}", field="parent_code")
        if parent.level is not expected:
            raise Invalid(f"the parent of a {level} is a {expected}, not a {parent.level}", field="parent_code")
        if code[: _SHARED_DIGITS[level]] != parent.code[: _SHARED_DIGITS[level]]:
            raise Invalid(f"{code} does not lie under {parent.code}", field="code")
        path = (code,) if level is OrgLevel.district else (*parent.path, code)
    event = OrgUnitCreated(
        code=code,
        parent_code=parent.code if parent else None,
        level=level,
        name=name,
        population=population,
        party_members=party_members,
    )
    return event, OrgUnit(code, level, path, parent.code if parent else None, name)


@dataclass(frozen=True)
class TreeRow:
    line: int
    code: str
    parent_code: str | None
    level: OrgLevel
    name: str
    population: int
    party_members: int


def plan_tree(
    rows: Iterable[TreeRow],
    existing: Callable[[str], OrgUnit | None],
    reaches: Callable[[tuple[str, ...]], bool] = lambda path: True,
) -> tuple[list[tuple[OrgUnitCreated, OrgUnit]], list[int]]:
    """Decide a whole tree file at once: the nodes to create, and the lines already loaded.

    Parents may come after their children in the file. A duplicate code, a missing or wrong
    parent, a clash with what exists, or a new node at a path the loader does not `reaches`
    (404: outside their part of the tree) rejects the whole file, naming the line.
    """
    by_code: dict[str, TreeRow] = {}
    for row in rows:
        if row.code in by_code:
            raise Invalid(f"line {row.line}: code {row.code} already appears on line {by_code[row.code].line}", field="file")
        by_code[row.code] = row
    planned: dict[str, OrgUnit] = {}
    decided: list[tuple[OrgUnitCreated, OrgUnit]] = []
    unchanged: list[int] = []
    for row in sorted(by_code.values(), key=lambda r: (LEVEL_ORDER.index(r.level), r.line)):
        found = existing(row.code)
        if found is not None:
            if (found.level, found.parent_code) != (row.level, row.parent_code):
                raise Invalid(
                    f"line {row.line}: {row.code} exists as a {found.level} under {found.parent_code}", field="file"
                )
            unchanged.append(row.line)
            planned[row.code] = found
            continue
        parent = None
        if row.parent_code is not None:
            parent = planned.get(row.parent_code) or existing(row.parent_code)
            if parent is None:
                raise Invalid(f"line {row.line}: parent {row.parent_code} of {row.code} is unknown", field="file")
        try:
            event, unit = create_org_unit(row.code, row.level, row.name, row.population, row.party_members, parent)
        except Invalid as error:
            raise Invalid(f"line {row.line}: {error.message}", field="file") from None
        if not reaches(unit.path):
            raise NotFound(f"line {row.line}: {row.code} lies outside your part of the org tree", field="file")
        planned[row.code] = unit
        decided.append((event, unit))
    return decided, sorted(unchanged)


@dataclass(frozen=True)
class Site:
    site_id: str
    org_unit_code: str
    level: SiteLevel
    path: tuple[str, ...]
    closed: bool


def open_site(
    site_id: str, org_unit: OrgUnit, level: SiteLevel, kind: SiteKind, name: str, opened_on: date
) -> SiteOpened:
    if org_unit.level not in _SITE_ORG_LEVEL[level]:
        allowed = " or ".join(sorted(_SITE_ORG_LEVEL[level]))
        raise Invalid(f"a {level} stands in a {allowed}, not a {org_unit.level}", field="org_unit_code")
    return SiteOpened(
        site_id=site_id, org_unit_code=org_unit.code, level=level, kind=kind, name=name, opened_on=opened_on
    )


def close_site(site: Site, closed_on: date, opened_on: date, reason: str) -> list[SiteClosed]:
    if site.closed:
        return []
    if closed_on < opened_on:
        raise Invalid("a site cannot close before it opened", field="closed_on")
    return [SiteClosed(site_id=site.site_id, closed_on=closed_on, reason=reason)]


def ensure_open(site: Site | None, site_id: str) -> Site:
    if site is None:
        raise NotFound(f"unknown site {site_id}", field="site_id")
    if site.closed:
        raise Conflict(f"site {site_id} is closed", field="site_id", state="closed")
    return site
