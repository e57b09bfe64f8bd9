"""The ledger's tables: forward migrations, the schema version check, the index terms."""

from __future__ import annotations

from ..core.errors import LedgerError
from .database import PostgresOnly, SqliteOnly

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
    # term, `status != 'sent'` (SQLite's rule for partial indexes): IS_NOT_SENT, IS_CLAIMED.
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
    # only makes the plan read more rows. A claim adds its rows (Ledger.claim), one that
    # ends unsent takes its row out (the told_unsent trigger, next); the triggers follow
    # sends at a higher SEQUENCE and claims taken again, and do nothing when a reminder
    # that carries SEQUENCE 0 is sent, which is almost every send. (PostgreSQL's form,
    # where several workers count at once, is a later migration.)
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
    # A claim that ends unsent (failed, superseded, expired) no longer counts: taken out
    # by a trigger, from the row as it was when it ended, instead of by a statement
    # beside each way it can end.
    SqliteOnly(
        """
    CREATE TRIGGER told_unsent AFTER UPDATE OF status ON deliveries
    WHEN OLD.status = 'claimed' AND NEW.status IN ('failed', 'superseded')
    AND OLD.fact_start IS NOT NULL
    BEGIN
        UPDATE told_facts SET rows = rows - 1
        WHERE (session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic,
               sequence) = (OLD.session_id, OLD.fact_start, OLD.fact_end,
                            coalesce(OLD.fact_join_url, ''), OLD.fact_status,
                            coalesce(OLD.fact_topic, ''), OLD.sequence);
    END;
    """
    ),
    # The told counts on PostgreSQL, with the same meaning as SQLite's. Several workers
    # count at once there: each transaction adds to one of 16 rows of a group (its shard,
    # picked by its transaction id), so that two workers seldom wait on one counter row,
    # and the count is the sum of the shards (a shard alone may be negative). A claim
    # counts in its own statement (Ledger.claim), the triggers the rest; a registrant's
    # sends at a higher SEQUENCE take their turn (an advisory lock), so that two workers
    # never both take out what that registrant was told before.
    PostgresOnly(
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
        shard INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, fact_start, fact_end, fact_join_url, fact_status,
                     fact_topic, sequence, shard)
    );
    CREATE FUNCTION told_shard() RETURNS integer LANGUAGE sql VOLATILE
    AS $$ SELECT (txid_current() % 16)::integer $$;
    CREATE FUNCTION told_count(
        session text, start_at text, end_at text, link text, said text, topic text,
        told_sequence integer, change bigint
    ) RETURNS void LANGUAGE sql AS $$
        INSERT INTO told_facts VALUES (session, start_at, end_at, coalesce(link, ''), said,
            coalesce(topic, ''), told_sequence, change, told_shard())
        ON CONFLICT (session_id, fact_start, fact_end, fact_join_url, fact_status,
                     fact_topic, sequence, shard)
        DO UPDATE SET rows = told_facts.rows + excluded.rows
    $$;
    CREATE FUNCTION told_unsent() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM told_count(OLD.session_id, OLD.fact_start, OLD.fact_end, OLD.fact_join_url,
            OLD.fact_status, OLD.fact_topic, OLD.sequence, -1);
        RETURN NULL;
    END $$;
    CREATE TRIGGER told_unsent AFTER UPDATE OF status ON deliveries FOR EACH ROW
    WHEN (OLD.status = 'claimed' AND NEW.status IN ('failed', 'superseded')
          AND OLD.fact_start IS NOT NULL)
    EXECUTE FUNCTION told_unsent();
    CREATE FUNCTION told_retold() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.fact_start IS NOT NULL THEN
            PERFORM told_count(OLD.session_id, OLD.fact_start, OLD.fact_end,
                OLD.fact_join_url, OLD.fact_status, OLD.fact_topic, OLD.sequence, -1);
        END IF;
        IF NEW.fact_start IS NOT NULL THEN
            PERFORM told_count(NEW.session_id, NEW.fact_start, NEW.fact_end,
                NEW.fact_join_url, NEW.fact_status, NEW.fact_topic, NEW.sequence, 1);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER told_retold AFTER UPDATE OF fact_start, fact_end, fact_join_url,
        fact_status, fact_topic, sequence ON deliveries FOR EACH ROW
    WHEN (OLD.status = 'claimed' AND NEW.status = 'claimed')
    EXECUTE FUNCTION told_retold();
    CREATE FUNCTION told_sent() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(7432004, hashtext(NEW.session_id || ' ' || NEW.recipient));
        -- Each statement from here sees what the registrant's other sends committed.
        IF EXISTS (SELECT 1 FROM deliveries l WHERE l.session_id = NEW.session_id
                   AND l.recipient = NEW.recipient AND l.status = 'sent' AND l.id != NEW.id
                   AND l.fact_start IS NOT NULL
                   AND (l.sent_at > NEW.sent_at OR l.sent_at = NEW.sent_at AND l.id > NEW.id))
        THEN
            RETURN NULL;
        END IF;
        PERFORM told_count(session_id, fact_start, fact_end, fact_join_url, fact_status,
            fact_topic, sequence, -count(*))
        FROM deliveries l WHERE l.session_id = NEW.session_id
        AND l.recipient = NEW.recipient AND l.status = 'sent' AND l.id != NEW.id
        AND l.fact_start IS NOT NULL AND l.sequence < NEW.sequence
        AND l.sequence = (SELECT max(m.sequence) FROM deliveries m
                          WHERE m.session_id = NEW.session_id AND m.recipient = NEW.recipient
                          AND m.status = 'sent' AND m.id != NEW.id
                          AND m.fact_start IS NOT NULL)
        GROUP BY session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic,
                 sequence;
        RETURN NULL;
    END $$;
    CREATE TRIGGER told_sent AFTER UPDATE OF status ON deliveries FOR EACH ROW
    WHEN (OLD.status = 'claimed' AND NEW.status = 'sent' AND NEW.fact_start IS NOT NULL
          AND NEW.sequence > 0)
    EXECUTE FUNCTION told_sent();
    INSERT INTO told_facts (session_id, fact_start, fact_end, fact_join_url, fact_status,
                            fact_topic, sequence, rows)
    SELECT session_id, fact_start, fact_end, coalesce(fact_join_url, ''), fact_status,
           coalesce(fact_topic, ''), sequence, count(*)
    FROM (SELECT session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic,
                 sequence, status, max(sequence) FILTER (WHERE status = 'sent')
                     OVER (PARTITION BY session_id, recipient) AS level
          FROM deliveries WHERE fact_start IS NOT NULL) told
    WHERE status = 'claimed' OR status = 'sent' AND sequence = level
    GROUP BY 1, 2, 3, 4, 5, 6, 7;
    """
    ),
    # A registrant's "je ne pourrai pas venir" for one session, kept beside the export
    # (which stays the source of registrations): one row per (session, registrant),
    # declined and possibly undone, so history keeps the last choice and its date.
    """
    CREATE TABLE declines (
        session_id TEXT NOT NULL,       -- the session's planned date, as deliveries.session_id
        recipient TEXT NOT NULL,        -- canonical address
        day TEXT NOT NULL,              -- the date it was held on when declined (ISO)
        declined_at TEXT NOT NULL,      -- UTC stamps, as in deliveries
        undone_at TEXT,                 -- "finalement je viendrai" (a new decline clears it)
        PRIMARY KEY (session_id, recipient)
    );
    """,
)

# Every status but sent, and only the claims: each with the partial index's own term,
# so that they may be read from it, and the statuses named, so that they are sought
# there rather than by reading the millions of sent rows of the table.
IS_NOT_SENT = "status != 'sent' AND status IN ('claimed', 'failed', 'superseded')"
IS_CLAIMED = "status != 'sent' AND status = 'claimed'"


def check_version(version: int, path: str, *, readonly: bool) -> None:
    """Refuse a ledger this release cannot use: newer, or older and not to be migrated."""
    if version > len(MIGRATIONS):
        raise LedgerError(
            f"the ledger {path} was written by a newer release (schema "
            f"{version}, this one knows {len(MIGRATIONS)}); upgrade reminder"
        )
    if readonly and 0 < version < len(MIGRATIONS):
        # A reader cannot migrate: without this, every query names a missing column.
        # (Version 0 is a ledger the worker is creating at this moment.)
        raise LedgerError(
            f"the ledger {path} was written by an older release (schema "
            f"{version}, this one knows {len(MIGRATIONS)}): restart the service "
            "(`reminder run` upgrades it), then try again"
        )
