"""The suite's personal-data guard (tests/infra/personal_data.py) fires: an event carrying an ID
number, a mobile or a registered name is caught as it is made, names its type, field and kind of
value without showing the value, and fails the test that made it. Ordinary events pass."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from shared.catalog import Event, EventCatalog
from shared.events.common import DivisionCode
from tests.factories import PATH, TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, registered_envelope, resident_id
from tests.infra.personal_data import ID_NUMBER, MOBILE, NAME, PersonalDataGuard

ROOT = Path(__file__).resolve().parents[2]
ID = resident_id("37030319850612002")
own_catalog = EventCatalog()  # the session's catalog stays as the services have it


@own_catalog.register(context="test", aggregate="note", action="written")
class NoteWritten(Event):
    """A note staff wrote: free text, the way personal data could slip into an event."""

    note: str
    count: int = 0
    lines: list[str] = []
    community_code: DivisionCode = "370303001001"


def made(**fields: Any) -> None:
    own_catalog.envelope(NoteWritten(**fields), aggregate_id="N1", aggregate_version=1, org_path=PATH, actor="staff-7")


def caught(guard: PersonalDataGuard, **fields: Any) -> list[tuple[str, str, str]]:
    with guard.expecting_leaks() as leaks:
        made(**fields)
    return [(leak.event_type, leak.field, leak.kind) for leak in leaks]


def test_an_id_number_in_an_event_is_caught_without_being_shown(personal_data_guard: PersonalDataGuard) -> None:
    with personal_data_guard.expecting_leaks() as leaks:
        made(note=f"call back, ID {ID}")
    assert [(leak.event_type, leak.field, leak.kind) for leak in leaks] == [("NoteWritten", "payload.note", ID_NUMBER)]
    assert ID not in str(leaks[0]) and leaks[0].shown == ID[:4] + "*" * 10 + ID[-4:]
    assert "test_personal_data_guard.py" in leaks[0].made_at
    assert caught(personal_data_guard, note="x", lines=["fine", ID.lower()]) == [
        ("NoteWritten", "payload.lines[1]", ID_NUMBER)
    ]


def test_a_mobile_number_is_caught_however_it_is_written(personal_data_guard: PersonalDataGuard) -> None:
    for written in ("13912340001", "电话13912340001。", "+86 139-1234-0001", "139 1234 0001", "8613912340001"):
        assert caught(personal_data_guard, note=written) == [("NoteWritten", "payload.note", MOBILE)], written
    assert caught(personal_data_guard, note="", count=13912340001) == [("NoteWritten", "payload.count", MOBILE)]
    with personal_data_guard.expecting_leaks() as leaks:
        made(note="+86 139-1234-0001")
    assert "139****0001" in str(leaks[0]) and "1234" not in str(leaks[0])


def test_a_name_registry_sealed_is_caught_in_any_event(personal_data_guard: PersonalDataGuard) -> None:
    from services.registry.vault import Vault, VaultKeys

    vault = Vault(VaultKeys.from_settings(TEST_PERSONAL_DATA_KEY, TEST_ID_INDEX_KEY))
    key, _ = vault.new_key("V09999999")
    for name in ("欧阳娜娜", "乐"):  # what registry keeps, it keeps through the vault
        vault.seal(key, "V09999999", "name", name)
    assert caught(personal_data_guard, note="visited 欧阳娜娜 today") == [("NoteWritten", "payload.note", NAME)]
    # A one-character name is a name only as a whole value, not inside any text.
    assert caught(personal_data_guard, note="乐") == [("NoteWritten", "payload.note", NAME)]
    assert caught(personal_data_guard, note="快乐星球") == []


def test_the_events_the_services_make_are_not_mistaken_for_leaks(personal_data_guard: PersonalDataGuard) -> None:
    not_personal = [
        "V00000001",  # volunteer number
        "370303001001",  # division code
        "0190a8a1-1391-7234-8001-139123400012",  # a UUID with mobile-like digits inside
        "ORD-20260101-13912340",  # order ids, dates
        "2026-01-15T08:00:00+00:00",
        "f" * 20 + "139123400011" + "e" * 32,  # a hash
        ID[:17] + ("0" if ID[17] != "0" else "1"),  # 18 digits with the wrong check character
        "12345678901",  # not a mobile (12 is no mobile prefix)
        "139123400011",  # 12 digits
    ]
    assert caught(personal_data_guard, note="; ".join(not_personal), lines=not_personal) == []
    with personal_data_guard.expecting_leaks() as leaks:
        registered_envelope(1)
        registered_envelope(2, party=True)
    assert leaks == []


def test_a_leaking_event_fails_the_test_that_made_it(tmp_path: Path) -> None:
    """The guard in a pytest run of its own: the leaking test fails, naming the event, the
    field and the kind, never the number; the other test passes; the session counts them."""
    (tmp_path / "test_leaks.py").write_text(
        textwrap.dedent(
            f"""
            from shared.catalog import Event, EventCatalog

            own = EventCatalog()

            @own.register(context="test", aggregate="note", action="written")
            class NoteWritten(Event):
                '''A note.'''
                note: str

            def make(note):
                event = NoteWritten(note=note)
                own.envelope(event, aggregate_id="N1", aggregate_version=1, org_path=("370303",), actor="t")

            def test_leaks():
                make("ID {ID}")

            def test_does_not_leak():
                make("all well")
            """
        ),
        encoding="utf-8",
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.infra.personal_data",
            "-p",
            "no:cacheprovider",
            "-q",
            "test_leaks.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "1 failed, 1 passed" in output, output
    assert "personal data in 1 event(s) made during the call of test_leaks.py::test_leaks" in output, output
    assert "NoteWritten.payload.note carries a resident ID number (3703**********" in output, output
    assert ID not in output
    assert "personal data: 2 events checked, of 1 types; 1 leaks" in output, output
