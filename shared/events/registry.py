"""Registry's public events: who and where (org units, practice sites, volunteers, teams,
training, sign-in accounts). None carries a name, an ID number or a phone number: a volunteer
appears only by volunteer number, with age band, gender, political status and skills; an account
only by its account id, never by its username or password."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import AwareDatetime as AwareDatetimeField
from pydantic import Field, StringConstraints, model_validator

from shared.auth import Role
from shared.catalog import Event, catalog
from shared.events.common import (
    AccountId,
    AgeBand,
    DivisionCode,
    Gender,
    OrgLevel,
    PoliticalStatus,
    SiteId,
    SiteKind,
    SiteLevel,
    Skill,
    Tag,
    TeamId,
    TeamKind,
    VolunteerNumber,
)


@catalog.register(context="registry", aggregate="orgunit", action="created")
class OrgUnitCreated(Event):
    """A node of the administrative tree (city, district, street or town, community or village,
    grid) now exists, with the population and party-member count that reported shares divide by.
    The envelope's `org_path` runs from the district down to this node."""

    code: DivisionCode = Field(description="Administrative division code (6 or 12 digits; grids 15).")
    parent_code: DivisionCode | None = Field(description="The parent node; none for the city.")
    level: OrgLevel
    name: str = Field(min_length=1, max_length=100)
    population: int = Field(ge=0)
    party_members: int = Field(ge=0)


@catalog.register(context="registry", aggregate="site", action="opened")
class SiteOpened(Event):
    """A civilisation-practice site opened: a centre for a district, an institute for a street,
    a station for a community, or a point (grid, window unit, public place, scenic spot, park)."""

    site_id: SiteId
    org_unit_code: DivisionCode
    level: SiteLevel
    kind: SiteKind
    name: str = Field(min_length=1, max_length=100)
    opened_on: date


@catalog.register(context="registry", aggregate="site", action="closed")
class SiteClosed(Event):
    """A practice site closed; its history (activities, teams, hours) stays counted where it was."""

    site_id: SiteId
    closed_on: date
    reason: str = Field(min_length=1, max_length=200)


@catalog.register(context="registry", aggregate="volunteer", action="registered")
class VolunteerRegistered(Event):
    """A person registered as a volunteer under their real name. The event carries no personal
    data: only the volunteer number, home community, age band and gender at registration,
    political status and skills. The envelope's `org_path` is district, street, community."""

    volunteer_number: VolunteerNumber
    community_code: DivisionCode
    age_band: AgeBand
    gender: Gender
    political_status: PoliticalStatus
    skills: list[Skill] = Field(default_factory=list, max_length=50, description="From Beacon's skill taxonomy.")
    tags: list[Tag] = Field(default_factory=list, max_length=10, description="Free tags the volunteer chose.")
    consented_at: AwareDatetimeField = Field(description="When the volunteer consented to the use of their data.")


@catalog.register(context="registry", aggregate="volunteer", action="verified")
class VolunteerVerified(Event):
    """Station staff checked the volunteer's identity: they may now be dispatched."""

    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="volunteer", action="profile_updated")
class VolunteerProfileUpdated(Event):
    """The volunteer's skills, free tags or political status changed (the new values, in full)."""

    volunteer_number: VolunteerNumber
    political_status: PoliticalStatus
    skills: list[Skill] = Field(max_length=50)
    tags: list[Tag] = Field(default_factory=list, max_length=10)


@catalog.register(context="registry", aggregate="volunteer", action="suspended")
class VolunteerSuspended(Event):
    """The volunteer may not be dispatched until reactivated."""

    volunteer_number: VolunteerNumber
    reason: str = Field(min_length=1, max_length=200)


@catalog.register(context="registry", aggregate="volunteer", action="reactivated")
class VolunteerReactivated(Event):
    """A suspended volunteer is active (verified) again and may be dispatched."""

    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="volunteer", action="deregistered")
class VolunteerDeregistered(Event):
    """The volunteer left. On their request their personal data was destroyed; the anonymous
    history (hours, activities, figures) stays, under the volunteer number."""

    volunteer_number: VolunteerNumber
    on_request: bool


@catalog.register(context="registry", aggregate="volunteer", action="reported_in")
class PartyMemberReportedIn(Event):
    """A party-member volunteer reported in to the community where they live (党员到社区报到)."""

    volunteer_number: VolunteerNumber
    community_code: DivisionCode


@catalog.register(context="registry", aggregate="volunteer", action="transferred")
class VolunteerTransferred(Event):
    """The volunteer's home community changed (关系转接), perhaps across districts. The envelope's
    `org_path` is the new community's; `from_org_path` the old one's, so both districts see it."""

    volunteer_number: VolunteerNumber
    from_community_code: DivisionCode
    from_org_path: list[DivisionCode] = Field(min_length=1)
    to_community_code: DivisionCode
    approved_by: str = Field(min_length=1, max_length=100, description="The approving staff account.")


@catalog.register(context="registry", aggregate="team", action="created")
class TeamCreated(Event):
    """A volunteer team was founded under a practice site, with its leader as first member."""

    team_id: TeamId
    site_id: SiteId
    name: str = Field(min_length=1, max_length=100)
    kind: TeamKind
    field: str | None = Field(default=None, max_length=40, description="For professional teams: medical, legal, ...")
    capacity: int = Field(ge=1, le=100_000)
    leader_number: VolunteerNumber


@catalog.register(context="registry", aggregate="team", action="member_applied")
class TeamMemberApplied(Event):
    """A volunteer applied to join a team; its leader approves or rejects."""

    team_id: TeamId
    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="team", action="application_rejected")
class TeamApplicationRejected(Event):
    """A team's leader turned an application down; the volunteer may apply again later."""

    team_id: TeamId
    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="team", action="member_invited")
class TeamMemberInvited(Event):
    """A team's leader invited a volunteer; the volunteer accepts or declines."""

    team_id: TeamId
    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="team", action="invitation_declined")
class TeamInvitationDeclined(Event):
    """A volunteer declined a team's invitation; the leader may invite them again."""

    team_id: TeamId
    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="team", action="member_joined")
class TeamMemberJoined(Event):
    """A volunteer joined a team: their application was approved, or they accepted an invitation."""

    team_id: TeamId
    volunteer_number: VolunteerNumber
    via: str = Field(pattern=r"^(application|invitation)$")


@catalog.register(context="registry", aggregate="team", action="member_left")
class TeamMemberLeft(Event):
    """A volunteer left a team, or was removed by its leader."""

    team_id: TeamId
    volunteer_number: VolunteerNumber
    removed: bool = False


@catalog.register(context="registry", aggregate="team", action="leader_changed")
class TeamLeaderChanged(Event):
    """A team has a new leader, a member of it."""

    team_id: TeamId
    leader_number: VolunteerNumber
    previous_leader_number: VolunteerNumber


@catalog.register(context="registry", aggregate="team", action="dissolved")
class TeamDissolved(Event):
    """A team was dissolved; its members are no longer in it; its history stays."""

    team_id: TeamId
    reason: str = Field(min_length=1, max_length=200)


@catalog.register(context="registry", aggregate="training", action="held")
class TrainingSessionHeld(Event):
    """A pre-job training session took place at a site (岗前培训): first aid, traffic guidance, ..."""

    session_id: str = Field(min_length=1, max_length=40)
    site_id: SiteId
    topic: Skill
    held_on: date
    hours: float = Field(gt=0, le=24)


@catalog.register(context="registry", aggregate="training", action="attended")
class TrainingAttended(Event):
    """A volunteer attended a training session: it counts among the session's trainees."""

    session_id: str = Field(min_length=1, max_length=40)
    volunteer_number: VolunteerNumber


@catalog.register(context="registry", aggregate="volunteer", action="certified")
class CertificationGranted(Event):
    """A volunteer holds a certification until it expires; dispatch may require it for an order."""

    volunteer_number: VolunteerNumber
    certification: Skill
    granted_on: date
    expires_on: date | None = Field(description="None: it does not expire.")


@catalog.register(context="registry", aggregate="volunteer", action="certification_expired")
class CertificationExpired(Event):
    """A volunteer's certification reached its expiry date (emitted by the daily expiry job)."""

    volunteer_number: VolunteerNumber
    certification: Skill
    expired_on: date


InsuranceCode = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]


@catalog.register(context="registry", aggregate="volunteer", action="insured")
class VolunteerInsured(Event):
    """A volunteer's insurance was recorded: who insures them and what kind of cover, by code, and
    the days it covers (both included). Dispatch sends a volunteer to risky work only when a
    recorded insurance covers the whole service window. No policy number and no name: the
    policy document stays with the volunteer's station."""

    volunteer_number: VolunteerNumber
    insurer: InsuranceCode = Field(description="The insurer, as a code, e.g. picc, cpic.")
    cover: InsuranceCode = Field(description="The kind of policy, e.g. accident, liability.")
    valid_from: date
    valid_until: date = Field(description="The last day covered.")

    @model_validator(mode="after")
    def _ordered(self) -> VolunteerInsured:
        if self.valid_until < self.valid_from:
            raise ValueError("an insurance ends on or after the day it starts")
        return self


AccountScope = Annotated[
    str,
    StringConstraints(pattern=r"^(|\d{6}|\d{12}|T\d{6,10}|V\d{6,12})$"),
    Field(
        description="What the role reaches: an org unit's division code for staff (city, district, street, "
        "community), a team id for a team leader, a volunteer number for a volunteer, empty for a partner."
    ),
]


@catalog.register(context="registry", aggregate="account", action="opened")
class AccountOpened(Event):
    """A sign-in account was opened with one role over one scope. The envelope's `actor` is the
    account that granted it (`cli:<user>` for a first administrator made on the server), and its
    `org_path` is where the scope lies. The username and the password stay in registry."""

    account_id: AccountId
    role: Role
    scope: AccountScope


@catalog.register(context="registry", aggregate="account", action="role_changed")
class AccountRoleChanged(Event):
    """An account now holds another role or scope (its access tokens carry the new one from their
    next refresh); the previous ones are given for the audit trail."""

    account_id: AccountId
    role: Role
    scope: AccountScope
    previous_role: Role
    previous_scope: AccountScope


@catalog.register(context="registry", aggregate="account", action="closed")
class AccountClosed(Event):
    """An account was closed, by its holder or by staff over it: it can no longer sign in, and
    every refresh token it held was revoked."""

    account_id: AccountId


@catalog.register(context="registry", aggregate="account", action="password_changed")
class PasswordChanged(Event):
    """An account's password changed, and every refresh token it held was revoked. `reset`: staff
    over the account set a temporary password, which its holder is asked to change; otherwise the
    holder changed it, giving the old one."""

    account_id: AccountId
    reset: bool


# --- Service-record certificates (志愿服务记录证明) -------------------------------------------------

CertificateNumber = Annotated[str, StringConstraints(pattern=r"^ZYZM-\d{4}-\d{6}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
CertifiedHours = Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)]


@catalog.register(context="registry", aggregate="certificate", action="issued")
class CertificateIssued(Event):
    """A service-record certificate (志愿服务记录证明, per the 2020 national measures) was issued to a
    volunteer over their confirmed service records in a period. `digest` is the SHA-256 (lower-case
    hex) of the UTF-8 text of the records' event ids (the confirmation or last adjustment of each,
    as dispatch published it), lower-case, sorted, joined by a newline: anyone holding those
    events can recompute it, and registry's public verification answers whether a paper's digest
    is the one issued under its number and whether its records still stand. `issuer_code` is the
    org unit (division code) or practice site (site id) in whose name it was issued. The envelope's
    `org_path` is the volunteer's. No name or ID number: they are printed on the paper only."""

    certificate_number: CertificateNumber
    volunteer_number: VolunteerNumber
    period_from: date = Field(description="First day of service covered (city time).")
    period_to: date = Field(description="Last day of service covered (city time).")
    record_count: int = Field(ge=1, le=100_000)
    total_minutes: int = Field(ge=0)
    total_hours: CertifiedHours = Field(description="The sum of the records' confirmed hours.")
    digest: Sha256Hex
    issuer_code: str = Field(min_length=1, max_length=40, description="A division code or a site id.")
    issued_at: AwareDatetimeField

    @model_validator(mode="after")
    def _ordered(self) -> CertificateIssued:
        if self.period_to < self.period_from:
            raise ValueError("a certificate's period ends on or after the day it starts")
        return self
