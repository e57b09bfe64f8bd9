"""The ledger's own thread: the event loop hands it work and awaits the answer, never the
database (invariant 13).

sqlite3 binds a connection to the thread that opened it, and a PostgreSQL call may wait
on the network: so the worker opens its ledger in one dedicated thread, and every call
on it runs there, one at a time, in the order the loop queued them. The loop awaits a
future; `/healthz`, timers and SMTP connections go on meanwhile.

The queue is the seam for group commit: `_serve` takes one item at a time today; a
version that takes every `record` already queued and runs them in one transaction keeps
invariant 9 as long as it resolves each item's future only after that commit (each SMTP
connection awaits its own result's future before its next transaction).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core.errors import LedgerError, LedgerUnreachable

T = TypeVar("T")
L = TypeVar("L")

# A call the database refused for want of a connection is tried again this often, on
# the loop's clock (asyncio.sleep): the pass resumes within this of the server's return.
RETRY_EVERY = 0.5


@dataclass(frozen=True)
class Outage:
    """The ledger has not answered since `since` (time.time()), for `cause`."""

    since: float
    cause: str


@dataclass
class _Work:
    work: Callable[..., Any]
    args: tuple[Any, ...]
    future: concurrent.futures.Future[Any]


class LedgerThread(Generic[L]):
    """One thread that owns the ledger: `await thread.call(ledger.claim, claims, now)`.

    `ledger` is the synchronous object opened in the thread: read its plain attributes
    anywhere (`shared`, `path`), call its methods only through `call`. A call that finds
    the database unreachable is tried again every RETRY_EVERY seconds for `patience`
    seconds (`patient`), with the outage told to `on_outage` once when it starts and once
    when it ends (None), so the worker logs it once and readiness names it.
    """

    def __init__(
        self,
        *,
        patience: float = 30.0,
        name: str = "reminder-ledger",
        on_outage: Callable[[Outage | None], None] = lambda _: None,
    ) -> None:
        self.patience = patience
        self.on_outage = on_outage
        self.outage: Outage | None = None
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._busy_since: float | None = None  # time.monotonic() when the running call began
        self._ledger: L | None = None

    @property
    def ledger(self) -> L:
        if self._ledger is None:
            raise RuntimeError("the ledger thread has not opened its ledger")
        return self._ledger

    async def open(self, opener: Callable[[], L]) -> L:
        """Start the thread and open the ledger in it (its connection belongs there)."""
        self._thread.start()
        self._ledger = await self.call(opener, patient=False)
        return self._ledger

    async def close(self, closer: Callable[[L], None]) -> None:
        """Close the ledger in its thread, then end the thread."""
        try:
            if self._ledger is not None:
                await self.call(closer, self._ledger, patient=False)
        finally:
            self._queue.put(None)

    def stuck_for(self) -> float:
        """Seconds the call running now has taken (0 when the thread waits for work)."""
        began = self._busy_since
        return 0.0 if began is None else time.monotonic() - began

    async def call(
        self,
        work: Callable[..., T],
        *args: Any,
        patient: bool = True,
        deadline: float | None = None,
    ) -> T:
        """`work(*args)` in the ledger's thread, awaited.

        With `deadline`, a LedgerError when no answer came within it (the work, if it has
        not started, never runs). `patient`: a database that cannot be reached is tried
        again until `patience` runs out; otherwise its LedgerUnreachable is raised at once.
        """
        started = time.monotonic()
        while True:
            try:
                result = await self._once(work, args, deadline)
            except LedgerUnreachable as exc:
                self._down(str(exc.cause or exc))
                if not patient or time.monotonic() - started >= self.patience:
                    raise
                await asyncio.sleep(RETRY_EVERY)
                continue
            self._up()
            return result

    async def _once(
        self, work: Callable[..., T], args: tuple[Any, ...], deadline: float | None
    ) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Work(work, args, future))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), deadline)
        except TimeoutError:
            raise LedgerError(
                f"the ledger did not answer within {deadline:g} s (busy, or its storage hangs)"
            ) from None

    def _down(self, cause: str) -> None:
        if self.outage is None:
            self.outage = Outage(time.time(), cause)
            self.on_outage(self.outage)
        elif cause != self.outage.cause:  # told as it is now; the outage's start stays
            self.outage = Outage(self.outage.since, cause)

    def _up(self) -> None:
        if self.outage is not None:
            self.outage = None
            self.on_outage(None)

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            if not item.future.set_running_or_notify_cancel():
                continue  # its caller stopped waiting before it began
            self._busy_since = time.monotonic()
            try:
                result = item.work(*item.args)
            except BaseException as exc:  # handed to the awaiting caller, whatever it is
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
            finally:
                self._busy_since = None


class LedgerHere(Generic[L]):
    """The same calls on a ledger opened in this thread, made at once: for commands and
    tests that run a pass without a worker (`simulate`, benchmarks)."""

    outage: Outage | None = None

    def __init__(self, ledger: L) -> None:
        self.ledger = ledger

    def stuck_for(self) -> float:
        return 0.0

    async def call(
        self,
        work: Callable[..., T],
        *args: Any,
        patient: bool = True,
        deadline: float | None = None,
    ) -> T:
        return work(*args)
