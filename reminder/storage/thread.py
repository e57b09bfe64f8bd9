"""The ledger's own thread: the event loop hands it work and awaits the answer, never the
database (invariant 13).

sqlite3 binds a connection to the thread that opened it, and a PostgreSQL call may wait
on the network: so the worker opens its ledger in one dedicated thread, and every call
on it runs there, one at a time, in the order the loop queued them. The loop awaits a
future; `/healthz`, timers and SMTP connections go on meanwhile.

Results commit in groups: `record` queues one connection's outcome; the thread takes
every outcome already queued behind it (up to GROUP_MOST), in order, and commits them in
one transaction, then answers each caller. Invariant 9 holds because each SMTP
connection awaits its own outcome's future, resolved only after that commit, before it
starts its next transaction: a crash still resends at most what was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from ..core.errors import LedgerError, LedgerUnreachable
from .values import Outcome

T = TypeVar("T")
log = logging.getLogger("reminder")

# A call the database refused for want of a connection is tried again this often, on
# the loop's clock (asyncio.sleep): the pass resumes within this of the server's return.
RETRY_EVERY = 0.5
# Outcomes committed together at most: one transaction stays short.
GROUP_MOST = 64
CLOSE_DEADLINE = 10.0  # seconds a stop waits for the ledger to close


class Recording(Protocol):
    """What group commit needs of the ledger."""

    def record(self, outcomes: Sequence[Outcome], now: datetime) -> None: ...


L = TypeVar("L", bound=Recording)


@dataclass(frozen=True)
class Outage:
    """The ledger has not answered since `since` (time.time()), for `cause`."""

    since: float
    cause: str


@dataclass
class _Work:
    work: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]  # the loop's: answered from the thread in batches
    outcome: Outcome | None = None  # a `record` that may share its transaction


# (future, succeeded, its result or exception), handed back to the loop together.
_Answer = tuple["asyncio.Future[Any]", bool, Any]


def _settle(answers: list[_Answer]) -> None:
    """On the loop: each awaiting caller gets its own answer (none, if it left)."""
    for future, succeeded, value in answers:
        if future.done():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)


class LedgerThread(Generic[L]):
    """One thread that owns the ledger: `await thread.call(ledger.claim, claims, now)`.

    `ledger` is the synchronous object opened in the thread: read its plain attributes
    anywhere (`shared`, `path`), call its methods only through `call` (and `record`). A
    call that finds the database unreachable is tried again every RETRY_EVERY seconds for
    `patience` seconds (`patient`), with the outage told to `on_outage` once when it
    starts and once when it ends (None), so the worker logs it once and readiness names
    it.
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
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ledger(self) -> L:
        if self._ledger is None:
            raise RuntimeError("the ledger thread has not opened its ledger")
        return self._ledger

    async def open(self, opener: Callable[[], L]) -> L:
        """Start the thread and open the ledger in it (its connection belongs there)."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        self._ledger = await self.call(opener, patient=False)
        return self._ledger

    async def close(self, closer: Callable[[L], None]) -> None:
        """Close the ledger in its thread, then end the thread. A thread stuck in a call
        (a hung disk) is left behind, a daemon: the process still exits."""
        try:
            if self._ledger is not None:
                await self.call(closer, self._ledger, patient=False, deadline=CLOSE_DEADLINE)
        except LedgerError as exc:
            log.warning("the ledger was not closed cleanly: %s", exc)
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
        probe: bool = False,
    ) -> T:
        """`work(*args)` in the ledger's thread, awaited.

        With `deadline`, a LedgerError when no answer came within it (the work, if it has
        not started, never runs). `patient`: a database that cannot be reached is tried
        again until `patience` runs out; otherwise its LedgerUnreachable is raised at once.
        A `probe` (a call that always reaches the database) ends an outage by answering;
        so does a call that failed for it and then succeeded. Other calls may not touch
        the database at all (planning a chunk), and their success proves nothing.
        """
        return await self._retrying(work, args, patient, deadline, None, probe)

    async def record(self, outcome: Outcome) -> None:
        """Make one outcome durable, in a transaction it may share with the outcomes other
        connections queued meanwhile (group commit); returns once it is committed."""
        await self._retrying(self._record_alone, (outcome,), True, None, outcome, True)

    def _record_alone(self, outcome: Outcome) -> None:
        self.ledger.record([outcome], outcome.at or datetime.now(UTC))

    async def _retrying(
        self,
        work: Callable[..., T],
        args: tuple[Any, ...],
        patient: bool,
        deadline: float | None,
        outcome: Outcome | None,
        probe: bool,
    ) -> T:
        started = time.monotonic()
        while True:
            try:
                result = await self._once(work, args, deadline, outcome)
            except LedgerUnreachable as exc:
                self._down(str(exc.cause or exc))
                probe = True  # tried again, it reaches the database when it succeeds
                if not patient or time.monotonic() - started >= self.patience:
                    raise
                await asyncio.sleep(RETRY_EVERY)
                continue
            if probe:
                self._up()
            return result

    async def _once(
        self,
        work: Callable[..., T],
        args: tuple[Any, ...],
        deadline: float | None,
        outcome: Outcome | None,
    ) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Work(work, args, future, outcome))
        if deadline is None:
            return await future
        try:
            return await asyncio.wait_for(future, deadline)  # cancels it: it never runs
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
        pending: deque[_Work | None] = deque()  # taken behind a group, to run next
        while True:
            item = pending.popleft() if pending else self._queue.get()
            if item is None:
                return
            if item.outcome is None:
                if not item.future.cancelled():  # else its caller stopped waiting
                    self._reply([self._answer(item)])
                continue
            group = [item]
            while len(group) < GROUP_MOST:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None or following.outcome is None:
                    pending.append(following)
                    break
                group.append(following)
            self._reply(self._commit([work for work in group if not work.future.cancelled()]))

    def _reply(self, answers: list[_Answer]) -> None:
        """One wake-up of the loop for a whole group's answers."""
        if answers and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(_settle, answers)

    def _answer(self, item: _Work) -> _Answer:
        self._busy_since = time.monotonic()
        try:
            return (item.future, True, item.work(*item.args))
        except BaseException as exc:  # handed to the awaiting caller, whatever it is
            return (item.future, False, exc)
        finally:
            self._busy_since = None

    def _commit(self, group: list[_Work]) -> list[_Answer]:
        """Outcomes of several connections in one transaction; each alone, in its own,
        when the shared one fails (each caller then hears its own error)."""
        if len(group) <= 1:
            return [self._answer(item) for item in group]
        outcomes = [item.outcome for item in group if item.outcome is not None]
        self._busy_since = time.monotonic()
        try:
            self.ledger.record(outcomes, outcomes[-1].at or datetime.now(UTC))
        except BaseException:
            return [self._answer(item) for item in group]
        finally:
            self._busy_since = None
        return [(item.future, True, None) for item in group]


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
        probe: bool = False,
    ) -> T:
        return work(*args)

    async def record(self, outcome: Outcome) -> None:
        self.ledger.record([outcome], outcome.at or datetime.now(UTC))
