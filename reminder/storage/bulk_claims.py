"""Claims on PostgreSQL, a chunk in one statement: its rows bound as one JSON parameter.

A statement per claim cost a round trip and its share of a transaction each; a chunk
of 32 now costs one statement, one commit, and a second statement only when some of it
was already claimed. The chunk travels as JSON, each distinct shape (session, kind,
lead, instants, facts) once and each claim as its shape's number, its recipient and its
Message-ID: psycopg's list-to-array adaptation is Python code and took 1.2 s of 3.4 for
100,000 claims as 14 arrays, `json.dumps` and the server's parser are C.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from .database import Database
from .values import Claim, stamp

# The chunk as a table, in the order given: every worker sorts its claims by key, so
# two overlapping chunks take their rows' locks in the same order (never a deadlock).
# Each shape's fields are read once (OFFSET 0 keeps them apart), not once per claim.
_WITH_CHUNK = """
WITH chunk AS (
    SELECT session, kind, lead, c->>1 AS recipient, c->>2 AS message_id, due_at,
        not_after, session_id, fact_start, fact_end, fact_join_url, fact_status,
        fact_topic, sequence, claim.place
    FROM json_array_elements(?::json) WITH ORDINALITY AS claim(c, place)
    JOIN (
        SELECT s->>0 AS session, s->>1 AS kind, s->>2 AS lead, s->>3 AS due_at,
            s->>4 AS not_after, s->>5 AS session_id, s->>6 AS fact_start,
            s->>7 AS fact_end, s->>8 AS fact_join_url, s->>9 AS fact_status,
            s->>10 AS fact_topic, (s->>11)::integer AS sequence, place
        FROM json_array_elements(?::json) WITH ORDINALITY AS shape(s, place)
        OFFSET 0
    ) shape ON shape.place = (c->>0)::bigint
)"""

# New claims are won by inserting their rows; those with facts are counted in told_facts
# by the same statement, in the transaction's shard, group by group in one order. (The
# statements are constants: every value is a bound parameter.)
_INSERT = f"""{_WITH_CHUNK},
won AS (
    INSERT INTO deliveries (session, kind, lead, recipient, status, message_id, due_at,
        not_after, claimed_by, next_attempt_at, updated_at, session_id, fact_start,
        fact_end, fact_join_url, fact_status, fact_topic, sequence)
    SELECT session, kind, lead, recipient, 'claimed', message_id, due_at, not_after, ?,
        ?, ?, session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic,
        sequence
    FROM chunk ORDER BY place
    ON CONFLICT DO NOTHING
    RETURNING session, kind, lead, recipient, session_id, fact_start, fact_end,
        fact_join_url, fact_status, fact_topic, sequence
),
counted AS (
    INSERT INTO told_facts (session_id, fact_start, fact_end, fact_join_url, fact_status,
        fact_topic, sequence, rows, shard)
    SELECT session_id, fact_start, fact_end, coalesce(fact_join_url, ''), fact_status,
        coalesce(fact_topic, ''), sequence, count(*), told_shard()
    FROM won WHERE fact_start IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT (session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic,
        sequence, shard) DO UPDATE SET rows = told_facts.rows + excluded.rows
)
SELECT session, kind, lead, recipient FROM won
"""  # noqa: S608

# An open claim whose back-off has passed is won by moving its next attempt past the
# lease, compare-and-set, its rows locked in the chunk's order; a retry is composed from
# today's files, so it records today's facts. It keeps the Message-ID of its first claim.
_AGAIN = f"""{_WITH_CHUNK},
due AS (
    SELECT d.id, chunk.* FROM chunk JOIN deliveries d ON d.session = chunk.session
        AND d.kind = chunk.kind AND d.lead = chunk.lead AND d.recipient = chunk.recipient
    WHERE d.status = 'claimed' AND (d.next_attempt_at <= ? OR d.claimed_by = ?)
    ORDER BY chunk.place FOR UPDATE OF d
)
UPDATE deliveries d SET claimed_by = ?, next_attempt_at = ?, updated_at = ?, fault = NULL,
    session_id = due.session_id, fact_start = due.fact_start, fact_end = due.fact_end,
    fact_join_url = due.fact_join_url, fact_status = due.fact_status,
    fact_topic = due.fact_topic, sequence = due.sequence
FROM due WHERE d.id = due.id
RETURNING d.session, d.kind, d.lead, d.recipient, d.message_id, d.attempts
"""  # noqa: S608


def _chunk(claims: Sequence[Claim]) -> tuple[str, str]:
    """The chunk's claims and their shapes, as the two JSON parameters of _WITH_CHUNK."""
    shapes: dict[tuple[object, ...], int] = {}
    listed: list[list[object]] = []
    rows = []
    for c in claims:
        session, kind, step, recipient = c.key.stored
        # The facts by the Told object itself: a chunk's claims share a few.
        shape = (session, kind, step, c.due_at, c.not_after, c.session_id, id(c.told))
        number = shapes.get(shape)
        if number is None:
            number = shapes[shape] = len(shapes) + 1  # WITH ORDINALITY counts from 1
            listed.append([session, kind, step, stamp(c.due_at), stamp(c.not_after)])
            listed[-1] += c.fact_values()
        rows.append((number, recipient, c.message_id))
    return json.dumps(rows), json.dumps(listed)


def claim_in_bulk(
    db: Database,
    claims: Sequence[Claim],
    worker: str,
    lease_end: str,
    at: str,
    mine: str | None = None,
) -> list[Claim]:
    """Claim a chunk sorted by key; return those this worker won, in its order (open
    claims held by `mine` too, whatever their next attempt)."""
    if not claims:
        return []
    # Keys as the ledger stores them: its key columns.
    won = {tuple(row) for row in db.execute(_INSERT, (*_chunk(claims), worker, lease_end, at))}
    again: dict[tuple[str, ...], tuple[str | None, int]] = {}
    if len(won) < len(claims):
        rest = [c for c in claims if c.key.stored not in won]
        again = {
            tuple(row[:4]): (row[4], row[5])
            for row in db.execute(_AGAIN, (*_chunk(rest), at, mine, worker, lease_end, at))
        }
    taken: list[Claim] = []
    for c in claims:
        key = c.key.stored
        if key in won:
            won.discard(key)  # a key given twice is won once, as row by row
            taken.append(c)
        elif key in again:
            # A resend carries the Message-ID recorded at the first claim; its back-off
            # grows with the tries recorded so far.
            message_id, tries = again.pop(key)
            taken.append(replace(c, message_id=message_id or c.message_id, tries=tries or 0))
    return taken
