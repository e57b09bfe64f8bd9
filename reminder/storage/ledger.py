"""The delivery ledger: one row per delivery, claimed before the SMTP transaction, settled after."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

from ..core.errors import LedgerError
from ..core.model import NOTICE_KINDS, REMINDER, DeliveryKey
from ..core.notices import ALWAYS, Facts, NoticeView, Told, ToldGroup
from ..core.plan import LedgerView
from .database import (
    Database,
    Execute,
    PostgresDatabase,
    SqliteDatabase,
    SqliteOnly,
    is_postgres,
)

# How long a claim protects a delivery in flight from another worker.
CLAIM_LEASE = timedelta(minutes=10)
# An advisory lock (PostgreSQL) under which one worker at a time adopts claims.
_WORKERS_LOCK = 7_432_002

# Forward migrations, applied in order; SQLite's PRAGMA user_version or PostgreSQL's
# reminder_schema table counts them. Written once for both: `INTEGER PRIMARY KEY` becomes
# an identity column on PostgreSQL, instants are fixed-width UTC text on both.
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
    # Several workers on one PostgreSQL ledger: each holds a lease renewed by its
    # heartbeat, and one sending budget is shared through rate_sends.
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,            -- host:pid:start, as claimed_by names it
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        since TEXT NOT NULL,            -- UTC instants, like the deliveries'
        heartbeat_at TEXT NOT NULL,
        lease_until TEXT NOT NULL,      -- its claims are adopted by others from then on
        in_flight INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX deliveries_claimed_by ON deliveries (claimed_by) WHERE status = 'claimed';
    CREATE TABLE rate_sends (
        id INTEGER PRIMARY KEY,
        worker TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,   -- the database's clock, seconds
        finished_at DOUBLE PRECISION
    );
    """,
    # The status index without the sent rows, which no query looks for through it: a
    # result's commit then only takes its entry out (at 1,000,000 sent rows, 40 us a
    # result became 32). A query uses it only when its WHERE holds the index's own
    # term, `status != 'sent'` (SQLite's rule for partial indexes): _NOT_SENT, _CLAIMED.
    """
    DROP INDEX deliveries_status;
    CREATE INDEX deliveries_unsent ON deliveries (status, not_after) WHERE status != 'sent';
    """,
    # Bounce reports are matched by the day, kind and lead a Message-ID names, through
    # the unique index (Ledger.recipient_of): an index on the IDs themselves took each
    # batch's claims all through it.
    "DROP INDEX deliveries_message_id",
    # What each session's registrants were told, as a few counts by facts: the notice
    # plan reads these, and the rows of the few registrants whose facts may differ,
    # instead of every told row (two million at 1,000,000 registrants and two leads).
    # A row counts while it is claimed with facts, and once sent until a later mail to
    # the same registrant at a higher SEQUENCE is sent (a change of facts raises it):
    # whatever they were last told is always counted; an older row may be too, which
    # only makes the plan read more rows. A claim adds its rows, one that ends unsent
    # takes its row out (Ledger.claim, record, supersede, expire); the triggers follow
    # sends at a higher SEQUENCE and claims taken again, and do nothing when a reminder
    # that carries SEQUENCE 0 is sent, which is almost every send. SQLite only:
    # PostgreSQL's workers would all update one counter row at once, and its notice plan
    # reads every told row.
    SqliteOnly(
        """
    CREATE TABLE told_facts (
        session_id TEXT NOT NULL,
        fact_start TEXT NOT NULL,
        fact_end TEXT NOT NULL,
        fact_join_url TEXT NOT NULL,
        fact_status TEXT NOT NULL,
        fact_topic TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        rows INTEGER NOT NULL,
        PRIMARY KEY (session_id, fact_start, fact_end, fact_join_url, fact_status,
                     fact_topic, sequence)
    );
    INSERT INTO told_facts
    SELECT session_id, fact_start, fact_end, coalesce(fact_join_url, ''), fact_status,
           coalesce(fact_topic, ''), sequence, count(*)
    FROM deliveries d WHERE fact_start IS NOT NULL AND (status = 'claimed'
        OR status = 'sent' AND sequence = (
            SELECT max(sequence) FROM deliveries l WHERE l.session_id = d.session_id
            AND l.recipient = d.recipient AND l.status = 'sent'
            AND l.fact_start IS NOT NULL))
    GROUP BY 1, 2, 3, 4, 5, 6, 7;
    -- Sent at a higher SEQUENCE, and the latest of the recipient's mails (by sent_at, as
    -- the plan reads them): their rows at their former highest no longer count. Any
    -- other send changes nothing: a late one stays counted with the rest, which only
    -- makes the plan read that session's rows.
    CREATE TRIGGER told_sent AFTER UPDATE OF status ON deliveries
    WHEN OLD.status = 'claimed' AND NEW.status = 'sent' AND NEW.fact_start IS NOT NULL
    AND NEW.sequence > 0 AND NOT EXISTS (
        SELECT 1 FROM deliveries l WHERE l.session_id = NEW.session_id
        AND l.recipient = NEW.recipient AND l.status = 'sent' AND l.id != NEW.id
        AND l.fact_start IS NOT NULL
        AND (l.sent_at > NEW.sent_at OR l.sent_at = NEW.sent_at AND l.id > NEW.id))
    BEGIN
        UPDATE told_facts SET rows = rows - (
            SELECT count(*) FROM deliveries l WHERE l.session_id = NEW.session_id
            AND l.recipient = NEW.recipient AND l.status = 'sent' AND l.id != NEW.id
            AND l.fact_start = told_facts.fact_start AND l.fact_end = told_facts.fact_end
            AND coalesce(l.fact_join_url, '') = told_facts.fact_join_url
            AND l.fact_status = told_facts.fact_status
            AND coalesce(l.fact_topic, '') = told_facts.fact_topic
            AND l.sequence = told_facts.sequence)
        WHERE session_id = NEW.session_id AND sequence < NEW.sequence AND sequence = (
            SELECT max(sequence) FROM deliveries l WHERE l.session_id = NEW.session_id
            AND l.recipient = NEW.recipient AND l.status = 'sent' AND l.id != NEW.id
            AND l.fact_start IS NOT NULL);
    END;
    -- A claim taken again records today's facts: it counts under them instead.
    CREATE TRIGGER told_retold AFTER UPDATE OF fact_start, fact_end, fact_join_url,
        fact_status, fact_topic, sequence ON deliveries
    WHEN OLD.status = 'claimed' AND NEW.status = 'claimed'
    BEGIN
        UPDATE told_facts SET rows = rows - 1
        WHERE (session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic,
               sequence) = (OLD.session_id, OLD.fact_start, OLD.fact_end,
                            coalesce(OLD.fact_join_url, ''), OLD.fact_status,
                            coalesce(OLD.fact_topic, ''), OLD.sequence);
        INSERT INTO told_facts SELECT NEW.session_id, NEW.fact_start, NEW.fact_end,
            coalesce(NEW.fact_join_url, ''), NEW.fact_status, coalesce(NEW.fact_topic, ''),
            NEW.sequence, 1 WHERE NEW.fact_start IS NOT NULL
        ON CONFLICT (session_id, fact_start, fact_end, fact_join_url, fact_status,
                     fact_topic, sequence)
        DO UPDATE SET rows = rows + 1;
    END;
    """
    ),
)


_COUNT_TOLD = (
    "INSERT INTO told_facts (session_id, fact_start, fact_end, fact_join_url, fact_status, "
    "fact_topic, sequence, rows) VALUES (?, ?, ?, coalesce(?, ''), ?, coalesce(?, ''), ?, ?) "
    "ON CONFLICT (session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic, "
    "sequence) DO UPDATE SET rows = rows + excluded.rows"
)


# Taken before a claim ends unsent, in the same transaction: its row no longer counts.
_UNCOUNT_TOLD = (
    "UPDATE told_facts SET rows = rows - 1 WHERE (session_id, fact_start, fact_end, "
    "fact_join_url, fact_status, fact_topic, sequence) = (SELECT session_id, fact_start, "
    "fact_end, coalesce(fact_join_url, ''), fact_status, coalesce(fact_topic, ''), sequence "
    "FROM deliveries WHERE session = ? AND kind = ? AND lead = ? AND recipient = ? "
    "AND status = 'claimed' AND fact_start IS NOT NULL)"
)


# Registrants whose rows one query reads, by their keys.
_LOOKUPS = 500
_TOLD_COLUMNS = (
    "recipient, session, kind, lead, status, next_attempt_at, fact_start, fact_end, "
    "fact_join_url, fact_status, fact_topic, sequence, sent_at, id"
)


def _facts(known: dict[tuple[str, str, str, str, str], Facts], said: Sequence[Any]) -> Facts:
    """Facts as stored, one value for each distinct set (a million rows tell a few)."""
    start, end, link, status, topic = said
    key = (start, end, link or "", status, topic or "")
    facts = known.get(key)
    if facts is None:
        facts = known[key] = Facts(
            datetime.fromisoformat(start), datetime.fromisoformat(end), key[2], status, key[4]
        )
    return facts


def _file_notice(
    claims: dict[tuple[str, str], dict[DeliveryKey, datetime]],
    settled: set[DeliveryKey],
    session_id: str,
    key: DeliveryKey,
    status: str,
    retry_at: str,
) -> None:
    """A notice's row: an open claim and when it may be tried again, or settled."""
    if status == Status.CLAIMED:
        claims[session_id, key.recipient][key] = datetime.fromisoformat(retry_at)
    else:
        settled.add(key)


def _told_group(row: Sequence[Any]) -> tuple[str, str, str, str, str, int]:
    """The told_facts key of a row read with _TOLD_COLUMNS."""
    start, end, link, status, topic, sequence = row[6:12]
    return (start, end, link or "", status, topic or "", int(sequence))


class Status(StrEnum):
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED = "failed"
    SUPERSEDED = "superseded"


# How a claim ends unsent: its row no longer counts in told_facts.
_UNSENT = (Status.FAILED, Status.SUPERSEDED)


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
    """UTC, to the microsecond, always the same width: text order is time order."""
    # isoformat is several times faster than strftime, and this runs twice a delivery.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:26] + "Z"


def unstamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class Ledger:
    """The ledger's one SQL implementation, over SQLite (a file) or PostgreSQL (a URL).

    The database itself enforces one row per delivery, so several workers sharing a
    PostgreSQL ledger never both win one.
    """

    def __init__(
        self,
        target: Path | str,
        *,
        worker: str = "",
        readonly: bool = False,
        password: str | None = None,
        patience: float = 30.0,
        migrate: bool = True,
    ) -> None:
        self.worker = worker
        self.readonly = readonly
        self.db: Database = (
            PostgresDatabase(str(target), password=password, patience=patience)
            if is_postgres(target)
            else SqliteDatabase(Path(target), readonly=readonly)
        )
        self.path = self.db.where
        try:
            if migrate and not readonly:
                self._check_version()
                self.db.migrate(MIGRATIONS)
            self._check_version()
        except BaseException:
            self.db.close()
            raise

    @property
    def shared(self) -> bool:
        """Several workers may share this ledger (PostgreSQL)."""
        return self.db.shared

    def outside_writes(self) -> int | None:
        """A number that changes whenever another process commits to this ledger (a
        command, another worker); None when that cannot be told (PostgreSQL)."""
        return self.db.outside_writes()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def version(self) -> int:
        return self.db.version()

    def _check_version(self) -> None:
        if self.version() > len(MIGRATIONS):
            raise LedgerError(
                f"the ledger {self.path} was written by a newer release (schema "
                f"{self.version()}, this one knows {len(MIGRATIONS)}); upgrade reminder"
            )
        if self.readonly and 0 < self.version() < len(MIGRATIONS):
            # A reader cannot migrate: without this, every query names a missing column.
            # (Version 0 is a ledger the worker is creating at this moment.)
            raise LedgerError(
                f"the ledger {self.path} was written by an older release (schema "
                f"{self.version()}, this one knows {len(MIGRATIONS)}): restart the service "
                "(`reminder run` upgrades it), then try again"
            )

    def _write(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> list[int]:
        """Run statements in one transaction; return each one's row count."""
        return self.db.write(statements)

    def view(
        self, sessions: Iterable[str], kind: str = REMINDER, *, claims_only: bool = False
    ) -> LedgerView:
        """What is recorded for these session keys, for the planner (or only open claims)."""
        settled: dict[tuple[str, str], frozenset[str]] = {}
        claims: dict[tuple[str, str], dict[str, datetime]] = defaultdict(dict)
        for session in set(sessions):
            # The few open claims through the status index; everyone else recorded for
            # the session is settled. A second reminder reads the first's million rows:
            # from the unique index alone, in its order, a lead at a time.
            for lead, recipient, retry_at in self.db.execute(
                "SELECT lead, recipient, next_attempt_at FROM deliveries "  # noqa: S608
                f"WHERE {_CLAIMED} AND session = ? AND kind = ?",
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
        self._write(
            (
                "UPDATE deliveries SET next_attempt_at = ?, updated_at = ?, claimed_by = NULL "
                "WHERE session = ? AND kind = ? AND lead = ? AND recipient = ? "
                "AND status = 'claimed' AND claimed_by = ?",
                (at, at, *key, self.worker),
            )
            for key in keys
        )

    def notice_view(
        self,
        session_ids: Iterable[str],
        since: dict[str, datetime],
        listed: Mapping[str, Collection[str]] | None = None,
    ) -> NoticeView:
        """What these sessions' registrants were last told, and their open or settled notices.

        With `listed` (session id -> registrant keys), on a ledger that keeps told_facts,
        only those registrants' rows are read, and those of anyone with an open notice
        claim; `rest` says, from the counts, what everybody else was told.
        """
        if listed is None or not self.db.told_summary:
            return self._full_notice_view(session_ids, since)
        # The counts and the rows read beside them must agree: one state of the ledger,
        # even while a worker sends.
        with self.db.reading():
            return self._counted_notice_view(session_ids, since, listed)

    def _counted_notice_view(
        self,
        session_ids: Iterable[str],
        since: dict[str, datetime],
        listed: Mapping[str, Collection[str]],
    ) -> NoticeView:
        told: dict[str, dict[str, Told]] = defaultdict(dict)
        settled: set[DeliveryKey] = set()
        claims: dict[tuple[str, str], dict[DeliveryKey, datetime]] = defaultdict(dict)
        rest: dict[str, tuple[ToldGroup, ...]] = {}
        kinds = ", ".join(f"'{kind}'" for kind in NOTICE_KINDS)
        known: dict[tuple[str, str, str, str, str], Facts] = {}
        for session_id in set(session_ids):
            who = set(listed.get(session_id, ()))
            who.update(
                recipient
                for (recipient,) in self.db.execute(
                    f"SELECT recipient FROM deliveries WHERE {_CLAIMED} "  # noqa: S608
                    f"AND session_id = ? AND kind IN ({kinds})",
                    (session_id,),
                )
            )
            counted: Counter[tuple[str, str, str, str, str, int]] = Counter()
            ordered = sorted(who)
            for first in range(0, len(ordered), _LOOKUPS):
                chunk = ordered[first : first + _LOOKUPS]
                rows = self.db.execute(
                    f"SELECT {_TOLD_COLUMNS} FROM deliveries WHERE session_id = ? "  # noqa: S608
                    f"AND recipient IN ({', '.join('?' * len(chunk))})",
                    (session_id, *chunk),
                ).fetchall()
                rows.sort(key=itemgetter(0))
                for recipient, mine in groupby(rows, key=itemgetter(0)):
                    mine_rows = list(mine)
                    self._read_told(session_id, recipient, mine_rows, known, told, counted)
                    for _, session, kind, lead, status, retry_at, *_ in mine_rows:
                        if kind in NOTICE_KINDS:
                            key = DeliveryKey(session, kind, lead, recipient)
                            _file_notice(claims, settled, session_id, key, status, retry_at)
            rest[session_id] = self._rest(session_id, counted, known)
        return NoticeView(dict(told), frozenset(settled), dict(claims), since, rest)

    def recipients_told(self, session_id: str, groups: Iterable[ToldGroup]) -> set[str]:
        """Who has a counted row in these groups (claimed or sent with their facts)."""
        found: set[str] = set()
        for group in groups:
            facts = group.facts
            found.update(
                recipient
                for (recipient,) in self.db.execute(
                    "SELECT DISTINCT recipient FROM deliveries WHERE session_id = ? "
                    "AND status IN ('sent', 'claimed') AND fact_start = ? AND fact_end = ? "
                    "AND coalesce(fact_join_url, '') = ? AND fact_status = ? "
                    "AND coalesce(fact_topic, '') = ? AND sequence = ?",
                    (
                        session_id,
                        facts.start.isoformat(),
                        facts.end.isoformat(),
                        facts.join_url,
                        facts.status,
                        facts.topic,
                        group.sequence,
                    ),
                )
            )
        return found

    def _read_told(
        self,
        session_id: str,
        recipient: str,
        rows: list[tuple[Any, ...]],
        known: dict[tuple[str, str, str, str, str], Facts],
        told: dict[str, dict[str, Told]],
        counted: Counter[tuple[str, str, str, str, str, int]],
    ) -> None:
        """One registrant's rows for a session: what they were last told, and which rows
        told_facts counts (claimed with facts; sent at their highest SEQUENCE)."""
        sent = [r for r in rows if r[4] == Status.SENT and r[6] is not None]
        if sent:
            last = max(sent, key=itemgetter(12, 13))
            told[session_id][recipient] = Told(
                _facts(known, last[6:11]), int(last[11]), datetime.fromisoformat(last[12])
            )
            level = max(r[11] for r in sent)
            counted.update(_told_group(r) for r in sent if r[11] == level)
        counted.update(_told_group(r) for r in rows if r[4] == Status.CLAIMED and r[6] is not None)

    def _rest(
        self,
        session_id: str,
        counted: Counter[tuple[str, str, str, str, str, int]],
        known: dict[tuple[str, str, str, str, str], Facts],
    ) -> tuple[ToldGroup, ...]:
        """told_facts' counts for a session less the rows already read one by one."""
        groups = []
        for *said, sequence, rows in self.db.execute(
            "SELECT fact_start, fact_end, fact_join_url, fact_status, fact_topic, sequence, "
            "rows FROM told_facts WHERE session_id = ? AND rows != 0",
            (session_id,),
        ):
            key = (*said, int(sequence))
            left = int(rows) - counted.pop(key, 0)
            if left:
                groups.append(ToldGroup(_facts(known, said), int(sequence), left))
        # Rows read that the counts do not hold: they cannot settle anything.
        groups.extend(
            ToldGroup(_facts(known, key[:5]), key[5], -count) for key, count in counted.items()
        )
        return tuple(groups)

    def _full_notice_view(
        self, session_ids: Iterable[str], since: dict[str, datetime]
    ) -> NoticeView:
        """Every told row of these sessions: what each registrant was told last."""
        told: dict[str, dict[str, Told]] = defaultdict(dict)
        settled: set[DeliveryKey] = set()
        claims: dict[tuple[str, str], dict[DeliveryKey, datetime]] = defaultdict(dict)
        kinds = ", ".join(f"'{kind}'" for kind in NOTICE_KINDS)
        # A million registrants were told a handful of distinct facts: one value each.
        known: dict[tuple[str, str, str, str, str], Facts] = {}
        for session_id in set(session_ids):
            # Oldest first, so each registrant keeps the facts of the last mail sent
            # (one SQL for both databases: no bare columns beside an aggregate).
            for row in self.db.execute(
                "SELECT recipient, fact_start, fact_end, fact_join_url, fact_status, fact_topic, "
                "sequence, sent_at FROM deliveries WHERE session_id = ? AND status = 'sent' "
                "AND fact_start IS NOT NULL ORDER BY sent_at, id",
                (session_id,),
            ):
                who, sequence, sent_at = row[0], row[6], row[7]
                facts = _facts(known, row[1:6])
                told[session_id][who] = Told(facts, int(sequence), datetime.fromisoformat(sent_at))
            for session, kind, lead, who, status, retry_at in self.db.execute(
                "SELECT session, kind, lead, recipient, status, next_attempt_at "  # noqa: S608
                f"FROM deliveries WHERE session_id = ? AND kind IN ({kinds})",
                (session_id,),
            ):
                _file_notice(
                    claims,
                    settled,
                    session_id,
                    DeliveryKey(session, kind, lead, who),
                    status,
                    retry_at,
                )
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
                "since = excluded.since WHERE session_versions.version != excluded.version",
                (session_id, version, stamp(ALWAYS) if session_id not in known else at),
            )
            for session_id, version in versions.items()
            if known.get(session_id, ("",))[0] != version
        ]
        if fresh:
            self._write(fresh)
            known = self.versions()
        return {session_id: known[session_id][1] for session_id in versions if session_id in known}

    def claim(self, claims: Sequence[Claim], now: datetime) -> list[Claim]:
        """Claim deliveries durably before sending; return those this worker won.

        A new delivery is won by inserting its row; an open claim whose back-off has
        passed is won by moving its next attempt past the lease, compare-and-set, so two
        workers on one ledger never both win a delivery.
        """
        lease_end, at = stamp(now + CLAIM_LEASE), stamp(now)
        # One order for every worker: two batches that overlap take their rows' locks in
        # the same order, so PostgreSQL never has to break a deadlock between them.
        claims = sorted(claims, key=lambda c: c.key)
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
                    *c.key,
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
        won = (
            self.db.transaction(lambda execute: self._insert(execute, statements, claims, facts))
            if self.db.told_summary
            else self._write(statements)  # PostgreSQL: one round trip for the chunk
        )
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
            execute(_COUNT_TOLD, (*facts[told], count))
        return won

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
        statements: list[tuple[str, tuple[object, ...]]] = []
        for key, due_at in items:
            if self.db.told_summary:
                statements.append((_UNCOUNT_TOLD, tuple(key)))
            statements.append(
                (
                    "INSERT INTO deliveries (session, kind, lead, recipient, status, due_at, "
                    "not_after, updated_at) VALUES (?, ?, ?, ?, 'superseded', ?, ?, ?) "
                    "ON CONFLICT (session, kind, lead, recipient) DO UPDATE SET "
                    "status = 'superseded', updated_at = excluded.updated_at "
                    "WHERE deliveries.status = 'claimed'",
                    (*key, stamp(due_at), stamp(not_after or due_at), at),
                )
            )
        self._write(statements)

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
                if outcome.status in _UNSENT and self.db.told_summary:
                    statements.append((_UNCOUNT_TOLD, tuple(outcome.key)))
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
        statements: list[tuple[str, tuple[object, ...]]] = [
            (
                "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, "  # noqa: S608
                "updated_at = ?, last_reply = 'not confirmed before the session started' || "
                "CASE WHEN last_reply = '' THEN '' ELSE ': ' || last_reply END "
                f"WHERE {_CLAIMED} AND not_after <= ?",
                (stamp(now), stamp(now)),
            )
        ]
        if self.db.told_summary:
            # The expiring claims with facts no longer count: their groups, taken out.
            statements.insert(
                0,
                (
                    "INSERT INTO told_facts (session_id, fact_start, fact_end, fact_join_url, "  # noqa: S608
                    "fact_status, fact_topic, sequence, rows) SELECT session_id, fact_start, "
                    "fact_end, coalesce(fact_join_url, ''), fact_status, coalesce(fact_topic, ''), "
                    f"sequence, -count(*) FROM deliveries WHERE {_CLAIMED} AND not_after <= ? "
                    "AND fact_start IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7 "
                    "ON CONFLICT (session_id, fact_start, fact_end, fact_join_url, fact_status, "
                    "fact_topic, sequence) DO UPDATE SET rows = rows + excluded.rows",
                    (stamp(now),),
                ),
            )
        return self._write(statements)[-1]

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
        # Without reading the millions of sent rows: the totals from the unique index
        # alone, the few deliveries not sent through the status index, and the sent the
        # difference. (An index on the status as well would count faster, but every
        # result of a batch would then move an entry in it: half as much again per commit.)
        # One statement, so one snapshot: workers claim while the status page counts.
        rows = self.db.execute(
            "SELECT session, kind, lead, '', 0, count(*) FROM deliveries "  # noqa: S608
            "GROUP BY session, kind, lead UNION ALL "
            "SELECT session, kind, lead, status, CASE WHEN fault IS NULL THEN 0 ELSE 1 END, "
            f"count(*) FROM deliveries WHERE {_NOT_SENT} "
            "GROUP BY session, kind, lead, status, CASE WHEN fault IS NULL THEN 0 ELSE 1 END"
        ).fetchall()
        for session, kind, lead, status, _, number in rows:
            if not status:
                found[session, kind, lead][Status.SENT] = number
        for session, kind, lead, status, waiting, number in rows:
            if status:
                counted = found[session, kind, lead]
                counted[Status.SENT] -= number
                if waiting and status == Status.CLAIMED:
                    status = "waiting"
                counted[status] = counted.get(status, 0) + number
        for counted in found.values():
            if not counted[Status.SENT]:
                del counted[Status.SENT]
        return {key: dict(sorted(counted.items())) for key, counted in sorted(found.items())}

    def open_claims(self, now: datetime) -> int:
        """Claims not settled that can still be sent."""
        return int(
            self.db.execute(
                f"SELECT count(*) FROM deliveries WHERE {_CLAIMED} AND not_after > ?",  # noqa: S608
                (stamp(now),),
            ).fetchone()[0]
        )

    def faults(self) -> list[Row]:
        """Claims waiting on a configuration fault, most recent first."""
        return [
            _row(values)
            for values in self.db.execute(
                f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {_CLAIMED} "  # noqa: S608
                "AND fault IS NOT NULL ORDER BY updated_at DESC"
            )
        ]

    def last_error(self) -> Row | None:
        """The most recent delivery that did not go through, with the server's reply."""
        values = self.db.execute(
            f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {_NOT_SENT} "  # noqa: S608
            "AND last_reply != '' ORDER BY updated_at DESC LIMIT 1"
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

    def recipient_of(self, message_id: str, named: str = "") -> str | None:
        """The address a message of ours went to, by its Message-ID as a bounce report
        quotes it, and `named`, the address the report names, if any.

        Message-IDs are not indexed: each is a digest of its delivery, so a batch's IDs
        would land all through such an index, and claiming at a million rows cost three
        times as much. Ours name the session's day, the kind and the lead: the sessions
        of that day are found through the unique index, then the named address in one
        lookup each, else that reminder's rows compared (a report naming no address, or
        one a forward changed).
        """
        mid = message_id.strip()
        ours = _OUR_ID.fullmatch(mid)
        if ours is None:  # not in the form this release writes: read the whole table
            row = self.db.execute(
                "SELECT recipient FROM deliveries WHERE message_id = ? LIMIT 1", (mid,)
            ).fetchone()
            return str(row[0]) if row else None
        year, month, day, kind, lead = ours.groups()
        first, end = f"{year}-{month}-{day}", f"{year}-{month}-{day}U"  # 'U' follows 'T'
        sessions: list[str] = []
        while row := self.db.execute(
            "SELECT session FROM deliveries WHERE session > ? AND session < ? "
            "ORDER BY session LIMIT 1",
            (sessions[-1] if sessions else first, end),
        ).fetchone():
            sessions.append(str(row[0]))
        if named:
            for session in sessions:
                row = self.db.execute(
                    "SELECT recipient FROM deliveries WHERE session = ? AND kind = ? "
                    "AND lead = ? AND recipient = ? AND message_id = ?",
                    (session, kind, lead, named.strip().casefold(), mid),
                ).fetchone()
                if row:
                    return str(row[0])
        for session in sessions:
            row = self.db.execute(
                "SELECT recipient FROM deliveries WHERE session = ? AND kind = ? AND lead = ? "
                "AND message_id = ? LIMIT 1",
                (session, kind, lead, mid),
            ).fetchone()
            if row:
                return str(row[0])
        return None

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
        return self.db.write_problem()

    def late_counts(self, tolerance: timedelta) -> dict[tuple[str, str, str], int]:
        """(session, kind, lead) -> deliveries sent more than `tolerance` after their instant."""
        return {
            (session, kind, lead): number
            for session, kind, lead, number in self.db.execute(
                # Only the dialect's expression over two column names is formatted in.
                "SELECT session, kind, lead, count(*) FROM deliveries WHERE status = 'sent' "  # noqa: S608
                f"AND {self.db.seconds_between('due_at', 'sent_at')} > ? "
                "GROUP BY session, kind, lead",
                (tolerance.total_seconds(),),
            )
        }

    def errors(self, limit: int = 10) -> list[Row]:
        """The most recent deliveries that did not go through, newest first."""
        return [
            _row(values)
            for values in self.db.execute(
                f"SELECT {_ROW_COLUMNS} FROM deliveries WHERE {_NOT_SENT} "  # noqa: S608
                "AND last_reply != '' ORDER BY updated_at DESC LIMIT ?",
                (limit,),
            )
        ]


# The Message-IDs this release writes (mail.messages.message_id): cycle, the session's
# day, kind, lead, digest.
_OUR_ID = re.compile(r"<[a-z0-9-]+\.(\d{4})(\d{2})(\d{2})\.(\w+)\.(\w+)\.[0-9a-f]{20}@[^<>]+>")
# Every status but sent, and only the claims: each with the partial index's own term,
# so that they may be read from it, and the statuses named, so that they are sought
# there rather than by reading the millions of sent rows of the table.
_NOT_SENT = "status != 'sent' AND status IN ('claimed', 'failed', 'superseded')"
_CLAIMED = "status != 'sent' AND status = 'claimed'"
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
