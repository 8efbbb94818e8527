"""The statements code sends to the database, and the plans the database makes for them: for
tests that check how rows are found (by an index, not by reading the whole table)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import reading

Sent = list[tuple[str, Any]]  # (statement, parameters) as the driver got them


@contextmanager
def statements_sent(engine: AsyncEngine, keep: Callable[[str], bool] = lambda _: True) -> Iterator[Sent]:
    """The statements `keep` takes that go to the driver inside the `with`, in order."""
    sent: Sent = []

    def remember(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if keep(statement):
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", remember)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", remember)


async def plan_of(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    """The plan for a statement sent: SQLite's steps a line each (`SEARCH t USING INDEX …`),
    PostgreSQL's as JSON (`"Node Type": "Seq Scan"`, `"Index Name": …`)."""
    async with reading(engine) as conn:
        if engine.dialect.name == "sqlite":
            steps = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(step[-1] for step in steps)
        explained = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
        return json.dumps(explained.scalar())
