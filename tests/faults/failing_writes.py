"""A fault injector for a store: while on, a share of its write transactions fail at their first
write (as a full disk or a lost database connection would), and nothing of them is kept."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class FailingWrites:
    def __init__(self, engine: AsyncEngine, rate: float, seed: int = 2) -> None:
        self.rate = rate
        self.on = False
        self.failed = 0
        self.writes = 0
        self._rng = random.Random(seed)
        event.listen(engine.sync_engine, "begin", self._begin)
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)

    def _begin(self, conn: Any) -> None:
        conn.info.pop("beacon_fault_decided", None)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        # Decided once per transaction, at its first write: a tenth of the transactions fail.
        if not self.on or conn.info.get("beacon_fault_decided") or not statement.lstrip().upper().startswith(_WRITES):
            return
        conn.info["beacon_fault_decided"] = True
        self.writes += 1
        if self._rng.random() < self.rate:
            self.failed += 1
            raise sqlite3.OperationalError("disk I/O error (injected)")
