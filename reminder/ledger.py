"""The delivery ledger: one row per delivery, claimed before the SMTP transaction, settled after."""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from .errors import LedgerError
from .notices import ALWAYS, NOTICE_KINDS, Facts, NoticeView, Told
from .plan import REMINDER, DeliveryKey, LedgerView

# How long a claim protects a delivery in flight from another worker.
CLAIM_LEASE = timedelta(minutes=10)

# Forward migrations, applied in order; the ledger's PRAGMA user_version counts them.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        session TEXT NOT NULL,          -- the session's start, local ISO: 2023-03-01T17:00+01:00
        kind TEXT NOT NULL,             -- reminder (later: update, cancellation)
        lead TEXT NOT NULL,             -- 7d, 1d, 1h...
        recipient TEXT NOT NULL,        -- canonical address
        status TEXT NOT NULL CHECK (status IN ('claimed', 'sent', 'failed', 'superseded')),
        message_id TEXT,
        due_at TEXT NOT NULL,           -- UTC instants, fixed width, so text order is time order
        not_after TEXT NOT NULL,        -- nothing is sent from this instant on
        attempts INTEGER NOT NULL DEFAULT 0,
        claimed_by TEXT,
        next_attempt_at TEXT,
        sent_at TEXT,
        last_reply TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL,
        UNIQUE (session, kind, lead, recipient)
    );
    CREATE INDEX deliveries_status ON deliveries (status, not_after);
    """,
    # A claim that a configuration fault (refused login, TLS, refused sender) stopped:
    # the fault as the server put it, until the fixed configuration takes the claim again.
    """
    ALTER TABLE deliveries ADD COLUMN fault TEXT;
    """,
    """
    CREATE TABLE suppressions (
        address TEXT PRIMARY KEY,       -- canonical (lower-cased) address
        reason TEXT NOT NULL,           -- free text shown to staff
        source TEXT NOT NULL,           -- 'staff' | 'bounce' | 'unsubscribe'
        reply TEXT NOT NULL DEFAULT '', -- the server's reply for a bounce
        created_at TEXT NOT NULL        -- UTC stamp, as in deliveries
    );
    """,
    # Bounce reports name our message by its Message-ID: find its delivery without a scan.
    "CREATE INDEX deliveries_message_id ON deliveries (message_id)",
    # What each delivery told its registrant, so change notices can be derived; and since
    # when each session's current version has stood, which no file can tell after a restart.
    """
    ALTER TABLE deliveries ADD COLUMN session_id TEXT;   -- the planned date: stable across moves
    ALTER TABLE deliveries ADD COLUMN fact_start TEXT;   -- local ISO instants, as told
    ALTER TABLE deliveries ADD COLUMN fact_end TEXT;
    ALTER TABLE deliveries ADD COLUMN fact_join_url TEXT;
    ALTER TABLE deliveries ADD COLUMN fact_status TEXT;  -- confirmed, cancelled
    ALTER TABLE deliveries ADD COLUMN fact_topic TEXT;
    ALTER TABLE deliveries ADD COLUMN sequence INTEGER;  -- the calendar SEQUENCE it carried
    CREATE INDEX deliveries_session_id ON deliveries (session_id, recipient);
    CREATE TABLE session_versions (
        session_id TEXT PRIMARY KEY,
        version TEXT NOT NULL,          -- a digest of what staff can change about the session
        since TEXT NOT NULL             -- UTC: when this version was first seen
    );
    """,
)


class Status(StrEnum):
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Claim:
    """A delivery about to be attempted: its Message-ID is fixed at the first claim."""

    key: DeliveryKey
    message_id: str
    due_at: datetime
    not_after: datetime
    session_id: str = ""
    told: Told | None = None  # the facts the mail carries (its `at` is unused here)

    def fact_values(self) -> tuple[object, ...]:
        if self.told is None:
            return (self.session_id or None, None, None, None, None, None, None)
        facts = self.told.facts
        return (
            self.session_id,
            facts.start.isoformat(),
            facts.end.isoformat(),
            facts.join_url,
            facts.status,
            facts.topic,
            self.told.sequence,
        )


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to. `retry_at` set means transient: the claim stays open."""

    key: DeliveryKey
    status: Status
    reply: str = ""
    at: datetime | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Row:
    session: str
    kind: str
    lead: str
    recipient: str
    status: str
    message_id: str
    due_at: datetime
    attempts: int
    sent_at: datetime | None
    updated_at: datetime
    last_reply: str
    fault: str = ""  # set while the claim waits on a configuration fault


@dataclass(frozen=True)
class Suppression:
    """An address nobody mails any more: who or what stopped it, when, and why."""

    address: str
    reason: str
    source: str  # staff, bounce or unsubscribe
    reply: str
    created_at: datetime


SUPPRESSION_SOURCES = ("staff", "bounce", "unsubscribe")


def canonical(address: str) -> str:
    """The form the ledger keys an address by, as Registrant.key does."""
    return address.strip().strip("<>").strip().casefold()


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unstamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class Ledger:
    """A SQLite file in WAL mode; the database itself enforces one row per delivery."""

    def __init__(self, path: Path, *, worker: str = "", readonly: bool = False) -> None:
        self.path = path
        self.worker = worker
        self.readonly = readonly
        if readonly and not path.exists():
            raise LedgerError(f"no ledger at {path} yet: `reminder run` creates it")
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
                # WAL survives a process crash at every commit; NORMAL skips the per-commit
                # fsync, so only a power cut could lose the last moments (and then a resend
                # carries the same Message-ID).
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self._migrate()
            self._check_version()
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger {path} cannot be opened: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self) -> None:
        if self._version() > len(MIGRATIONS):
            raise LedgerError(
                f"the ledger {self.path} was written by a newer release (schema "
                f"{self._version()}, this one knows {len(MIGRATIONS)}); upgrade reminder"
            )
        if self.readonly and 0 < self._version() < len(MIGRATIONS):
            # A reader cannot migrate: without this, every query names a missing column.
            # (Version 0 is a ledger the worker is creating at this moment.)
            raise LedgerError(
                f"the ledger {self.path} was written by an older release (schema "
                f"{self._version()}, this one knows {len(MIGRATIONS)}): restart the service "
                "(`reminder run` upgrades it), then try again"
            )

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for version in range(self._version(), len(MIGRATIONS)):
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version + 1}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _write(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> list[int]:
        """Run statements in one immediate transaction; return each one's row count."""
        counts: list[int] = []
        statements = list(statements)
        try:
            if len(statements) == 1:
                # One statement is its own transaction: the settle after each SMTP
                # transaction skips the BEGIN and COMMIT round trips.
                return [self.db.execute(*statements[0]).rowcount]
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, parameters in statements:
                    counts.append(self.db.execute(sql, parameters).rowcount)
                self.db.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk): a second
                # rollback would replace the real cause with "no transaction is active".
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"the ledger {self.path} cannot be written: {exc}") from None
        return counts

    def view(
        self, sessions: Iterable[str], kind: str = REMINDER, *, claims_only: bool = False
    ) -> LedgerView:
        """What is recorded for these session keys, for the planner (or only open claims)."""
        settled: dict[tuple[str, str], set[str]] = defaultdict(set)
        claims: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
        only = " AND status = 'claimed'" if claims_only else ""
        for session in set(sessions):
            rows = self.db.execute(
                "SELECT lead, recipient, status, next_attempt_at FROM deliveries "  # noqa: S608
                f"WHERE session = ? AND kind = ?{only}",
                (session, kind),
            )
            for lead, recipient, status, retry_at in rows:
                if status == Status.CLAIMED:
                    claims[session, lead][recipient] = datetime.fromisoformat(retry_at)
                else:
                    settled[session, lead].add(recipient)
        return LedgerView({k: frozenset(v) for k, v in settled.items()}, dict(claims))

    def notice_view(self, session_ids: Iterable[str], since: dict[str, datetime]) -> NoticeView:
        """What these sessions' registrants were last told, and their open or settled notices."""
        told: dict[str, dict[str, Told]] = defaultdict(dict)
        settled: set[DeliveryKey] = set()
        claims: dict[tuple[str, str], dict[DeliveryKey, datetime]] = defaultdict(dict)
        kinds = ", ".join(f"'{kind}'" for kind in NOTICE_KINDS)
        for session_id in set(session_ids):
            # SQLite takes the bare columns from the row that holds max(sent_at).
            for row in self.db.execute(
                "SELECT recipient, fact_start, fact_end, fact_join_url, fact_status, fact_topic, "
                "sequence, max(sent_at) FROM deliveries WHERE session_id = ? AND status = 'sent' "
                "AND fact_start IS NOT NULL GROUP BY recipient",
                (session_id,),
            ):
                who, start, end, link, status, topic, sequence, sent_at = row
                facts = Facts(
                    datetime.fromisoformat(start),
                    datetime.fromisoformat(end),
                    link or "",
                    status,
                    topic or "",
                )
                told[session_id][who] = Told(facts, int(sequence), datetime.fromisoformat(sent_at))
            for session, kind, lead, who, status, retry_at in self.db.execute(
                "SELECT session, kind, lead, recipient, status, next_attempt_at "  # noqa: S608
                f"FROM deliveries WHERE session_id = ? AND kind IN ({kinds})",
                (session_id,),
            ):
                key = DeliveryKey(session, kind, lead, who)
                if status == Status.CLAIMED:
                    claims[session_id, who][key] = datetime.fromisoformat(retry_at)
                else:
                    settled.add(key)
        return NoticeView(dict(told), frozenset(settled), dict(claims), since)

    def versions(self) -> dict[str, tuple[str, datetime]]:
        """Session id -> (version digest, since when it has stood)."""
        return {
            session_id: (version, datetime.fromisoformat(since))
            for session_id, version, since in self.db.execute(
                "SELECT session_id, version, since FROM session_versions"
            )
        }

    def observe(self, versions: dict[str, str], now: datetime) -> dict[str, datetime]:
        """Record each session's current version; return since when each has stood.

        A session seen for the first time has stood "always": only a change seen by a
        worker starts the settling delay, so a fresh ledger sends on time.
        """
        known = self.versions()
        at = stamp(now)
        fresh = [
            (
                "INSERT INTO session_versions (session_id, version, since) VALUES (?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET version = excluded.version, "
                "since = excluded.since WHERE version != excluded.version",
                (session_id, version, stamp(ALWAYS) if session_id not in known else at),
            )
            for session_id, version in versions.items()
            if known.get(session_id, ("",))[0] != version
        ]
        if fresh:
            self._write(fresh)
            known = self.versions()
        return {session_id: known[session_id][1] for session_id in versions if session_id in known}

    def adopt_claims(self, now: datetime) -> int:
        """At start, under the worker lock: every open claim of a dead worker is due again."""
        return self._write(
            [
                (
                    "UPDATE deliveries SET next_attempt_at = ?, updated_at = ? "
                    "WHERE status = 'claimed' AND claimed_by IS NOT ?",
                    (stamp(now), stamp(now), self.worker),
                )
            ]
        )[0]

    def claim(self, claims: Sequence[Claim], now: datetime) -> list[Claim]:
        """Claim deliveries durably before sending; return those this worker won.

        A new delivery is won by inserting its row; an open claim whose back-off has
        passed is won by moving its next attempt past the lease, compare-and-set, so two
        workers on one ledger never both win a delivery.
        """
        lease_end, at = stamp(now + CLAIM_LEASE), stamp(now)
        statements = [
            (
                "INSERT INTO deliveries (session, kind, lead, recipient, status, message_id, "
                "due_at, not_after, claimed_by, next_attempt_at, updated_at, session_id, "
                "fact_start, fact_end, fact_join_url, fact_status, fact_topic, sequence) "
                "VALUES (?, ?, ?, ?, 'claimed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (
                    *c.key,
                    c.message_id,
                    stamp(c.due_at),
                    stamp(c.not_after),
                    self.worker,
                    lease_end,
                    at,
                    *c.fact_values(),
                ),
            )
            for c in claims
        ]
        won = self._write(statements)
        retries = [c for c, count in zip(claims, won, strict=True) if not count]
        taken = (
            self._write(
                [
                    (
                        # A retry is composed from today's files: it records today's facts.
                        "UPDATE deliveries SET claimed_by = ?, next_attempt_at = ?, "
                        "updated_at = ?, fault = NULL, session_id = ?, fact_start = ?, "
                        "fact_end = ?, fact_join_url = ?, fact_status = ?, fact_topic = ?, "
                        "sequence = ? WHERE session = ? AND kind = ? AND lead = ? "
                        "AND recipient = ? AND status = 'claimed' AND next_attempt_at <= ?",
                        (self.worker, lease_end, at, *c.fact_values(), *c.key, at),
                    )
                    for c in retries
                ]
            )
            if retries
            else []
        )
        retried = {c.key for c, count in zip(retries, taken, strict=True) if count}
        return [
            c if count else replace(c, message_id=self._message_id(c.key) or c.message_id)
            for c, count in zip(claims, won, strict=True)
            if count or c.key in retried
        ]

    def _message_id(self, key: DeliveryKey) -> str | None:
        """The Message-ID recorded at the first claim: a resend must carry it unchanged."""
        found = self.db.execute(
            "SELECT message_id FROM deliveries WHERE session = ? AND kind = ? AND lead = ? "
            "AND recipient = ?",
            tuple(key),
        ).fetchone()
        return str(found[0]) if found and found[0] else None

    def supersede(
        self,
        items: Sequence[tuple[DeliveryKey, datetime]],
        now: datetime,
        not_after: datetime | None = None,
    ) -> None:
        """Record older reminders that a more recent one replaces."""
        at = stamp(now)
        self._write(
            (
                "INSERT INTO deliveries (session, kind, lead, recipient, status, due_at, "
                "not_after, updated_at) VALUES (?, ?, ?, ?, 'superseded', ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET status = 'superseded', updated_at = excluded.updated_at "
                "WHERE status = 'claimed'",
                (*key, stamp(due_at), stamp(not_after or due_at), at),
            )
            for key, due_at in items
        )

    def record(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Settle (or reschedule) attempted deliveries, all in one transaction."""
        statements: list[tuple[str, tuple[object, ...]]] = []
        for outcome in outcomes:
            at = stamp(outcome.at or now)
            if outcome.retry_at is not None:
                statements.append(
                    (
                        "UPDATE deliveries SET attempts = attempts + 1, last_reply = ?, "
                        "next_attempt_at = ?, updated_at = ?, fault = NULL WHERE session = ? "
                        "AND kind = ? AND lead = ? AND recipient = ? AND status = 'claimed'",
                        (outcome.reply, stamp(outcome.retry_at), at, *outcome.key),
                    )
                )
            else:
                statements.append(
                    (
                        "UPDATE deliveries SET status = ?, attempts = attempts + 1, "
                        "last_reply = ?, sent_at = CASE WHEN ? = 'sent' THEN ? END, "
                        "next_attempt_at = NULL, updated_at = ?, fault = NULL WHERE session = ? "
                        "AND kind = ? AND lead = ? AND recipient = ? AND status = 'claimed'",
                        (outcome.status, outcome.reply, outcome.status, at, at, *outcome.key),
                    )
                )
        if statements:
            self._write(statements)

    def hold(self, keys: Sequence[DeliveryKey], fault: str, now: datetime) -> None:
        """Claims a configuration fault stopped: shown as waiting on it, and due again at
        once, so the reload that fixes the configuration sends them without waiting."""
        at = stamp(now)
        self._write(
            (
                "UPDATE deliveries SET fault = ?, last_reply = ?, next_attempt_at = ?, "
                "updated_at = ? WHERE session = ? AND kind = ? AND lead = ? AND recipient = ? "
                "AND status = 'claimed'",
                (fault, fault, at, at, *key),
            )
            for key in keys
        )

    def expire(self, now: datetime) -> int:
        """Claims still open at their deadline can no longer be sent: record them failed."""
        return self._write(
            [
                (
                    "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, "
                    "updated_at = ?, last_reply = 'not confirmed before the session started' || "
                    "CASE WHEN last_reply = '' THEN '' ELSE ': ' || last_reply END "
                    "WHERE status = 'claimed' AND not_after <= ?",
                    (stamp(now), stamp(now)),
                )
            ]
        )[0]

    def rows(
        self, *, session_prefix: str = "", recipient: str = "", since: datetime | None = None
    ) -> list[Row]:
        """The history, oldest first, optionally for one session (by date) or one address,
        or only what changed since an instant."""
        # Only the constant column list is formatted in; every value is a bound parameter.
        query = f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE session LIKE ? "  # noqa: S608
        parameters: list[str] = [f"{session_prefix}%"]
        if recipient:
            query += "AND recipient = ? "
            parameters.append(recipient.strip().casefold())
        if since is not None:
            query += "AND updated_at >= ? "
            parameters.append(stamp(since))
        query += "ORDER BY due_at, session, lead, recipient"
        return [_row(values) for values in self.db.execute(query, parameters)]

    def counts(self) -> dict[tuple[str, str, str], dict[str, int]]:
        """(session, kind, lead) -> status -> number of deliveries; claims that wait on a
        configuration fault count as "waiting"."""
        found: dict[tuple[str, str, str], dict[str, int]] = defaultdict(dict)
        for session, kind, lead, status, number in self.db.execute(
            "SELECT session, kind, lead, CASE WHEN fault IS NOT NULL AND status = 'claimed' "
            "THEN 'waiting' ELSE status END AS shown, count(*) FROM deliveries "
            "GROUP BY session, kind, lead, shown"
        ):
            found[session, kind, lead][status] = number
        return dict(found)

    def open_claims(self, now: datetime) -> int:
        """Claims not settled that can still be sent."""
        return int(
            self.db.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'claimed' AND not_after > ?",
                (stamp(now),),
            ).fetchone()[0]
        )

    def faults(self) -> list[Row]:
        """Claims waiting on a configuration fault, most recent first."""
        return [
            _row(values)
            for values in self.db.execute(
                f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE status = 'claimed' "  # noqa: S608
                "AND fault IS NOT NULL ORDER BY updated_at DESC"
            )
        ]

    def last_error(self) -> Row | None:
        """The most recent delivery that did not go through, with the server's reply."""
        values = self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE last_reply != '' "  # noqa: S608
            "AND status != 'sent' ORDER BY updated_at DESC LIMIT 1"
        ).fetchone()
        return _row(values) if values else None

    def suppress(
        self, address: str, *, reason: str, source: str, at: datetime, reply: str = ""
    ) -> bool:
        """Stop mailing `address`; True if newly suppressed (a first reason is kept)."""
        if source not in SUPPRESSION_SOURCES:
            raise ValueError(f"suppression source {source!r} is not one of {SUPPRESSION_SOURCES}")
        return bool(
            self._write(
                [
                    (
                        "INSERT INTO suppressions (address, reason, source, reply, created_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (canonical(address), reason, source, reply, stamp(at)),
                    )
                ]
            )[0]
        )

    def unsuppress(self, address: str) -> bool:
        """Mail `address` again; True if it was suppressed in the ledger."""
        return bool(
            self._write([("DELETE FROM suppressions WHERE address = ?", (canonical(address),))])[0]
        )

    def suppressions(self) -> list[Suppression]:
        """Every suppression in the ledger, newest first."""
        return [
            Suppression(str(a), str(r), str(s), str(p), datetime.fromisoformat(str(c)))
            for a, r, s, p, c in self.db.execute(
                "SELECT address, reason, source, reply, created_at FROM suppressions "
                "ORDER BY created_at DESC, address"
            )
        ]

    def recipient_of(self, message_id: str) -> str | None:
        """The address a message of ours went to, by its Message-ID (as a bounce quotes it)."""
        found = self.db.execute(
            "SELECT recipient FROM deliveries WHERE message_id = ? LIMIT 1", (message_id.strip(),)
        ).fetchone()
        return str(found[0]) if found else None

    def suppressed_addresses(self) -> frozenset[str]:
        return frozenset(a for (a,) in self.db.execute("SELECT address FROM suppressions"))

    def recipients(self) -> frozenset[str]:
        """Everyone the cycle ever mailed: their unsubscribe links must keep working after
        they leave the export."""
        return frozenset(a for (a,) in self.db.execute("SELECT DISTINCT recipient FROM deliveries"))

    def write_problem(self) -> str | None:
        """Why a write could not start now (for readiness), or None when it could.

        Waits 0.2 s at most for another process's lock, not the 30 s a delivery waits.
        """
        try:
            self.db.execute("PRAGMA busy_timeout = 200")
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ROLLBACK")
            finally:
                self.db.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as exc:
            return str(exc)
        return None

    def late_counts(self, tolerance: timedelta) -> dict[tuple[str, str, str], int]:
        """(session, kind, lead) -> deliveries sent more than `tolerance` after their instant."""
        return {
            (session, kind, lead): number
            for session, kind, lead, number in self.db.execute(
                "SELECT session, kind, lead, count(*) FROM deliveries WHERE status = 'sent' "
                "AND (julianday(sent_at) - julianday(due_at)) * 86400 > ? "
                "GROUP BY session, kind, lead",
                (tolerance.total_seconds(),),
            )
        }

    def errors(self, limit: int = 10) -> list[Row]:
        """The most recent deliveries that did not go through, newest first."""
        return [
            _row(values)
            for values in self.db.execute(
                f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE last_reply != '' "  # noqa: S608
                "AND status != 'sent' ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            )
        ]


_ROW_COLUMNS = (
    "session, kind, lead, recipient, status, message_id, due_at, attempts, "
    "sent_at, updated_at, last_reply, fault"
)


def _row(values: tuple[object, ...]) -> Row:
    session, kind, lead, recipient, status, mid, due, attempts, sent, updated, reply, fault = values
    return Row(
        str(session),
        str(kind),
        str(lead),
        str(recipient),
        str(status),
        str(mid or ""),
        datetime.fromisoformat(str(due)),
        int(str(attempts)),
        unstamp(str(sent) if sent else None),
        datetime.fromisoformat(str(updated)),
        str(reply),
        str(fault or ""),
    )
