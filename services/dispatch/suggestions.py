"""Suggesting volunteers for an order (派单): hard filters, each exclusion with its reason, and a
ranking by skills, nearness in the org tree and recent load, each rank with its reasons. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from services.dispatch.domain import aware
from services.dispatch.orders import AGES, Order
from shared.events.common import AgeBand


@dataclass(frozen=True)
class Candidate:
    """What dispatch knows of a volunteer when suggesting them: no personal data."""

    volunteer_number: str
    org_path: tuple[str, ...]
    skills: frozenset[str]
    certifications: Mapping[str, date | None]  # name -> expires on (None: never)
    age_band: AgeBand
    status: str = "verified"
    busy: tuple[tuple[datetime, datetime], ...] = ()  # their confirmed shifts and accepted orders
    recent_load: int = 0  # shifts served (checked in) in the last 30 days
    insured: bool = False  # an insurance record covers the order's window (see `covered`)


@dataclass(frozen=True)
class Suggestion:
    volunteer_number: str
    rank: int
    reasons: tuple[str, ...]
    score: tuple[int, int, int]  # (required skills held, nearness 0-3, minus recent shifts)


_NEARNESS = {3: "same community", 2: "same street", 1: "same district", 0: "elsewhere"}


def covered(order: Order, insurance: Iterable[tuple[date, date]]) -> bool:
    """Whether one of the volunteer's insurance records (first and last day covered) covers the
    whole of the order's window, by its dates in UTC as certifications are checked."""
    first, last = order.window_start.date(), order.window_end.date()
    return any(valid_from <= first and last <= valid_until for valid_from, valid_until in insurance)


def _nearness(order: Order, candidate: Candidate) -> int:
    shared = 0
    for ours, theirs in zip(order.org_path, candidate.org_path):
        if ours != theirs:
            break
        shared += 1
    return shared


def exclusions(order: Order, candidate: Candidate, now: datetime) -> list[str]:
    """Why this volunteer may not be sent, empty if they may (the hard filters)."""
    aware(now, "now")
    why: list[str] = []
    if candidate.status != "verified":
        why.append(f"not verified ({candidate.status})")
    valid_through = max(now, order.window_end).date()
    for name in order.required_certifications:
        if name not in candidate.certifications:
            why.append(f"no {name} certification")
        elif (expires := candidate.certifications[name]) is not None and expires < valid_through:
            why.append(f"{name} certification expires on {expires.isoformat()}")
    if order.risky and not candidate.insured:
        why.append("no insurance record for risky work")
    for start, end in candidate.busy:
        if start < order.window_end and order.window_start < end:
            why.append(f"busy {start.isoformat()} to {end.isoformat()}")
    band = AGES.index(candidate.age_band)
    if (order.min_age_band and band < AGES.index(order.min_age_band)) or (
        order.max_age_band and band > AGES.index(order.max_age_band)
    ):
        low = order.min_age_band or AGES[0]
        high = order.max_age_band or AGES[-1]
        why.append(f"age band {candidate.age_band} outside {low} to {high}")
    return why


def excluded(order: Order, candidates: Iterable[Candidate], now: datetime) -> dict[str, list[str]]:
    """Every volunteer the hard filters leave out, with why."""
    reasons = {c.volunteer_number: exclusions(order, c, now) for c in candidates}
    return {number: why for number, why in sorted(reasons.items()) if why}


def _load(n: int) -> str:
    return f"{'no' if n == 0 else n} shift{'' if n == 1 else 's'} in the last 30 days"


def rank(order: Order, candidates: Iterable[Candidate], now: datetime) -> list[Suggestion]:
    """The volunteers who may be sent, best first: most required skills, then nearest in the org
    tree, then fewest recent shifts; ties by volunteer number. Each says why it ranks there."""
    scored: list[tuple[tuple[int, int, int], str, tuple[str, ...]]] = []
    for candidate in candidates:
        if exclusions(order, candidate, now):
            continue
        has = [s for s in order.required_skills if s in candidate.skills]
        lacks = [s for s in order.required_skills if s not in candidate.skills]
        near = _nearness(order, candidate)
        reasons: list[str] = []
        if has:
            reasons.append(f"has {', '.join(has)}")
        if lacks:
            reasons.append(f"lacks {', '.join(lacks)}")
        if order.required_certifications:
            reasons.append(f"certified {', '.join(order.required_certifications)}")
        reasons.append(_NEARNESS[near])
        reasons.append(_load(candidate.recent_load))
        scored.append(((len(has), near, -candidate.recent_load), candidate.volunteer_number, tuple(reasons)))
    scored.sort(key=lambda s: (tuple(-x for x in s[0]), s[1]))
    return [Suggestion(number, i, reasons, score) for i, (score, number, reasons) in enumerate(scored, start=1)]
