"""Deliveries and their claims: claimed before the SMTP transaction, settled after."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter

from ..core.mailing import DeliveryKey, MailKind
from ..core.plan import LedgerView
from .bulk_claims import claim_in_bulk
from .database import Database, Execute
from .schema import IS_CLAIMED
from .told import COUNT_TOLD
from .values import Claim, Outcome, stamp

# How long a claim protects a delivery in flight from another worker.
CLAIM_LEASE = timedelta(minutes=10)
# An advisory lock (PostgreSQL) under which one worker at a time adopts claims.
_WORKERS_LOCK = 7_432_002


class Deliveries:
    """The ledger's part that claims deliveries, records how they ended, and hands the
    claims of workers without a lease to the living."""

    db: Database
    worker: str

    def view(
        self,
        sessions: Iterable[str],
        kind: MailKind = MailKind.REMINDER,
        *,
        claims_only: bool = False,
    ) -> LedgerView:
        """What is recorded for these appointments, for the planner (or only open claims)."""
        settled: dict[tuple[str, str], frozenset[str]] = {}
        claims: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
        for session in set(sessions):
            # The few open claims through the status index; everyone else recorded for
            # the session is settled. A second reminder reads the first's million rows:
            # from the unique index alone, in its order, a lead at a time.
            for lead, recipient, retry_at in self.db.execute(
                "SELECT lead, recipient, next_attempt_at FROM deliveries "  # noqa: S608
                f"WHERE {IS_CLAIMED} AND session = ? AND kind = ?",
                (session, kind),
            ):
                claims[session, lead][recipient] = datetime.fromisoformat(retry_at)
            if claims_only:
                continue
            rows = self.db.execute(
                "SELECT lead, recipient FROM deliveries WHERE session = ? AND kind = ? "
                "ORDER BY lead",
                (session, kind),
            )
            for lead, found in groupby(rows, key=itemgetter(0)):
                recipients = frozenset(map(itemgetter(1), found))
                open_claims = claims.get((session, lead))
                if open_claims:
                    recipients -= open_claims.keys()
                if recipients:
                    settled[session, lead] = recipients
        return LedgerView(settled, dict(claims))

    def claim(self, claims: Sequence[Claim], now: datetime, *, ours: bool = False) -> list[Claim]:
        """Claim deliveries durably before sending; return those this worker won.

        A new delivery is won by inserting its row; an open claim whose back-off has
        passed is won by moving its next attempt past the lease, compare-and-set, so two
        workers on one ledger never both win a delivery. With `ours`, for a claim tried
        again after a failure whose commit may have gone through (its answer lost with
        the connection), an open claim of this worker's is won too, whatever its next
        attempt: else it would wait out the lease, unsent.
        """
        lease_end, at = stamp(now + CLAIM_LEASE), stamp(now)
        mine = self.worker if ours else None  # claimed_by = NULL is never true
        # One order for every worker: two batches that overlap take their rows' locks in
        # the same order, so PostgreSQL never has to break a deadlock between them.
        claims = sorted(claims, key=lambda c: c.key)
        if self.db.bulk:  # PostgreSQL: the chunk in one statement
            return claim_in_bulk(self.db, claims, self.worker, lease_end, at, mine)
        # A chunk's claims share a few instants and facts: each is written out once.
        stamps: dict[datetime, str] = {}
        facts: dict[tuple[str, int], tuple[object, ...]] = {}  # by the Told object itself
        for c in claims:
            if c.due_at not in stamps:
                stamps[c.due_at] = stamp(c.due_at)
            if c.not_after not in stamps:
                stamps[c.not_after] = stamp(c.not_after)
            if (c.session_id, id(c.told)) not in facts:
                facts[c.session_id, id(c.told)] = c.fact_values()
        statements = [
            (
                "INSERT INTO deliveries (session, kind, lead, recipient, status, message_id, "
                "due_at, not_after, claimed_by, next_attempt_at, updated_at, session_id, "
                "fact_start, fact_end, fact_join_url, fact_status, fact_topic, sequence) "
                "VALUES (?, ?, ?, ?, 'claimed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    *c.key.stored,
                    c.message_id,
                    stamps[c.due_at],
                    stamps[c.not_after],
                    self.worker,
                    lease_end,
                    at,
                    *facts[c.session_id, id(c.told)],
                ),
            )
            for c in claims
        ]
        won = self.db.transaction(lambda execute: self._insert(execute, statements, claims, facts))
        retries = [c for c, count in zip(claims, won, strict=True) if not count]
        taken = (
            self.db.write(
                [
                    (
                        # A retry is composed from today's files: it records today's facts.
                        "UPDATE deliveries SET claimed_by = ?, next_attempt_at = ?, "
                        "updated_at = ?, fault = NULL, session_id = ?, fact_start = ?, "
                        "fact_end = ?, fact_join_url = ?, fact_status = ?, fact_topic = ?, "
                        "sequence = ? WHERE session = ? AND kind = ? AND lead = ? "
                        "AND recipient = ? AND status = 'claimed' "
                        "AND (next_attempt_at <= ? OR claimed_by = ?)",
                        (self.worker, lease_end, at, *c.fact_values(), *c.key.stored, at, mine),
                    )
                    for c in retries
                ]
            )
            if retries
            else []
        )
        retried = {c.key for c, count in zip(retries, taken, strict=True) if count}
        return [
            c if count else self._as_first_claimed(c)
            for c, count in zip(claims, won, strict=True)
            if count or c.key in retried
        ]

    def _insert(
        self,
        execute: Execute,
        statements: list[tuple[str, tuple[object, ...]]],
        claims: list[Claim],
        facts: dict[tuple[str, int], tuple[object, ...]],
    ) -> list[int]:
        """Insert new claims; count those with facts in told_facts, in the same transaction."""
        won = [execute(sql, parameters).rowcount for sql, parameters in statements]
        added = Counter(
            (c.session_id, id(c.told))
            for c, count in zip(claims, won, strict=True)
            if count and c.told is not None
        )
        for told, count in added.items():
            execute(COUNT_TOLD, (*facts[told], count))
        return won

    def _as_first_claimed(self, claim: Claim) -> Claim:
        """A retry with the Message-ID recorded at its first claim (a resend carries it
        unchanged) and the tries recorded so far (its back-off grows with them)."""
        found = self.db.execute(
            "SELECT message_id, attempts FROM deliveries WHERE session = ? AND kind = ? "
            "AND lead = ? AND recipient = ?",
            claim.key.stored,
        ).fetchone()
        if not found:
            return claim
        return replace(claim, message_id=found[0] or claim.message_id, tries=found[1] or 0)

    def adopt_claims(self, now: datetime, *, only_expired: bool = False) -> int:
        """Every open claim of a worker without a live lease is due again, now.

        At start (under the state folder's lock, a single worker takes every other
        worker's claims) and, with `only_expired`, at every heartbeat of a shared ledger:
        a worker that died (kill -9, a machine lost) or froze past its lease leaves its
        claims to the living, who send them with the Message-ID recorded at the first
        claim. A dead worker's row goes.
        """
        at = stamp(now)
        live = " AND claimed_by NOT IN (SELECT id FROM workers WHERE lease_until > ?)"

        def adopt(execute: Execute) -> int:
            # Only the constant clause is formatted in; every value is a bound parameter.
            adopted = execute(
                "UPDATE deliveries SET next_attempt_at = ?, updated_at = ?, claimed_by = NULL "  # noqa: S608
                "WHERE status = 'claimed' AND claimed_by IS NOT NULL AND claimed_by != ?"
                + (live if only_expired else ""),
                (at, at, self.worker, at) if only_expired else (at, at, self.worker),
            ).rowcount
            execute("DELETE FROM workers WHERE lease_until <= ? AND id != ?", (at, self.worker))
            return adopted

        return self.db.transaction(adopt, lock=_WORKERS_LOCK)

    def release(self, keys: Iterable[DeliveryKey], now: datetime) -> None:
        """Claims this worker took and will not attempt: due again at once, for anyone."""
        at = stamp(now)
        self.db.write(
            (
                "UPDATE deliveries SET next_attempt_at = ?, updated_at = ?, claimed_by = NULL "
                "WHERE session = ? AND kind = ? AND lead = ? AND recipient = ? "
                "AND status = 'claimed' AND claimed_by = ?",
                (at, at, *key.stored, self.worker),
            )
            for key in keys
        )

    def supersede(
        self,
        items: Sequence[tuple[DeliveryKey, datetime]],
        now: datetime,
        not_after: datetime | None = None,
    ) -> None:
        """Record older reminders that a more recent one replaces."""
        at = stamp(now)
        statements: list[tuple[str, tuple[object, ...]]] = []
        for key, due_at in items:
            statements.append(
                (
                    "INSERT INTO deliveries (session, kind, lead, recipient, status, due_at, "
                    "not_after, updated_at) VALUES (?, ?, ?, ?, 'superseded', ?, ?, ?) "
                    "ON CONFLICT (session, kind, lead, recipient) DO UPDATE SET "
                    "status = 'superseded', updated_at = excluded.updated_at "
                    "WHERE deliveries.status = 'claimed'",
                    (*key.stored, stamp(due_at), stamp(not_after or due_at), at),
                )
            )
        self.db.write(statements)

    def record(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Settle (or reschedule) attempted deliveries, all in one transaction."""
        statements: list[tuple[str, tuple[object, ...]]] = []
        for outcome in outcomes:
            at = stamp(outcome.at or now)
            if outcome.retry_at is not None:
                statements.append(
                    (
                        "UPDATE deliveries SET attempts = attempts + ?, last_reply = ?, "
                        "next_attempt_at = ?, updated_at = ?, fault = NULL WHERE session = ? "
                        "AND kind = ? AND lead = ? AND recipient = ? AND status = 'claimed'",
                        (
                            outcome.attempts,
                            outcome.reply,
                            stamp(outcome.retry_at),
                            at,
                            *outcome.key.stored,
                        ),
                    )
                )
            else:
                statements.append(
                    (
                        "UPDATE deliveries SET status = ?, attempts = attempts + ?, "
                        "last_reply = ?, sent_at = CASE WHEN ? = 'sent' THEN ? END, "
                        "next_attempt_at = NULL, updated_at = ?, fault = NULL WHERE session = ? "
                        "AND kind = ? AND lead = ? AND recipient = ? AND status = 'claimed'",
                        (
                            outcome.state,
                            outcome.attempts,
                            outcome.reply,
                            outcome.state,
                            at,
                            at,
                            *outcome.key.stored,
                        ),
                    )
                )
        if statements:
            self.db.write(statements)

    def hold(self, keys: Sequence[DeliveryKey], fault: str, now: datetime) -> None:
        """Claims a configuration fault stopped: shown as waiting on it, and due again at
        once, so the reload that fixes the configuration sends them without waiting."""
        at = stamp(now)
        self.db.write(
            (
                "UPDATE deliveries SET fault = ?, last_reply = ?, next_attempt_at = ?, "
                "updated_at = ? WHERE session = ? AND kind = ? AND lead = ? AND recipient = ? "
                "AND status = 'claimed'",
                (fault, fault, at, at, *key.stored),
            )
            for key in keys
        )

    def expire(self, now: datetime) -> int:
        """Claims still open at their deadline can no longer be sent: record them failed."""
        statements: list[tuple[str, tuple[object, ...]]] = [
            (
                "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, "  # noqa: S608
                "updated_at = ?, last_reply = 'not confirmed before the session started' || "
                "CASE WHEN last_reply = '' THEN '' ELSE ': ' || last_reply END "
                f"WHERE {IS_CLAIMED} AND not_after <= ?",
                (stamp(now), stamp(now)),
            )
        ]
        return self.db.write(statements)[-1]
