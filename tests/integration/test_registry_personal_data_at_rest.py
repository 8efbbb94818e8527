"""Registry's personal data at rest, read as an intruder would: volunteers registered through the
API and the CSV import, then the SQLite file and its WAL read byte by byte, and every row and the
sealed columns of PostgreSQL read raw. No name, ID number or mobile is there in clear, in any
common encoding, nor as a plain hash of the ID number."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.registry.app import create_app
from tests.factories import TEST_ID_INDEX_KEY, TEST_PERSONAL_DATA_KEY, resident_id
from tests.infra.auth import ADMIN
from tests.infra.city import COMMUNITY, STAFF, TREE, ok, registry_settings
from tests.infra.postgres import throwaway_database

# Two people share a name: sealing the same value twice must give two different blobs.
PEOPLE = [
    ("王小明", resident_id("37030319900101123"), "13912340001"),
    ("Ouyang Xiaoming", resident_id("37030319851231204"), "13812345678"),
    ("王小明", resident_id("37030320010817005"), "15966660002"),
    ("欧阳娜娜", resident_id("37030319700101306"), "18655550003"),
]
BY_API, BY_IMPORT = PEOPLE[:2], PEOPLE[2:]


def clear_forms(value: str) -> dict[str, bytes]:
    """The ways a value could sit in a file or column without any key: text in the usual
    encodings, hex and base64 of it, the number itself, and plain hashes of it."""
    raw = value.encode()
    forms = {
        encoding: value.encode(encoding) for encoding in ("utf-8", "gb18030", "utf-16-le", "utf-16-be", "utf-32-le")
    }
    forms |= {
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "base64": base64.b64encode(raw).rstrip(b"="),
    }
    if value[:17].isdigit():
        number = int(value[:17])
        forms |= {
            "integer": number.to_bytes((number.bit_length() + 7) // 8, "big"),  # as SQLite keeps one
            "int8 (big-endian)": number.to_bytes(8, "big"),
            "int8 (little-endian)": number.to_bytes(8, "little"),
        }
    for algorithm in ("md5", "sha1", "sha256"):
        forms[algorithm] = hashlib.new(algorithm, raw).hexdigest().encode()
    return forms


def in_clear(blob: bytes) -> list[str]:
    """Which personal value shows in `blob`, and how (masked: a failure must not print it)."""
    shown = []
    for person, (name, id_number, phone) in enumerate(PEOPLE):
        for kind, value in (("name", name), ("ID number", id_number), ("mobile", phone)):
            for form, encoded in clear_forms(value).items():
                if encoded in blob:
                    shown.append(f"the {kind} of PEOPLE[{person}] as {form}")
    return shown


@contextlib.asynccontextmanager
async def registry_with_people(nats_url: str, database_url: str) -> AsyncIterator[Any]:
    settings = registry_settings(nats_url, database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry", headers=ADMIN) as client:
            await ok(await client.post("/org-units/import", content=TREE, headers={"content-type": "text/csv"}))
            for name, id_number, phone in BY_API:
                body = {
                    "name": name,
                    "id_number": id_number,
                    "phone": phone,
                    "community_code": COMMUNITY,
                    "consent": True,
                }
                await ok(await client.post("/volunteers", json=body, headers=STAFF))
            rows = "".join(f"{name},{id_number},{phone},{COMMUNITY}\n" for name, id_number, phone in BY_IMPORT)
            csv = ("姓名,身份证号,手机号,所属社区代码\n" + rows).encode()
            report = await ok(
                await client.post("/volunteers/import", content=csv, headers={**STAFF, "content-type": "text/csv"})
            )
            assert report["imported"] == len(BY_IMPORT), report
            # Registry can still read them: the data is there, sealed, not lost.
            clear = await ok(await client.get("/volunteers/V00000004", headers=STAFF))
            assert (clear["name"], clear["id_number"], clear["phone"]) == PEOPLE[3]
        yield app


def files_of(database: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in database.parent.glob(database.name + "*") if path.is_file()}


async def test_no_personal_data_is_readable_in_the_sqlite_file_or_its_wal(nats_url: str, tmp_path: Path) -> None:
    database = tmp_path / "registry.db"
    async with registry_with_people(nats_url, f"sqlite:///{database}"):
        running = files_of(database)  # the newest pages are in the WAL until a checkpoint
        assert f"{database.name}-wal" in running
    stopped = files_of(database)
    for moment, files in (("while running", running), ("after stopping", stopped)):
        everything = b"".join(files.values())
        # The reading works: what is kept in clear is found in the same bytes.
        assert "和平社区".encode() in everything and b"V00000004" in everything, moment
        for file_name, content in files.items():
            assert in_clear(content) == [], f"{file_name} {moment}"
    keys = [base64.b64decode(TEST_PERSONAL_DATA_KEY), base64.b64decode(TEST_ID_INDEX_KEY)]
    assert not any(key in content or base64.b64encode(key) in content for key in keys for content in stopped.values())


async def test_no_personal_data_is_readable_in_any_postgresql_row(nats_url: str, postgres_admin_url: str) -> None:
    async with throwaway_database(postgres_admin_url) as url:
        async with registry_with_people(nats_url, url):
            pass
        conn = await asyncpg.connect(url)
        try:
            tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            rows = {
                t["tablename"]: await conn.fetch(f'SELECT t::text AS row FROM "{t["tablename"]}" AS t') for t in tables
            }
            sealed = await conn.fetch(
                "SELECT name_sealed, id_number_sealed, phone_sealed FROM volunteers ORDER BY volunteer_number"
            )
        finally:
            await conn.close()
    text = {table: "\n".join(r["row"] for r in found).encode() for table, found in rows.items()}
    assert "和平社区".encode() in text["org_units"] and b"V00000004" in text["volunteers"]
    for table, content in text.items():
        assert in_clear(content) == [], table
    assert len(sealed) == len(PEOPLE)
    for row, (name, id_number, phone) in zip(sealed, PEOPLE, strict=True):
        for column, value in zip(
            ("name_sealed", "id_number_sealed", "phone_sealed"), (name, id_number, phone), strict=True
        ):
            blob = bytes(row[column])
            assert in_clear(blob) == [], column
            assert len(blob) >= len(value.encode()) + 28, column  # nonce and tag: sealed, not encoded
    # The same name sealed for two volunteers: nothing in the column tells them apart as equal.
    assert bytes(sealed[0]["name_sealed"]) != bytes(sealed[2]["name_sealed"])
