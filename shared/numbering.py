"""Numbered series of a service (V00000001, T00000001, O00000001, …): a row per series in the
service's own store, taken under the write transaction's row lock, so numbers have no gaps."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import upsert


class Counters:
    def __init__(self, metadata: MetaData) -> None:
        self.table = Table(
            "counters",
            metadata,
            Column("name", String(20), primary_key=True),
            Column("value", Integer, nullable=False),
        )

    async def next(self, conn: AsyncConnection, prefix: str, digits: int = 8) -> str:
        (number,) = await self.reserve(conn, prefix, 1, digits)
        return number

    async def reserve(self, conn: AsyncConnection, prefix: str, count: int, digits: int = 8) -> list[str]:
        """`count` consecutive numbers in one update; the row stays locked until the commit."""
        table = self.table
        statement = upsert(conn, table).values(name=prefix, value=count)
        statement = statement.on_conflict_do_update(index_elements=["name"], set_={"value": table.c.value + count})
        last = await conn.scalar(statement.returning(table.c.value))
        return [f"{prefix}{value:0{digits}d}" for value in range(last - count + 1, last + 1)]

    async def give_back(self, conn: AsyncConnection, prefix: str, count: int) -> None:
        """Return the last `count` numbers reserved in this same transaction, unused. Safe only
        before it ends: its row lock kept anyone else from taking numbers since."""
        if count:
            table = self.table
            await conn.execute(table.update().where(table.c.name == prefix).values(value=table.c.value - count))
