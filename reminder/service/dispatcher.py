"""The dispatcher: what lives across passes of delivery (the ledger, the transport, the
clock, the lease, the last notice plan), and the pass it runs at each wake-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from ..core.mailing import DeliveryKey
from ..core.notices import NoticePlan
from ..core.planned import Tally
from ..mail.transport import Transport
from ..storage.backend import DeliveryLedger
from ..storage.thread import LedgerHere, LedgerThread
from .delivery import DeliveryPass
from .faults import Fault
from .lookahead import notice_plan, wakeup_instants
from .snapshot import Snapshot

Clock = Callable[[], datetime]


class Observer(Protocol):
    """Told of messages handed to the transport and of each outcome (metrics, readiness)."""

    def in_flight(self, change: int) -> None: ...

    def settled(self, key: DeliveryKey, outcome: str, due_at: datetime | None = None) -> None: ...


class NoObserver:
    def in_flight(self, change: int) -> None:
        pass

    def settled(self, key: DeliveryKey, outcome: str, due_at: datetime | None = None) -> None:
        pass


class Dispatcher:
    """Turns the plan at an instant into deliveries, each recorded in the ledger once."""

    def __init__(
        self,
        ledger: DeliveryLedger | LedgerThread[Any],
        transport: Transport,
        clock: Clock,
        *,
        helpers: int = 0,
        lease: Callable[[], int | None] = lambda: 0,
        observer: Observer | None = None,
    ) -> None:
        # The ledger's own thread (the worker's), or calls made at once on a ledger of
        # this thread (simulate, tests, benchmarks).
        self.thread: LedgerThread[Any] | LedgerHere[Any] = (
            ledger if isinstance(ledger, LedgerThread) else LedgerHere(ledger)
        )
        self.ledger: DeliveryLedger = self.thread.ledger
        self.transport = transport
        self.clock = clock
        self.helpers = helpers  # processes that help compose a large batch
        # The lease's term while this worker holds it, None while it does not; the term
        # changes when a lapsed lease is renewed (another worker may have adopted claims).
        self.lease = lease
        self.observer = observer or NoObserver()
        # Transient failures, one line per cause (a relay that refuses, a full disk),
        # not one per message.
        self.retries = Fault("the mail server", level=logging.INFO)
        self.running: DeliveryPass | None = None
        # The last notice plan: of which files, and the ledger's mark of outside writes
        # read just before it was made.
        self._notices: tuple[Snapshot, NoticePlan, int | None] | None = None

    @property
    def in_flight(self) -> int:
        """Deliveries the running pass claimed and has not settled."""
        return len(self.running.unsettled) if self.running is not None else 0

    async def wakeups(self, snapshot: Snapshot, now: datetime) -> list[datetime]:
        # The notice plan of the pass that just ran still names every instant that matters.
        cached = self._notices[1] if self._notices and self._notices[0] is snapshot else None
        instants: list[datetime] = await self.thread.call(
            wakeup_instants, self.ledger, snapshot, now, cached
        )
        return instants

    async def notice_plan(self, snapshot: Snapshot, now: datetime) -> NoticePlan:
        plan: NoticePlan = await self.thread.call(self._notice_plan, snapshot, now)
        return plan

    def _notice_plan(self, snapshot: Snapshot, now: datetime) -> NoticePlan:
        """The change notices owed now.

        Making the plan reads what every registrant was last told: seconds at 1,000,000.
        A plan that owed, awaited, superseded and held nothing stays true while the files
        are the same and no other process has written to the ledger since (what this
        worker sent meanwhile told today's facts), so the pass at a batch's instant does
        not make its first message wait for it.
        """
        mark = self.ledger.outside_writes()
        if self._notices is not None:
            files, cached, before = self._notices
            if files is snapshot and cached.quiet and mark is not None and mark == before:
                return cached
        notices = notice_plan(self.ledger, snapshot, now, observe=True)
        self._notices = (snapshot, notices, mark)
        return notices

    async def run(self, snapshot: Snapshot, stopping: asyncio.Event | None = None) -> Tally:
        """Send everything owed at the clock's now; return what happened."""
        one = DeliveryPass(self, snapshot, self.clock())
        self.running = one
        try:
            return await one.run(stopping)
        finally:
            self.running = None
