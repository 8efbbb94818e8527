"""A pytest plugin that holds the whole suite to "no event carries personal data".

Every envelope the code makes (`EventCatalog.envelope`, the one place they are made) is checked
as it is made, in whichever thread of this process: against every name, ID number and mobile
registry keeps for a volunteer (each passes through `Vault.seal`, which is watched), and against
the shapes of a resident ID number (18 characters, a birth date, a valid check character) and of
a mainland mobile. A leak fails the test during which it was made, naming the event type, the
field and the kind of value, never the value in full. The session ends with a count.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from services.registry.vault import Vault
from shared.catalog import EventCatalog
from shared.envelope import EventEnvelope

ROOT = Path(__file__).resolve().parents[2]

ID_NUMBER, MOBILE, NAME = "resident ID number", "mobile number", "registered name"

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# Letters or digits next to a run of digits make it part of something else: a UUID, a hash, a
# longer number (division codes are 6, 9 or 12 digits; volunteer numbers carry a letter).
_SHAPES = re.compile(
    r"(?<![0-9A-Za-z])(?:(?P<id>\d{17}[\dXx])|(?P<mobile>(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}))(?![0-9A-Za-z])"
)
# Where one could be: a cheap scan of the bytes, most events hold no run this long but a division code.
_DIGIT_RUNS = re.compile(rb"\d[\d -]{9,}[\dXx]")
_encode = msgspec.json.Encoder().encode


def is_resident_id(text: str) -> bool:
    """18 characters, a real birth date after 1900, the GB 11643 check character."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    year, month, day = int(text[6:10]), int(text[10:12]), int(text[12:14])
    if not (1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    return "10X98765432"[sum(int(d) * w for d, w in zip(text, _WEIGHTS, strict=False)) % 11] == text[17].upper()


def masked(kind: str, value: str) -> str:
    """What a report may show of a personal value."""
    if kind == NAME:
        return value[:1] + "*" * (len(value) - 1) if len(value) > 1 else "*"
    digits = re.sub(r"\D", "", value)
    return (
        digits[:4] + "*" * (len(value) - 8) + value[-4:] if kind == ID_NUMBER else digits[-11:-8] + "****" + value[-4:]
    )


@dataclass(frozen=True)
class Leak:
    event_type: str
    field: str
    kind: str
    shown: str  # the value, masked
    made_at: str  # where the envelope was made (the innermost frames of our code)

    def __str__(self) -> str:
        return f"{self.event_type}.{self.field} carries a {self.kind} ({self.shown}); made at {self.made_at}"


class _Names:
    """Registered names, found in an envelope's JSON text by their first character (one regex
    scan), then compared whole. A name of two or more CJK characters, or of four characters or
    more, is found anywhere in a text; a shorter one (王, Li) only as a whole value."""

    def __init__(self) -> None:
        self.by_first: dict[str, list[tuple[str, bool]]] = {}
        self.count = 0
        self._starts: re.Pattern[str] | None = None

    def add(self, name: str) -> None:
        name = " ".join(name.split())
        if not any(c.isalpha() for c in name):
            return
        # As the envelope's JSON spells it (a quote or backslash in a name is escaped there).
        spelled = _encode(name).decode()[1:-1]
        cjk = sum(1 for c in name if "\u3400" <= c <= "\u9fff")
        anywhere = cjk >= 2 or len(name) >= 4
        entries = self.by_first.setdefault(spelled[0], [])
        if (spelled, anywhere) in entries:
            return
        entries.append((spelled, anywhere))
        self.count += 1
        self._starts = None

    def find(self, text: str) -> str | None:
        if not self.by_first:
            return None
        if self._starts is None:
            self._starts = re.compile("[" + "".join(re.escape(c) for c in list(self.by_first)) + "]")
        for start in self._starts.finditer(text):
            at = start.start()
            for name, anywhere in self.by_first.get(start.group(), ()):
                if text.startswith(name, at) and (
                    anywhere or (text[at - 1 : at] == '"' and text[at + len(name) : at + len(name) + 1] == '"')
                ):
                    return name
        return None


@dataclass
class PersonalDataGuard:
    """The session's record: personal values known, envelopes checked, leaks found."""

    names: _Names = field(default_factory=_Names)
    id_numbers: set[str] = field(default_factory=set)
    mobiles: set[str] = field(default_factory=set)
    checked: int = 0
    types: Counter[str] = field(default_factory=Counter)
    leaks: list[Leak] = field(default_factory=list)
    _expected: list[Leak] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- what registry keeps --------------------------------------------------------------------

    def learn(self, kind: str, value: str) -> None:
        value = value.strip()
        if not value:
            return
        if kind == NAME:
            self.names.add(value)
        elif kind == ID_NUMBER:
            self.id_numbers.add(value.upper())
        else:
            self.mobiles.add(re.sub(r"\D", "", value)[-11:])

    # --- what the code makes -------------------------------------------------------------------

    def check(self, envelope: EventEnvelope) -> list[Leak]:
        """The leaks in one envelope (none, nearly always: that path costs a few microseconds)."""
        self.checked += 1
        self.types[envelope.type] += 1
        raw = _encode((envelope.aggregate_id, envelope.actor, envelope.payload))
        found: list[tuple[str, str]] = []
        for run in _DIGIT_RUNS.finditer(raw):
            # With the character on either side, which says whether the run stands on its own.
            window = raw[max(run.start() - 1, 0) : run.end() + 1].decode(errors="replace")
            for match in _SHAPES.finditer(window):
                if match.group("id") is None:
                    found.append((MOBILE, match.group()))
                elif is_resident_id(match.group("id")) or match.group("id").upper() in self.id_numbers:
                    found.append((ID_NUMBER, match.group()))
        name = self.names.find(raw.decode())
        if name is not None:
            found.append((NAME, name))
        if not found:
            return []
        leaks = [
            Leak(envelope.type, _field_of(envelope, value), kind, masked(kind, value), _made_at())
            for kind, value in found
        ]
        with self._lock:
            (self._expected if self._expected is not None else self.leaks).extend(leaks)
        return leaks

    @contextlib.contextmanager
    def expecting_leaks(self) -> Iterator[list[Leak]]:
        """For a test that leaks on purpose: the leaks made in the block are handed to it
        instead of failing it."""
        caught: list[Leak] = []
        self._expected = caught
        try:
            yield caught
        finally:
            self._expected = None

    def summary(self) -> str:
        return (
            f"personal data: {self.checked:,} events checked, of {len(self.types)} types; "
            f"{len(self.leaks)} leaks; registry sealed {self.names.count:,} names, "
            f"{len(self.id_numbers):,} ID numbers, {len(self.mobiles):,} mobile numbers"
        )


def _field_of(envelope: EventEnvelope, value: str) -> str:
    """The dotted path of the first member whose JSON holds `value`."""
    spelled = _encode(value).decode()[1:-1]

    def find(item: Any, path: str) -> str | None:
        if isinstance(item, dict):
            for key, member in item.items():
                found = find(member, f"{path}.{key}" if path else str(key))
                if found is not None:
                    return found
            return None
        if isinstance(item, list):
            for index, member in enumerate(item):
                found = find(member, f"{path}[{index}]")
                if found is not None:
                    return found
            return None
        return path if spelled in _encode(item).decode() else None

    return (
        find({"aggregate_id": envelope.aggregate_id, "actor": envelope.actor, "payload": envelope.payload}, "") or "?"
    )


def _made_at() -> str:
    ours = [f for f in traceback.extract_stack() if f.filename.startswith(str(ROOT)) and ".venv" not in f.filename]
    frames = [f for f in ours if f.filename != __file__]
    return " <- ".join(f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}" for f in reversed(frames[-3:])) or "?"


GUARD = PersonalDataGuard()


# --- hooks into the code: where envelopes are made, where registry takes personal data --------


def _watch(guard: PersonalDataGuard) -> Callable[[], None]:
    """Wrap the places; returns what puts them back."""
    made = EventCatalog.envelope

    @functools.wraps(made)
    def envelope(self: EventCatalog, *args: Any, **kwargs: Any) -> EventEnvelope:
        made_now = made(self, *args, **kwargs)
        guard.check(made_now)
        return made_now

    sealed = Vault.seal
    sealed_kinds = {"name": NAME, "id_number": ID_NUMBER, "phone": MOBILE}

    @functools.wraps(sealed)
    def seal(self: Vault, key: bytes, volunteer_number: str, field: str, value: str) -> bytes:
        if field in sealed_kinds:
            guard.learn(sealed_kinds[field], value)
        return sealed(self, key, volunteer_number, field, value)

    EventCatalog.envelope = envelope  # type: ignore[method-assign]
    Vault.seal = seal  # type: ignore[method-assign]

    def restore() -> None:
        EventCatalog.envelope = made  # type: ignore[method-assign]
        Vault.seal = sealed  # type: ignore[method-assign]

    return restore


def _fail_on_leaks_since(before: int, phase: str) -> None:
    new = GUARD.leaks[before:]
    if new:
        lines = "\n".join(f"  {leak}" for leak in new[:10]) + (
            f"\n  … and {len(new) - 10} more" if len(new) > 10 else ""
        )
        pytest.fail(f"personal data in {len(new)} event(s) made during {phase}:\n{lines}", pytrace=False)


_unwatch: Callable[[], None] | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _unwatch
    _unwatch = _watch(GUARD)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _unwatch is not None:
        _unwatch()


def _phase(name: str) -> Callable[..., Any]:
    @pytest.hookimpl(wrapper=True)
    def hook(item: pytest.Item) -> Any:
        before = len(GUARD.leaks)
        try:
            return (yield)
        finally:
            _fail_on_leaks_since(before, f"{name} of {item.nodeid}")

    return hook


pytest_runtest_setup = _phase("setup")
pytest_runtest_call = _phase("the call")
pytest_runtest_teardown = _phase("teardown")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if GUARD.leaks and session.exitstatus == 0:  # made outside any test (those failed already)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_sep("-", GUARD.summary())
    for leak in GUARD.leaks[:20]:
        terminalreporter.write_line(f"  {leak}")


@pytest.fixture
def personal_data_guard() -> PersonalDataGuard:
    """The session's guard, for tests of the guard itself."""
    return GUARD
