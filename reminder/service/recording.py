"""Recording outcomes off the event loop, each before its connection's next transaction.

Writing an outcome (an SQLite commit, or a round trip to PostgreSQL) takes as long as
sending a message on a fast relay, and the database does that work without holding the
GIL. A thread commits the outcomes, so the event loop goes on sending on the other
connections meanwhile; the connection whose outcome it is waits for the commit before
its next transaction, so a crash still resends at most one message per connection.
Outcomes that arrive while a commit is running are committed together in the next.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from ..storage.ledger import Outcome
from ..storage.store import DeliveryLedger


class Recording:
    """Outcomes of one pass, made durable by one thread, in the order they came."""

    def __init__(self, ledger: DeliveryLedger) -> None:
        self.ledger = ledger
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="reminder-ledger")
        self._waiting: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._busy = False

    def record(self, outcome: Outcome) -> asyncio.Future[None]:
        """Done once `outcome` is committed; failed with the ledger's error if it cannot be."""
        durable = asyncio.get_running_loop().create_future()
        self._waiting.append((outcome, durable))
        if not self._busy:
            self._commit()
        return durable

    def _commit(self) -> None:
        group, self._waiting = self._waiting, []
        self._busy = True
        outcomes = [outcome for outcome, _ in group]
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._thread, self._write, outcomes)
        running.add_done_callback(lambda done: self._committed(done, group))

    def _write(self, outcomes: list[Outcome]) -> None:
        # Each outcome carries its own time; `now` only dates one that has none.
        self.ledger.record(outcomes, outcomes[-1].at or datetime.now(UTC))

    def _committed(
        self, done: asyncio.Future[None], group: list[tuple[Outcome, asyncio.Future[None]]]
    ) -> None:
        self._busy = False
        failure = None if done.cancelled() else done.exception()
        for _, durable in group:
            if durable.done():
                continue  # its connection was cancelled while waiting
            if failure is not None:
                durable.set_exception(failure)
            else:
                durable.set_result(None)
        if self._waiting:
            self._commit()

    def close(self) -> None:
        """Wait for the commit in progress; the thread stops."""
        self._thread.shutdown(wait=True)
