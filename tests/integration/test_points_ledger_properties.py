"""Random sequences of earning, adjusting, revoking, redeeming, cancelling, handing over,
expiring and redelivering, against the real store (SQLite): after every step the books balance,
no balance is negative without a debt, each dispatch event is posted at most once, and the
ledger folded from points' own events is the one stored."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from services.points import handlers
from services.points.books import MINUTES, POINTS, RuleCache
from shared.errors import Conflict
from shared.events.dispatch import RecordSource
from shared.web import Actor
from tests.infra.points import DispatchRecords, open_account, open_site, points_store, post, read_books, rebuild

STAFF = Actor("staff-1")
VOLUNTEERS = 3
SITE = "S-370303001001"


class LedgerMachine(RuleBasedStateMachine):
    records = Bundle("records")
    redemptions = Bundle("redemptions")

    def __init__(self) -> None:
        super().__init__()
        # The store's own event loop, in a thread of its own: whatever loop the test runner keeps
        # in this thread (pytest-asyncio's session loop) cannot get in its way.
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ledger-machine", daemon=True)
        self.thread.start()
        self.directory = TemporaryDirectory()
        self.events = points_store(f"sqlite:///{Path(self.directory.name) / 'points.db'}")
        self.rules = RuleCache()
        self.dispatch = DispatchRecords()
        self.now = datetime(2026, 11, 23, 2, tzinfo=UTC)
        self.delivered: list = []  # every dispatch event handed to the ledger, for redelivery
        self.numbers: list[str] = []
        self.run(self.events.create_tables())
        for n in range(1, VOLUNTEERS + 1):
            self.numbers.append(self.run(open_account(self.events, self.rules, n)))
        self.run(open_site(self.events, self.rules, SITE))
        self.item = self.run(handlers.list_item(self.events, SITE, "rice", 15, 1000, STAFF)).item_id

    def run(self, coroutine):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def teardown(self) -> None:
        try:
            self.run(self.events.engine.dispose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
            self.directory.cleanup()

    def deliver(self, item) -> None:  # noqa: ANN001
        self.delivered.append(item)
        self.run(post(self.events, self.rules, item))

    @rule(
        target=records,
        volunteer=st.integers(0, VOLUNTEERS - 1),
        quarter_hours=st.integers(1, 48),
        admin=st.booleans(),
        days_back=st.integers(0, 3),
    )
    def earn(self, volunteer: int, quarter_hours: int, admin: bool, days_back: int) -> str:
        source = RecordSource.admin_entry if admin else RecordSource.attendance
        hours = Decimal(quarter_hours) / 4
        day = (self.now - timedelta(days=days_back)).date()
        item = self.dispatch.confirm(self.numbers[volunteer], hours, self.now, day=day, source=source)
        self.deliver(item)
        return item[1].record_id

    @rule(record=records, quarter_hours=st.integers(0, 48))
    def adjust(self, record: str, quarter_hours: int) -> None:
        if self.dispatch.hours[record] == 0:
            return  # revoked: dispatch adjusts no more
        self.deliver(self.dispatch.adjust(record, Decimal(quarter_hours) / 4, self.now))

    @rule(record=consumes(records))
    def revoke(self, record: str) -> None:
        if self.dispatch.hours[record]:
            self.deliver(self.dispatch.revoke(record, self.now))

    @rule(target=redemptions, volunteer=st.integers(0, VOLUNTEERS - 1), quantity=st.integers(1, 3))
    def redeem(self, volunteer: int, quantity: int) -> str:
        before = self.run(read_books(self.events))
        try:
            return self.run(handlers.redeem(self.events, self.numbers[volunteer], self.item, quantity, STAFF, self.now)).redemption_id
        except Conflict:
            after = self.run(read_books(self.events))
            assert after.accounts == before.accounts and len(after.events) == len(before.events), "a refusal changed the books"
            return ""

    @rule(redemption=consumes(redemptions), hand_over=st.booleans())
    def settle(self, redemption: str, hand_over: bool) -> None:
        if redemption:
            reason = None if hand_over else "changed_mind"
            self.run(handlers.settle(self.events, redemption, STAFF, self.now, cancel_reason=reason))

    @rule(days=st.integers(1, 500))
    def time_passes_and_points_expire(self, days: int) -> None:
        self.now += timedelta(days=days)
        self.run(handlers.expire_due(self.events, self.now))

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        if self.delivered:
            self.run(post(self.events, self.rules, data.draw(st.sampled_from(self.delivered))))

    @invariant()
    def the_ledger_holds(self) -> None:
        books = self.run(read_books(self.events))
        # The books balance: every unit's balances, volunteers' and the rest, sum to zero.
        for unit in (POINTS, MINUTES):
            volunteers = sum(a.balance if unit == POINTS else a.time_balance for a in books.accounts.values())
            others = sum(b for (_, u), b in books.balances.items() if u == unit)
            assert volunteers + others == 0, f"{unit} do not balance"
        # The journal explains every stored balance.
        for (account, unit), balance in books.balances.items():
            assert books.journal_balances.get((account, unit), 0) == balance, account
        for number, account in books.accounts.items():
            assert books.journal_balances.get((f"volunteer:{number}", POINTS), 0) == account.balance
            assert books.journal_balances.get((f"volunteer-time:{number}", MINUTES), 0) == account.time_balance
            # Negative only through a debt, and a debt only once every lot is spent.
            assert account.debt >= 0 and all(p > 0 for p in account.lots.values())
            assert account.debt == 0 or not account.lots
        # Each dispatch event was posted at most once: a credit, a debit, or (an adjustment whose
        # hours and points move apart) one of each.
        causes = Counter((e.causation_id, e.type) for e in books.events if e.type in ("ServiceCredited", "ServiceDebited"))
        assert all(count == 1 for count in causes.values())
        # The hours are dispatch's, and the stored ledger is what points' events fold to.
        for number, account in books.accounts.items():
            expected = sum(
                (h for r, h in self.dispatch.hours.items() if self.dispatch.attributes[r][0] == number), Decimal(0)
            )
            assert account.hours == expected
        rebuilt, balances = rebuild(books.events)
        assert rebuilt == books.accounts
        assert balances == {k: v for k, v in books.journal_balances.items() if v}


LedgerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ledger_properties = LedgerMachine.TestCase
