"""Bulk import of volunteers from a CSV file as a provincial platform exports it.

The file is read as a stream, row by row, and registered in batches (one transaction each) with
the same checks as a single registration. Refused rows are reported with their line number and
reason; a row whose ID number is already registered is skipped, so running a file twice is safe.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import itertools
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TextIO

from services.registry.domain.volunteers import AlreadyRegistered
from services.registry.handlers import Registry
from services.registry.handlers import volunteers as handlers
from shared.auth import Actor
from shared.errors import Invalid, Refused
from shared.events.common import PoliticalStatus

BATCH_SIZE = 500
KEEP_PROBLEMS = 10_000
# The encoding is decided from the head of the file: UTF-8 (with or without BOM), else GB18030.
SNIFF_BYTES = 64 * 1024

# Column headers of the provincial export (and their English names) -> our field.
COLUMNS = {
    "姓名": "name",
    "name": "name",
    "身份证号": "id_number",
    "身份证号码": "id_number",
    "证件号码": "id_number",
    "id_number": "id_number",
    "手机号": "phone",
    "手机号码": "phone",
    "联系电话": "phone",
    "phone": "phone",
    "所属社区代码": "community_code",
    "社区代码": "community_code",
    "community_code": "community_code",
    "政治面貌": "political_status",
    "political_status": "political_status",
    "技能": "skills",
    "skills": "skills",
    "同意授权": "consent",
    "consent": "consent",
    "标签": "tags",
    "tags": "tags",
}
REQUIRED = ("name", "id_number", "phone", "community_code")

POLITICAL_STATUS = {
    "中共党员": PoliticalStatus.party_member,
    "中共预备党员": PoliticalStatus.party_member,
    "共青团员": PoliticalStatus.league_member,
    "群众": PoliticalStatus.masses,
    "公职人员": PoliticalStatus.public_servant,
    **{status.value: status for status in PoliticalStatus},
}

# Skills in Beacon are lower_snake ASCII; these are the Chinese names the exports use for them.
SKILLS = {
    "急救": "first_aid",
    "交通引导": "traffic_guidance",
    "助老": "elder_care",
    "支教": "tutoring",
    "辅导": "tutoring",
    "法律": "legal_aid",
    "文艺": "culture_art",
}
SEPARATORS = str.maketrans({"；": ";", ",": ";"})

CONSENT = {"是": True, "yes": True, "true": True, "1": True, "否": False, "no": False, "false": False, "0": False, "": False}


@dataclass(frozen=True)
class Problem:
    line: int
    outcome: str  # "refused" or "skipped" (already registered)
    reason: str
    field: str | None = None


@dataclass
class ImportReport:
    """What an import did. Problems beyond `keep_problems` are counted, not kept."""

    rows: int = 0
    imported: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0
    encoding: str = ""
    bytes_read: int = 0
    stopped: str | None = None  # why the import ended before the end of the file
    problems: list[Problem] = field(default_factory=list)
    problems_not_kept: int = 0
    keep_problems: int = KEEP_PROBLEMS

    def add_problem(self, problem: Problem) -> None:
        if len(self.problems) < self.keep_problems:
            self.problems.append(problem)
        else:
            self.problems_not_kept += 1

    def as_dict(self, problems: int | None = None) -> dict[str, Any]:
        shown = self.problems if problems is None else self.problems[:problems]
        return {
            "rows": self.rows,
            "imported": self.imported,
            "skipped": self.skipped,
            "refused": self.refused,
            "seconds": round(self.seconds, 3),
            "encoding": self.encoding,
            "stopped": self.stopped,
            "problems": [{"line": p.line, "outcome": p.outcome, "field": p.field, "reason": p.reason} for p in shown],
            "problems_not_listed": self.problems_not_kept + len(self.problems) - len(shown),
        }


class ImportAborted(Exception):
    """The rest of the file cannot be read (broken encoding or quoting): stop where we are."""


# --- reading: bytes -> text -> rows --------------------------------------------------------


class _ChunkReader(io.RawIOBase):
    """A binary stream over an iterator of byte chunks, counting the bytes handed out."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.bytes_read += size
        return size


def choose_encoding(head: bytes, complete: bool) -> str:
    """UTF-8 when the head of the file decodes as UTF-8, else GB18030."""
    for encoding in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(encoding)().decode(head, final=complete)
            return encoding
        except UnicodeDecodeError:
            continue
    raise Invalid("the file is neither UTF-8 nor GB18030 text", field="file")


def _header_key(cell: str) -> str:
    # Exports mark required columns with an asterisk; English headers in any case.
    return cell.strip().lstrip("*＊").strip().lower()


@dataclass(frozen=True)
class _Columns:
    index: dict[str, int]

    @classmethod
    def from_header(cls, header: list[str]) -> _Columns:
        index: dict[str, int] = {}
        for position, cell in enumerate(header):
            name = COLUMNS.get(_header_key(cell))
            if name is None:
                continue  # the exports carry more columns than we need (性别, 出生日期, ...)
            if name in index:
                raise Invalid(
                    f"columns {header[index[name]].strip()!r} and {cell.strip()!r} both give the {name}", field="file"
                )
            index[name] = position
        missing = [name for name in REQUIRED if name not in index]
        if missing:
            wanted = {name: [h for h, n in COLUMNS.items() if n == name] for name in missing}
            raise Invalid(
                "the header lacks " + "; ".join(f"{name} ({' / '.join(names)})" for name, names in wanted.items()),
                field="file",
            )
        return cls(index)


def political_status(value: str) -> PoliticalStatus:
    value = value.strip()
    if not value:
        return PoliticalStatus.masses
    status = POLITICAL_STATUS.get(value) or POLITICAL_STATUS.get(value.lower())
    if status is None:
        raise Invalid(f"unknown political status {value!r} (中共党员, 中共预备党员, 共青团员, 群众, 公职人员)", field="political_status")
    return status


def skills(value: str) -> tuple[str, ...]:
    names = []
    for part in value.translate(SEPARATORS).split(";"):
        part = part.strip()
        if not part:
            continue
        if part in SKILLS:
            names.append(SKILLS[part])
        elif part.isascii():
            names.append(part)  # English names are checked by the domain as for any registration
        else:
            raise Invalid(f"unknown skill {part!r} (known: {', '.join(SKILLS)}; or English like first_aid)", field="skills")
    return tuple(names)


def tags(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.translate(SEPARATORS).split(";") if part.strip())


def consent(value: str) -> bool:
    answer = CONSENT.get(value.strip().lower())
    if answer is None:
        raise Invalid(f"consent is 是/yes/true/1 or 否/no/false/0, not {value.strip()!r}", field="consent")
    return answer


@dataclass(frozen=True)
class _Row:
    line: int
    volunteer: handlers.NewVolunteer | None
    refusal: Refused | None = None


class _Rows:
    """The data rows of a CSV stream, one at a time; decides the encoding and reads the header."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.encoding = ""
        self.stopped: str | None = None  # why the rest of the file cannot be read
        self._raw: _ChunkReader | None = None
        self._reader: Any = None
        self._columns = _Columns({})
        self._header_width = 0
        self._width = 0

    @property
    def bytes_read(self) -> int:
        return self._raw.bytes_read if self._raw else 0

    def open(self) -> None:
        """Decide the encoding from the head of the file and read the header (line 1)."""
        head, complete = b"", False
        while len(head) < SNIFF_BYTES:
            chunk = next(self._chunks, None)
            if chunk is None:
                complete = True
                break
            head += chunk
        self.encoding = choose_encoding(head, complete)
        self._raw = _ChunkReader(itertools.chain([head] if head else [], self._chunks))
        self._reader = csv.reader(self._decoded(io.BufferedReader(self._raw, 64 * 1024)))
        try:
            header = self._next(1)
        except ImportAborted as error:
            raise Invalid(str(error), field="file") from None
        if header is None:
            raise Invalid("the file is empty: line 1 is the header", field="file")
        self._columns = _Columns.from_header(header)
        self._header_width = len(header)
        self._width = max(self._columns.index.values()) + 1

    def _decoded(self, lines: io.BufferedReader) -> Iterator[str]:
        # Line by line (a newline byte is never part of a character in UTF-8 or GB18030), so
        # that a decoding error names its line and loses none of the lines before it.
        codec = "utf-8-sig" if self.encoding == "utf-8" else self.encoding  # drops a BOM
        for line in lines:
            yield line.decode(codec)

    def _next(self, line: int) -> list[str] | None:
        try:
            return next(self._reader, None)
        except UnicodeDecodeError:
            where = self._reader.line_num + 1
            raise ImportAborted(f"line {where}: not valid {self.encoding} (the encoding of the start of the file)") from None
        except csv.Error as error:
            raise ImportAborted(f"line {line}: {error} (a quote opened and never closed?)") from None

    def take(self, count: int) -> list[_Row]:
        """Up to `count` more data rows (blank lines are passed over); [] at the end, or once the
        rest cannot be read (`stopped` says why; the rows before it are returned)."""
        rows: list[_Row] = []
        while len(rows) < count and self.stopped is None:
            line = self._reader.line_num + 1  # where this record starts (it may span lines)
            try:
                cells = self._next(line)
            except ImportAborted as error:
                self.stopped = str(error)
                break
            if cells is None:
                break
            if not any(cell.strip() for cell in cells):
                continue
            rows.append(self._row(line, cells))
        return rows

    def _row(self, line: int, cells: list[str]) -> _Row:
        if len(cells) < self._width:
            return _Row(line, None, Invalid(f"the row has {len(cells)} cells, the header {self._header_width}"))
        index = self._columns.index

        def cell(name: str) -> str | None:
            return cells[index[name]] if name in index else None

        try:
            volunteer = handlers.NewVolunteer(
                name=cell("name") or "",
                id_number=cell("id_number") or "",
                phone=cell("phone") or "",
                community_code=(cell("community_code") or "").strip(),
                political_status=political_status(cell("political_status") or ""),
                skills=skills(cell("skills") or ""),
                # No consent column: the platform exports only volunteers who consented.
                consent=True if "consent" not in index else consent(cell("consent") or ""),
                tags=tags(cell("tags") or ""),
            )
        except Refused as refusal:
            return _Row(line, None, refusal)
        return _Row(line, volunteer)


def blocking(chunks: AsyncIterable[bytes], loop: asyncio.AbstractEventLoop) -> Iterator[bytes]:
    """The chunks of an async stream (an HTTP request body) for a reader in a worker thread."""
    iterator = chunks.__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await iterator.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := asyncio.run_coroutine_threadsafe(next_chunk(), loop).result()) is not None:
        if chunk:
            yield chunk


# --- importing -----------------------------------------------------------------------------


class ProblemWriter:
    """Problems written to a CSV report as they are found: line, outcome, field, reason."""

    def __init__(self, file: TextIO) -> None:
        self._writer = csv.writer(file)
        self._writer.writerow(["line", "outcome", "field", "reason"])
        self._file = file

    def write(self, problems: list[Problem]) -> None:
        self._writer.writerows((p.line, p.outcome, p.field or "", p.reason) for p in problems)
        self._file.flush()


def _already_registered(refusal: Refused) -> str | None:
    """How a skipped row is reported: the holder's number, when the importer reaches them."""
    if isinstance(refusal, AlreadyRegistered):
        holder = refusal.details.get("volunteer_number")
        return f"already registered as {holder}" if holder else "already registered, outside your part of the city"
    return None


async def import_volunteers(
    registry: Registry,
    actor: Actor,
    source: Iterable[bytes] | AsyncIterable[bytes],
    *,
    today: date,
    batch_size: int = BATCH_SIZE,
    keep_problems: int = KEEP_PROBLEMS,
    problems_to: TextIO | None = None,
    on_batch: Callable[[ImportReport], None] | None = None,
    reaches: Callable[[tuple[str, ...]], bool] = lambda path: True,
) -> ImportReport:
    """Import volunteers from CSV bytes, `batch_size` rows per transaction.

    A header that lacks a required column, or a file in neither UTF-8 nor GB18030, raises
    Invalid before anything is written. Rows are registered only into communities the importer
    `reaches` (a signed-in caller's part of the tree; the command line's operator, anywhere). Rows are read as they are needed: parsing happens in a
    worker thread (an async source is read on this loop), registering on this loop.
    """
    started = time.perf_counter()
    if isinstance(source, AsyncIterable):
        source = blocking(source, asyncio.get_running_loop())
    rows = _Rows(source)
    await asyncio.to_thread(rows.open)
    report = ImportReport(encoding=rows.encoding, keep_problems=keep_problems)
    writer = ProblemWriter(problems_to) if problems_to is not None else None
    while batch := await asyncio.to_thread(rows.take, batch_size):
        report.rows += len(batch)
        problems: list[Problem] = []
        volunteers = [row.volunteer for row in batch if row.volunteer is not None]
        registered = iter(await handlers.register_batch(registry, actor, volunteers, today, reaches))
        for row in batch:
            outcome = row.refusal or next(registered)
            if isinstance(outcome, str):
                report.imported += 1
            elif (skipped := _already_registered(outcome)) is not None:
                report.skipped += 1
                problems.append(Problem(row.line, "skipped", skipped, "id_number"))
            else:
                report.refused += 1
                problems.append(Problem(row.line, "refused", outcome.message, outcome.field))
        for problem in problems:
            report.add_problem(problem)
        if writer is not None and problems:
            writer.write(problems)
        report.bytes_read = rows.bytes_read
        report.seconds = time.perf_counter() - started
        if on_batch is not None:
            on_batch(report)
    report.stopped = rows.stopped
    report.bytes_read = rows.bytes_read
    report.seconds = time.perf_counter() - started
    return report
