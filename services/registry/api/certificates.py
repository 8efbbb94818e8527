"""Service-record certificates (志愿服务记录证明): issuing one, its PDF, and the public verification
a paper's reader uses (no personal data in its answer)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.registry.api import registry_of
from services.registry.api.reach import ReachedNumber, reaches_volunteer, volunteer_row
from services.registry.certificate_pdf import render
from services.registry.domain import certificates, identity
from services.registry.domain.certificates import Certificate, CertifiedRecord, Holder
from services.registry.handlers import certificates as handlers
from services.registry.handlers import volunteers as volunteer_handlers
from shared.auth import STAFF, Role
from shared.db import reading
from shared.errors import Invalid, NotFound
from shared.events.registry import CertificateNumber
from shared.ratelimit import RateLimit
from shared.web import ANYONE, CurrentActor, allow, now_of, problems

router = APIRouter(tags=["certificates"])

# Public, and certificate numbers run in series: enough for a reader checking papers, not for a
# script walking the series.
VERIFYING = RateLimit("certificate verification", per_minute=60, burst=30)
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class CertificateRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    period_from: date = Field(alias="from", description="First day of service to cover (city time).")
    period_to: date = Field(alias="to", description="Last day of service to cover: today at the latest.")


def pdf_path(number: str) -> str:
    return f"/certificates/{number}.pdf"


def verification_path(number: str) -> str:
    return f"/certificates/{number}/verification"


def _record(r: CertifiedRecord) -> dict[str, Any]:
    return {
        "record_id": r.record_id,
        "event_id": r.event_id,
        "service_date": r.service_date,
        "minutes": r.minutes,
        "hours": certificates.hours_text(r.hours),
        "site_id": r.site_id,
        "activity_id": r.activity_id,
        "field": r.field,
        "group_served": r.group_served,
    }


def _shape(certificate: Certificate) -> dict[str, Any]:
    return {
        "certificate_number": certificate.number,
        "volunteer_number": certificate.volunteer_number,
        "from": certificate.period_from,
        "to": certificate.period_to,
        "issued_at": certificate.issued_at,
        "issued_on": certificate.issued_on,
        "issuer": {"code": certificate.issuer_code, "name": certificate.issuer_name},
        "records": [_record(r) for r in certificate.records],
        "record_count": len(certificate.records),
        "total_minutes": certificate.total_minutes,
        "total_hours": certificates.hours_text(certificate.total_hours),
        "digest": certificate.digest,
        "pdf": pdf_path(certificate.number),
        "verification": verification_path(certificate.number),
    }


@router.post(
    "/volunteers/{number}/certificates", **allow(*STAFF, Role.volunteer), status_code=201, responses=problems(404, 409)
)
async def issue(
    number: ReachedNumber, body: CertificateRequest, request: Request, actor: CurrentActor
) -> dict[str, Any]:
    """Issue a service-record certificate (志愿服务记录证明) over the volunteer's confirmed records of
    the period, for staff over them or the volunteer themselves. It is numbered ZYZM-<year>-<serial>
    and bound to exactly those records by the SHA-256 of their event ids (`digest`). 409 when the
    period holds no confirmed record, or the volunteer's personal data was destroyed."""
    certificate = await handlers.issue(
        registry_of(request), actor, number, period_from=body.period_from, period_to=body.period_to, now=now_of(request)
    )
    return _shape(certificate)


async def certificate_in_reach(
    certificate_number: Annotated[CertificateNumber, Path(description="A certificate number, ZYZM-<year>-<serial>.")],
    request: Request,
    actor: CurrentActor,
) -> Certificate:
    """The certificate, if the caller reaches its volunteer (as for the volunteer's own record)."""
    registry = registry_of(request)
    certificate = await handlers.find(registry, certificate_number)
    if certificate is not None:
        async with reading(registry.events.engine) as conn:
            row = await volunteer_row(conn, certificate.volunteer_number)
            if row is not None and await reaches_volunteer(conn, actor, row):
                return certificate
    raise NotFound(f"unknown certificate {certificate_number}")


ReachedCertificate = Annotated[Certificate, Depends(certificate_in_reach)]


@router.get(
    "/certificates/{certificate_number}.pdf",
    **allow(*STAFF, Role.volunteer),
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The certificate as a PDF."}, **problems(404)},
)
async def certificate_pdf(certificate: ReachedCertificate, request: Request) -> Response:
    """The certificate to print: the volunteer's masked name and ID number, the records covered,
    total hours, issuer, number, date, digest and where to verify it."""
    registry = registry_of(request)
    personal = await volunteer_handlers.personal_data(registry, certificate.volunteer_number)
    holder = (
        Holder(identity.mask_name(personal["name"]), identity.mask_id_number(personal["id_number"]))
        if personal
        else Holder(None, None)
    )
    names = await handlers.site_names(registry, (r.site_id for r in certificate.records))
    sheet = certificates.sheet(certificate, holder, names, verification_path(certificate.number))
    return Response(
        render(sheet, footer=certificate.number),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{certificate.number}.pdf"'},
    )


def _digest_given(digest: str | None) -> str | None:
    if digest is None:
        return None
    normal = "".join(digest.split()).lower()  # as printed: spaces or line breaks may split it
    if not _HEX_DIGEST.match(normal):
        raise Invalid("a digest is 64 hexadecimal digits (SHA-256)", field="digest")
    return normal


@router.get(
    "/certificates/{certificate_number}/verification", **allow(ANYONE, limited_by=VERIFYING), responses=problems(429)
)
async def verify(
    certificate_number: Annotated[CertificateNumber, Path(description="The number printed on the certificate.")],
    request: Request,
    digest: Annotated[
        str | None,
        Query(max_length=200, description="The digest printed on the paper, to compare with the one issued."),
    ] = None,
) -> dict[str, Any]:
    """Public: whether a certificate of this number was issued, its digest, issue date, total
    hours and record count, and whether its records still stand as certified (`changed` once one
    was revoked or adjusted since). With `digest`, whether it is the one issued (`does_not_match`
    otherwise). Nothing about the volunteer."""
    given = _digest_given(digest)
    registry = registry_of(request)
    certificate = await handlers.find(registry, certificate_number)
    if certificate is None:
        return {"certificate_number": certificate_number, "exists": False, "status": "unknown"}
    now = await handlers.records_now(registry, (r.record_id for r in certificate.records))
    changed = certificates.changed_records(certificate.records, now)
    matches = None if given is None else given == certificate.digest
    status = "does_not_match" if matches is False else "changed" if changed else "valid"
    return {
        "certificate_number": certificate.number,
        "exists": True,
        "status": status,
        "issued_on": certificate.issued_on,
        "record_count": len(certificate.records),
        "total_hours": certificates.hours_text(certificate.total_hours),
        "digest": certificate.digest,
        "digest_matches": matches,
        "records_stand": not changed,
        "changed_records": len(changed),
    }
