"""Several workers on one ledger: who is alive (leases, heartbeats) and one shared budget."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .database import Execute
from .ledger import Ledger, stamp
from .thread import LedgerThread

# An advisory lock (PostgreSQL) under which one send at a time is taken from the budget.
_RATE_LOCK = 7_432_003


@dataclass(frozen=True)
class WorkerRow:
    """One worker as `reminder status` shows it."""

    id: str
    host: str
    pid: int
    since: datetime
    heartbeat_at: datetime
    lease_until: datetime
    in_flight: int


class Membership:
    """A worker's row in the workers table: joined at start, renewed, left at stop."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def join(self, host: str, pid: int, now: datetime, lease: timedelta) -> None:
        at = stamp(now)
        self.ledger.db.write(
            [
                (
                    "INSERT INTO workers (id, host, pid, since, heartbeat_at, lease_until) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "heartbeat_at = excluded.heartbeat_at, lease_until = excluded.lease_until",
                    (self.ledger.worker, host, pid, at, at, stamp(now + lease)),
                )
            ]
        )

    def renew(self, now: datetime, lease: timedelta, in_flight: int) -> bool:
        """Extend the lease; False if another worker found it expired (and took its claims)."""
        return bool(
            self.ledger.db.write(
                [
                    (
                        "UPDATE workers SET heartbeat_at = ?, lease_until = ?, in_flight = ? "
                        "WHERE id = ?",
                        (stamp(now), stamp(now + lease), in_flight, self.ledger.worker),
                    )
                ]
            )[0]
        )

    def leave(self, now: datetime) -> None:
        """A clean stop: the worker's open claims are due again at once, for the others."""
        at = stamp(now)
        self.ledger.db.write(
            [
                (
                    "UPDATE deliveries SET next_attempt_at = ?, updated_at = ?, claimed_by = NULL "
                    "WHERE status = 'claimed' AND claimed_by = ?",
                    (at, at, self.ledger.worker),
                ),
                ("DELETE FROM workers WHERE id = ?", (self.ledger.worker,)),
            ]
        )


def workers(ledger: Ledger) -> list[WorkerRow]:
    """The workers that announced themselves, oldest first, each with the claims the
    ledger holds for it now (not the count its last heartbeat wrote: a dead worker's
    stays until it is adopted, and a live one's changes between heartbeats)."""
    return [
        WorkerRow(
            str(id_),
            str(host),
            int(pid),
            datetime.fromisoformat(since),
            datetime.fromisoformat(beat),
            datetime.fromisoformat(until),
            int(flight),
        )
        for id_, host, pid, since, beat, until, flight in ledger.db.execute(
            "SELECT id, host, pid, since, heartbeat_at, lease_until, (SELECT count(*) FROM "
            "deliveries d WHERE d.status = 'claimed' AND d.claimed_by = workers.id) "
            "FROM workers ORDER BY since, id"
        )
    ]


def take_send(ledger: Ledger, limits: Sequence[tuple[int, float]], hold: float) -> int | float:
    """One send from the budget all workers share: its id, or the seconds to wait first.

    The rule of RateLimit, on the database's clock: the (i + count)-th send starts only
    `window` after the i-th one ended. A send never finished counts as finished `hold`
    seconds (one transaction's deadline) after it started, or when its worker's lease
    ran out if that came first: a worker killed or frozen mid-send holds the others back
    for at most its lease, not the whole deadline.
    """

    def take(execute: Execute) -> int | float:
        now = float(execute(f"SELECT {ledger.db.clock_sql}", ()).fetchone()[0])
        wait = 0.0
        for count, window in limits:
            found = execute(
                "SELECT r.started_at, r.finished_at, w.lease_until FROM rate_sends r "
                "LEFT JOIN workers w ON w.id = r.worker ORDER BY r.id DESC LIMIT 1 OFFSET ?",
                (count - 1,),
            ).fetchone()
            if found is None:
                continue
            started, finished = float(found[0]), found[1]
            # A worker without a row left (its lease ran out and its claims were adopted)
            # died at least a lease ago.
            lease_end = datetime.fromisoformat(found[2]).timestamp() if found[2] else now
            dead = lease_end <= now
            if finished is None and started + hold > now and not dead:
                wait = max(wait, 0.01)  # the server may not have counted it yet
                continue
            ended = (
                float(finished)
                if finished is not None
                else min(started + hold, max(started, lease_end))
            )
            wait = max(wait, ended + window - now)
        if wait > 0:
            return wait
        send = int(
            execute(
                "INSERT INTO rate_sends (worker, started_at) VALUES (?, ?) RETURNING id",
                (ledger.worker, now),
            ).fetchone()[0]
        )
        deepest = max(count for count, _ in limits)
        execute("DELETE FROM rate_sends WHERE id <= ?", (send - 2 * deepest - 16,))
        return send

    return ledger.db.transaction(take, lock=_RATE_LOCK)


def end_send(ledger: Ledger, send: int) -> None:
    ledger.db.write(
        [(f"UPDATE rate_sends SET finished_at = {ledger.db.clock_sql} WHERE id = ?", (send,))]  # noqa: S608
    )


class Presence:
    """This worker's lease: joined at start, renewed by its heartbeat, left at a clean stop.

    The lease is also checked locally, on the monotonic clock, before every message: a
    worker frozen (SIGSTOP, a suspended VM) or cut off from the database past the lease
    sends nothing more until a heartbeat has renewed it, since by then another worker
    may have adopted its claims. A renewal after such a lapse starts a new `term`: what
    was claimed under the old one is not sent, even though the lease is held again.
    """

    def __init__(
        self,
        ledger: Ledger,
        clock: Callable[[], datetime],
        lease: timedelta,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger, self.clock, self.lease = ledger, clock, lease
        self.membership = Membership(ledger)
        self.monotonic = monotonic
        # Trusted a little less long than others wait: clocks of two machines differ.
        self.trusted = lease.total_seconds() * 5 / 6
        self.valid_until = 0.0
        self.term = 0  # renewals after a lapse; claims of an earlier term may be adopted
        self.in_flight: Callable[[], int] = lambda: 0

    def held(self) -> bool:
        return self.monotonic() < self.valid_until

    def current_term(self) -> int | None:
        """The term of the lease while it is held; None once it has lapsed."""
        return self.term if self.held() else None

    def join(self) -> None:
        started = self.monotonic()
        self.membership.join(socket.gethostname(), os.getpid(), self.clock(), self.lease)
        self.valid_until = started + self.trusted

    def beat(self) -> tuple[bool, bool, int]:
        """Renew; return (was it still held, was the row still there, claims adopted)."""
        started, held = self.monotonic(), self.held()
        kept = self.membership.renew(self.clock(), self.lease, self.in_flight())
        if not kept:
            self.membership.join(socket.gethostname(), os.getpid(), self.clock(), self.lease)
        if not (held and kept):
            self.term += 1
        self.valid_until = started + self.trusted
        adopted = (
            self.ledger.adopt_claims(self.clock(), only_expired=True) if self.ledger.shared else 0
        )
        return held, kept, adopted

    def leave(self) -> None:
        self.valid_until = 0.0
        self.membership.leave(self.clock())


class SharedRateLimit:
    """smtp.max_per_minute / max_per_second for all the workers of a ledger together,
    taken in the ledger's thread."""

    def __init__(
        self, thread: LedgerThread[Ledger], limits: Sequence[tuple[int, float]], hold: float
    ) -> None:
        self.thread, self.limits, self.hold = thread, list(limits), hold

    async def acquire(self) -> int:
        while True:
            taken = await self.thread.call(take_send, self.thread.ledger, self.limits, self.hold)
            if isinstance(taken, int):
                return taken
            await asyncio.sleep(min(taken, 1.0))

    async def release(self, send: int) -> None:
        await self.thread.call(end_send, self.thread.ledger, send)
