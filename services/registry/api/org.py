"""Org tree and practice sites."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select

from services.registry import store
from services.registry.api import registry_of
from services.registry.api.reach import site_in_reach
from services.registry.domain.org import TreeRow
from services.registry.handlers import org as handlers
from shared.auth import STAFF, Role
from shared.citytime import city_today
from shared.db import reading
from shared.errors import Invalid, NotFound
from shared.events.common import DivisionCode, OrgLevel, SiteId, SiteKind, SiteLevel
from shared.web import CurrentActor, allow, problems

router = APIRouter(tags=["org tree and sites"])


class NewOrgUnit(BaseModel):
    code: DivisionCode
    level: OrgLevel
    name: str = Field(min_length=1, max_length=100)
    population: int = Field(ge=0, le=2**31 - 1)  # stored as a 32-bit integer
    party_members: int = Field(ge=0, le=2**31 - 1)
    parent_code: DivisionCode | None = None


class NewSite(BaseModel):
    site_id: SiteId
    org_unit_code: DivisionCode
    level: SiteLevel
    kind: SiteKind
    name: str = Field(min_length=1, max_length=100)
    opened_on: date | None = None


class SiteClosing(BaseModel):
    closed_on: date | None = None
    reason: str = Field(min_length=1, max_length=200)


@router.post("/org-units", **allow(*STAFF), status_code=201, responses=problems(403, 404, 409))
async def create_org_unit(body: NewOrgUnit, request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Add a node under one in the caller's part of the tree (a parent outside it is answered as
    an unknown one); only a city admin adds a city."""
    unit = await handlers.create_org_unit(registry_of(request), actor, **body.model_dump())
    return {"code": unit.code, "org_path": list(unit.path)}


def _tree_rows(raw: bytes, content_type: str) -> list[TreeRow]:
    try:
        text = raw.decode("utf-8-sig")
        if "json" in content_type:
            items = json.loads(text)
            if not isinstance(items, list):
                raise Invalid("a JSON tree is a list of org units", field="file")
            numbered = list(enumerate(items, start=1))
        else:
            numbered = list(enumerate(csv.DictReader(io.StringIO(text)), start=2))  # line 1 is the header
    except UnicodeDecodeError as error:
        raise Invalid(f"the file is not UTF-8 (byte {error.start})", field="file") from None
    except (ValueError, RecursionError, csv.Error) as error:  # JSON's decode error is a ValueError
        kind = "JSON" if "json" in content_type else "CSV"
        raise Invalid(f"the file does not read as {kind}: {error}", field="file") from None
    rows = []
    for line, item in numbered:
        try:
            if not isinstance(item, dict):
                raise Invalid(f"line {line}: not an object", field="file")
            unit = NewOrgUnit.model_validate({k: (v if v != "" else None) for k, v in item.items()})
        except ValidationError as error:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise Invalid(f"line {line}: {reasons}", field="file") from None
        rows.append(TreeRow(line, unit.code, unit.parent_code, unit.level, unit.name, unit.population, unit.party_members))
    return rows


_TREE_FILE = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/NewOrgUnit"}}},
    },
}


@router.post(
    "/org-units/import",
    **allow(*STAFF, openapi_extra={"requestBody": _TREE_FILE}),
    status_code=200,
    responses=problems(403, 404, 409),
)
async def import_tree(request: Request, actor: CurrentActor) -> dict[str, Any]:
    """Load a whole tree from CSV (`text/csv`: code, parent_code, level, name, population,
    party_members) or JSON (a list of the same objects). All of it is loaded, or none of it; a
    bad parent or a duplicate code is refused naming its line, and so is (404) a new node outside
    the caller's part of the tree. Lines already loaded are skipped."""
    rows = _tree_rows(await request.body(), request.headers.get("content-type", "text/csv"))
    return await handlers.load_tree(registry_of(request), actor, rows, reaches=actor.reaches)


@router.get("/org-units/{code}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_org_unit(code: str, request: Request) -> dict[str, Any]:
    """A node of the tree and its children: the tree is public knowledge to every signed-in role."""
    async with reading(registry_of(request).events.engine) as conn:
        row = (await conn.execute(select(store.org_units).where(store.org_units.c.code == code))).mappings().first()
        if row is None:
            raise NotFound(f"unknown org unit {code}")
        children = list((await conn.execute(select(store.org_units.c.code).where(store.org_units.c.parent_code == code).order_by(store.org_units.c.code))).scalars())
    return {**row, "path": row["path"].split("/"), "children": children}


@router.post("/sites", **allow(*STAFF), status_code=201, responses=problems(404, 409))
async def open_site(body: NewSite, request: Request, actor: CurrentActor) -> dict[str, str]:
    """Open a site at an org unit in the caller's part of the tree (one outside it is answered as
    an unknown one)."""
    values = body.model_dump()
    values["opened_on"] = body.opened_on or city_today()
    await handlers.open_site(registry_of(request), actor, **values)
    return {"site_id": body.site_id}


@router.post("/sites/{site_id}/close", **allow(*STAFF), responses=problems(404, 409))
async def close_site(
    site_id: Annotated[str, Depends(site_in_reach)], body: SiteClosing, request: Request, actor: CurrentActor
) -> dict[str, str]:
    """Close a site in the caller's part of the tree."""
    await handlers.close_site(registry_of(request), actor, site_id, closed_on=body.closed_on or city_today(), reason=body.reason)
    return {"site_id": site_id, "status": "closed"}


@router.get("/sites/{site_id}", **allow(*STAFF, Role.team_leader, Role.volunteer), responses=problems(404))
async def get_site(site_id: str, request: Request) -> dict[str, Any]:
    """A site: public knowledge to every signed-in role (volunteers look for where to serve)."""
    async with reading(registry_of(request).events.engine) as conn:
        row = (await conn.execute(select(store.sites).where(store.sites.c.site_id == site_id))).mappings().first()
    if row is None:
        raise NotFound(f"unknown site {site_id}")
    return {**row, "path": row["path"].split("/")}
