"""The ledger's counts of what each session's registrants were told, and the notice plan
that reads them instead of every told row: the same plan, from a few rows."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from reminder.core.mailing import DeliveryKey, DeliveryState, MailKind
from reminder.core.model import Registrant, Roster, Session
from reminder.core.notices import Facts, NoticePlan, Told, facts_for, notice_key, plan_notices
from reminder.service.lookahead import notice_view
from reminder.storage.database import Execute, PostgresOnly, SqliteOnly, sql_statements
from reminder.storage.ledger import MIGRATIONS, Claim, Ledger, Outcome, stamp

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2023, 3, 1, 17, tzinfo=PARIS)
SESSION = Session("2023-03-01", START, START + timedelta(hours=2), "S1")
LINK = "https://zoom.us/j/1"
PEOPLE = tuple(Registrant(f"p{n}@example.org") for n in range(6))
DELAY = timedelta(minutes=10)
NOW = datetime(2023, 2, 20, 9, tzinfo=UTC)

Counts = Counter[tuple[str, str, str, str, str, str, int]]


def counts(ledger: Ledger) -> Counts:
    """The counts as the plan reads them: summed over a group's rows (PostgreSQL's shards)."""
    found: Counts = Counter()
    for *key, rows in ledger.db.execute(
        "SELECT session_id, fact_start, fact_end, fact_join_url, fact_status, fact_topic, "
        "sequence, sum(rows) FROM told_facts GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING sum(rows) != 0"
    ):
        found[tuple(key)] = int(rows)  # type: ignore[index]
    return found


def expected(ledger: Ledger) -> Counts:
    """The definition, from every row: claimed with facts, or sent at the registrant's
    highest SEQUENCE for the session."""
    rows = ledger.db.execute(
        "SELECT session_id, recipient, status, fact_start, fact_end, fact_join_url, "
        "fact_status, fact_topic, sequence FROM deliveries WHERE fact_start IS NOT NULL"
    ).fetchall()
    level: dict[tuple[str, str], int] = {}
    for session_id, who, status, *_, sequence in rows:
        if status == "sent":
            level[session_id, who] = max(level.get((session_id, who), 0), sequence)
    found: Counts = Counter()
    for session_id, who, status, start, end, link, said, topic, sequence in rows:
        if status == "claimed" or (status == "sent" and sequence == level[session_id, who]):
            found[session_id, start, end, link or "", said, topic or "", sequence] += 1
    return found


def facts(hour: int, link: str = LINK, status: str = "confirmed") -> Facts:
    start = START.replace(hour=hour)
    return Facts(start, start + timedelta(hours=2), link, status, "S1")


def test_the_counts_follow_every_way_a_claim_ends(ledger_target: str | Path) -> None:
    # Claims, sends (at SEQUENCE 0 and higher, some late), failures, retries that take
    # a claim again with today's facts, supersessions and expiries, in a random order
    # with a fixed seed: after each, the counts are what every row says they are. Two
    # ledgers (two workers, on PostgreSQL) take turns at random.
    chance = random.Random(15)  # noqa: S311 - a fixed, repeatable order of operations
    turns = random.Random(16)  # noqa: S311 - which of the two writes, apart from the rest
    first, second = Ledger(ledger_target, worker="test"), Ledger(ledger_target, worker="other")
    ledger = first
    now = NOW
    level: dict[str, int] = {}  # each registrant's highest SEQUENCE sent, as a worker keeps it
    open_claims: dict[DeliveryKey, int] = {}
    roster = Roster("test", PEOPLE)
    late = False  # a send below its registrant's highest SEQUENCE stays counted: more rows
    for step in range(400):
        now += timedelta(minutes=1)
        ledger = turns.choice([first, second])
        who = chance.choice(PEOPLE).key
        action = chance.choice(["claim", "claim", "send", "send", "fail", "retry", "supersede"])
        mine = [k for k in open_claims if k.recipient == who]
        if action == "claim" or not mine:
            sequence = level.get(who, 0) + chance.choice([0, 0, 1])
            kind = chance.choice(["reminder", MailKind.UPDATE, MailKind.CANCELLATION])
            key = DeliveryKey.from_stored(SESSION.appointment, kind, f"v{step}", who)
            told = Told(facts(chance.choice([17, 18]), status="confirmed"), sequence, now)
            ledger.claim([Claim(key, f"<{step}@t>", now, START, SESSION.id, told)], now)
            open_claims[key] = sequence
        else:
            key = chance.choice(mine)
            if action == "send":
                # Only a send at SEQUENCE 0 never comes after a higher one (a worker's plan
                # never goes back); sends above may arrive in any order.
                if open_claims[key] == 0 and level.get(who, 0) > 0:
                    continue
                late = late or open_claims[key] < level.get(who, 0)
                ledger.record([Outcome(key, DeliveryState.SENT, "250", now)], now)
                level[who] = max(level.get(who, 0), open_claims.pop(key))
            elif action == "fail":
                ledger.record([Outcome(key, DeliveryState.FAILED, "550", now)], now)
                del open_claims[key]
            elif action == "retry":
                ledger.record([Outcome(key, DeliveryState.CLAIMED, "451", now, retry_at=now)], now)
                sequence = max(open_claims[key], level.get(who, 0))
                told = Told(facts(19, link="https://zoom.us/j/2"), sequence, now)
                ledger.claim([Claim(key, "<again@t>", now, START, SESSION.id, told)], now)
                open_claims[key] = sequence
            else:
                ledger.supersede([(key, now)], now)
                del open_claims[key]
        # Never fewer than the rows of what each registrant was last told, exactly
        # those until a send came late; and the plan from the counts is the full one.
        assert not expected(ledger) - counts(ledger), f"step {step}: {action}"
        assert late or counts(ledger) == expected(ledger), f"step {step}: {action}"
        fast, full, _ = plans(ledger, SESSION, roster, now, frozenset())
        same(fast, full, SESSION, roster)
    # What is still open when the session starts fails, and counts no more.
    ledger.claim(
        [
            Claim(
                DeliveryKey(SESSION.appointment, "reminder", "1h", PEOPLE[0].key),
                "<late@t>",
                now,
                now + timedelta(minutes=1),
                SESSION.id,
                Told(facts(17), level.get(PEOPLE[0].key, 0), now),
            )
        ],
        now,
    )
    assert ledger.expire(now + timedelta(hours=1)) >= 1
    assert not expected(ledger) - counts(ledger)
    assert late, "the operations never sent late: the test lost its point"
    first.close()
    second.close()


def _one_round(
    target: str | Path, worker: str, first: int, level: int, start: threading.Barrier
) -> list[DeliveryKey]:
    """One worker's round at SEQUENCE `level`: claim every delivery of it from `first`
    on, then send what it won (failing some, taking some again with a new link)."""
    at = NOW + timedelta(hours=level)
    told = Told(facts(17 + level), level, at)
    keys = [
        key
        for n in range(40)
        for key in (
            DeliveryKey(SESSION.appointment, MailKind.REMINDER, f"r{level}", f"r{n}@example.org"),
            DeliveryKey(SESSION.appointment, MailKind.UPDATE, "", f"r{n}@example.org", level + 1),
        )
    ]
    with Ledger(target, worker=worker) as ledger:
        start.wait()
        won: list[DeliveryKey] = []
        for offset in range(0, len(keys), 8):
            chunk = [
                Claim(key, f"<{key.recipient}.{key.kind}>", at, START, SESSION.id, told)
                for key in keys[(first + offset) % len(keys) :][:8]
            ]
            won += [c.key for c in ledger.claim(chunk, at)]
        start.wait()  # both have claimed: a claim refused for now is its own
        for n, key in enumerate(won):
            if n % 7 == 3:
                ledger.record([Outcome(key, DeliveryState.FAILED, "550", at)], at)
                continue
            if n % 5 == 1:  # refused for now, then taken again with a new link
                ledger.record([Outcome(key, DeliveryState.CLAIMED, "451", at, at)], at)
                again = Told(facts(17 + level, link="https://zoom.us/j/2"), level, at)
                assert ledger.claim([Claim(key, "<again>", at, START, SESSION.id, again)], at)
            ledger.record([Outcome(key, DeliveryState.SENT, "250", at)], at)
    return won


def test_two_workers_counting_at_once_lose_no_count(ledger_target: str | Path) -> None:
    # Two workers (two ledgers, two threads) claim the same deliveries at once from
    # different places, each won by one; they send them, fail some, take some again
    # with other facts; each round at a higher SEQUENCE, a reminder and an update to
    # the same registrant at once. After each round the counts are exactly what the
    # rows say: no count lost to a race, none taken out twice.
    with Ledger(ledger_target, worker="test") as reader:
        for level in range(4):
            start = threading.Barrier(2)
            with ThreadPoolExecutor(2) as pool:
                rounds = [
                    pool.submit(_one_round, ledger_target, worker, first, level, start)
                    for worker, first in (("a", 0), ("b", 43))
                ]
                a, b = (done.result(timeout=60) for done in rounds)
            assert not set(a) & set(b), "a delivery won twice"
            assert len(a) + len(b) == 80
            assert counts(reader) == expected(reader), f"SEQUENCE {level}"
            assert sum(counts(reader).values()) >= 80 * 6 // 7  # not vacuous


def test_two_sends_to_one_registrant_at_once_take_out_what_they_were_told_once(
    postgres_url: str,
) -> None:
    # A reminder and an update at SEQUENCE 1 to one registrant, recorded sent by two
    # workers at the same moment: each would take out the SEQUENCE 0 mail they were told
    # before, unless the second waits for the first to commit and then sees it.
    a, b = Ledger(postgres_url, worker="a"), Ledger(postgres_url, worker="b")
    who = PEOPLE[0].key
    told_everybody(a, SESSION, "7d", NOW)
    at = NOW + timedelta(days=1)
    told = Told(facts(18), 1, at)
    reminder = DeliveryKey(SESSION.appointment, MailKind.REMINDER, "1h", who)
    update = DeliveryKey(SESSION.appointment, MailKind.UPDATE, "", who, 1)
    a.claim([Claim(reminder, "<r>", at, START, SESSION.id, told)], at)
    b.claim([Claim(update, "<u>", at, START, SESSION.id, told)], at)
    recorded, done = threading.Event(), threading.Event()

    def second() -> None:
        recorded.wait(timeout=30)
        b.record([Outcome(update, DeliveryState.SENT, "250", at)], at)
        done.set()

    def first(execute: Execute) -> None:
        # The reminder recorded sent, its transaction held open until the other record
        # waits on it (or, were it not made to, has finished).
        execute(
            "UPDATE deliveries SET status = 'sent', sent_at = ? WHERE session = ? AND kind = ? "
            "AND lead = ? AND recipient = ?",
            (stamp(at), *reminder.stored),
        )
        recorded.set()
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            if b.db.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = 7432004"
            ).fetchone()[0]:
                return
            time.sleep(0.01)

    thread = threading.Thread(target=second)
    thread.start()
    a.db.transaction(first)
    thread.join(timeout=30)
    assert counts(a) == expected(a)
    assert sum(counts(a).values()) == len(PEOPLE) + 1  # the five others' 7d, and both v1
    a.close()
    b.close()


def told_everybody(ledger: Ledger, session: Session, lead: str, at: datetime, seq: int = 0) -> None:
    for person in PEOPLE:
        key = DeliveryKey(session.appointment, "reminder", lead, person.key)
        told = Told(facts_for(session, person, LINK, attending=True), seq, at)
        ledger.claim([Claim(key, f"<{lead}.{person.key}>", at, START, session.id, told)], at)
        ledger.record([Outcome(key, DeliveryState.SENT, "250", at)], at)


# Where each backend's told counts begin: the versions before are the release before them.
SQLITE_COUNTS = next(
    n for n, m in enumerate(MIGRATIONS) if isinstance(m, SqliteOnly) and "told_facts (" in m
)
POSTGRES_COUNTS = next(n for n, m in enumerate(MIGRATIONS) if isinstance(m, PostgresOnly))


def test_an_older_ledger_is_counted_when_it_is_upgraded(ledger_target: str | Path) -> None:
    with Ledger(ledger_target, worker="test") as ledger:
        told_everybody(ledger, SESSION, "7d", NOW)
        told_everybody(ledger, SESSION, "1d", NOW + timedelta(days=6), seq=1)
        key = DeliveryKey(SESSION.appointment, MailKind.UPDATE, "", PEOPLE[0].key, 2)
        told = Told(facts(18), 2, NOW)
        ledger.claim([Claim(key, "<v2>", NOW, START, SESSION.id, told)], NOW)
        before = counts(ledger)
        assert sum(before.values()) == len(PEOPLE) + 1  # the 1-day reminders and the claim
        # The schema as the release before the counts left it.
        if ledger.shared:
            ledger.db.write(
                [
                    ("DROP TABLE told_facts", ()),
                    (
                        "DROP FUNCTION told_sent, told_retold, told_unsent, told_count, "
                        "told_shard CASCADE",
                        (),
                    ),
                    ("DROP TABLE declines", ()),  # a later migration's
                    ("UPDATE reminder_schema SET version = ?", (POSTGRES_COUNTS,)),
                ]
            )
    if isinstance(ledger_target, Path):
        db = sqlite3.connect(ledger_target)
        db.executescript(
            "DROP TRIGGER told_sent; DROP TRIGGER told_retold; DROP TRIGGER told_unsent; "
            "DROP TABLE told_facts; DROP TABLE declines; "  # the last, a later migration's
            f"PRAGMA user_version = {SQLITE_COUNTS};"
        )
        db.close()
    with Ledger(ledger_target, worker="test") as ledger:
        assert counts(ledger) == before == expected(ledger)
        # And the counts go on from there: the claim sent at SEQUENCE 2 takes out the
        # 1-day reminder its registrant was told.
        later = NOW + timedelta(days=7)
        ledger.record([Outcome(key, DeliveryState.SENT, "250", later)], later)
        assert counts(ledger) == expected(ledger) != before


def test_a_trigger_body_stays_one_statement() -> None:
    statements = list(sql_statements(MIGRATIONS[SQLITE_COUNTS]))
    assert [s.split()[:2] for s in statements] == [
        ["CREATE", "TABLE"],
        ["INSERT", "INTO"],
        ["--", "Sent"],
        ["--", "A"],
    ]
    assert all(sqlite3.complete_statement(s) for s in statements)
    [unsent] = [s for s in MIGRATIONS if isinstance(s, SqliteOnly) and "told_unsent" in s]
    assert [s.split()[:2] for s in sql_statements(unsent)] == [["CREATE", "TRIGGER"]]


def plans(
    ledger: Ledger, session: Session, roster: Roster, now: datetime, stopped: frozenset[str]
) -> tuple[NoticePlan, NoticePlan, bool]:
    """The plan from the counts, the plan from every row, and whether the counts did."""
    since = {session.id: NOW}
    fast = notice_view(ledger, [session], roster, since, LINK, stopped)
    full = ledger.notice_view([session.id], since)
    return (
        plan_notices(now, [session], roster, fast, DELAY, LINK, stopped),
        plan_notices(now, [session], roster, full, DELAY, LINK, stopped),
        session.id in fast.rest,
    )


def same(
    fast: NoticePlan,
    full: NoticePlan,
    session: Session,
    told: Roster,
    stopped: frozenset[str] = frozenset(),
) -> None:
    assert sorted(n.key for n in fast.owed) == sorted(n.key for n in full.owed)
    assert sorted((n.key, n.due_at) for n in fast.waiting) == sorted(
        (n.key, n.due_at) for n in full.waiting
    )
    assert sorted(fast.superseded) == sorted(full.superseded)
    assert fast.held == full.held
    # Each registrant told of the session keeps their SEQUENCE (one never told may get
    # either: it starts their calendar entry).
    for (_, who), sequence in full.sequences.items():
        if who and who not in stopped:  # the suppressed are never mailed
            assert fast.sequence(session, who) == sequence, who


MOVED_START = START + timedelta(days=7)
MOVED = replace(SESSION, start=MOVED_START, end=MOVED_START + timedelta(hours=2), moved_from=START)


def test_a_plan_from_the_counts_is_the_plan_from_every_row(ledger_target: str | Path) -> None:
    ledger = Ledger(ledger_target, worker="test")
    roster = Roster("test", PEOPLE)
    at = NOW + timedelta(days=1)
    told_everybody(ledger, SESSION, "7d", NOW)
    told_everybody(ledger, SESSION, "1d", NOW + timedelta(hours=1))

    # Nothing changed: nothing owed, and only the counts were read.
    fast, full, by_counts = plans(ledger, SESSION, roster, at, frozenset())
    same(fast, full, SESSION, roster)
    assert fast.quiet and by_counts

    # One registrant off the session, one with a link of their own, one suppressed: they
    # are read one by one, the others still settled by the counts.
    off = replace(PEOPLE[0], sessions=frozenset({"2023-04-05"}))
    own = replace(PEOPLE[1], join_url="https://zoom.us/j/own")
    changed = Roster("test", (off, own, *PEOPLE[2:]))
    stopped = frozenset({PEOPLE[2].key})
    fast, full, by_counts = plans(ledger, SESSION, changed, at, stopped)
    same(fast, full, SESSION, changed, stopped)
    assert {(n.registrant.key, n.kind) for n in fast.owed} == {
        (off.key, MailKind.CANCELLATION),
        (own.key, MailKind.UPDATE),
    }
    assert by_counts

    # The session moves: until everybody is told, the counts cannot settle it.
    fast, full, by_counts = plans(ledger, MOVED, roster, at, frozenset())
    same(fast, full, MOVED, roster)
    assert len(fast.owed) == len(PEOPLE) and not by_counts

    # Everybody told of the move (SEQUENCE 1): settled by the counts again.
    for notice in fast.owed[1:]:
        told = Told(notice.facts, notice.sequence, at)
        claim = Claim(notice.key, f"<u.{notice.registrant.key}>", at, MOVED_START, MOVED.id, told)
        ledger.claim([claim], at)
        ledger.record([Outcome(notice.key, DeliveryState.SENT, "250", at)], at)
    fast, full, by_counts = plans(ledger, MOVED, roster, at, frozenset())
    same(fast, full, MOVED, roster)
    # The one not yet told is found through the facts they were told and read alone.
    assert [n.registrant.key for n in fast.owed] == [PEOPLE[0].key] and by_counts
    first = fast.owed[0]
    ledger.claim(
        [Claim(first.key, "<u.0>", at, MOVED_START, MOVED.id, Told(first.facts, 1, at))], at
    )
    # In flight: its claim is read one by one (a notice claim), nothing more is owed.
    fast, full, by_counts = plans(ledger, MOVED, roster, at, frozenset())
    same(fast, full, MOVED, roster)
    assert not fast.owed and [n.retry for n in fast.waiting] == [True] and by_counts
    ledger.record([Outcome(first.key, DeliveryState.SENT, "250", at)], at)
    fast, full, by_counts = plans(ledger, MOVED, roster, at, frozenset())
    same(fast, full, MOVED, roster)
    assert fast.quiet and by_counts
    assert fast.sequence(MOVED, PEOPLE[3].key) == 1
    assert fast.sequence(MOVED, "late@example.org") == 1  # a later registrant's first entry
    settled = ledger.notice_view([MOVED.id], {}).settled
    assert notice_key(MOVED.appointment, MailKind.UPDATE, 1, PEOPLE[0].key) in settled

    # The move is undone: an update back, to everybody, read in full again.
    fast, full, by_counts = plans(ledger, SESSION, roster, at, frozenset())
    same(fast, full, SESSION, roster)
    assert {n.sequence for n in fast.waiting} == {2} and not by_counts
    ledger.close()


def test_a_mail_recorded_after_a_newer_one_still_owes_its_registrant_an_update(
    ledger_target: str | Path,
) -> None:
    # p0's 1-day reminder, claimed at 18:00 and SEQUENCE 1, is recorded sent after
    # everybody got the 1-hour reminder at 19:00 and SEQUENCE 2: their last mail says
    # 18:00, so they are owed an update, and the counts must not settle the session.
    ledger = Ledger(ledger_target, worker="test")
    at = NOW
    day = DeliveryKey(SESSION.appointment, "reminder", "1d", PEOPLE[0].key)
    ledger.claim([Claim(day, "<1d>", at, START, SESSION.id, Told(facts(18), 1, at))], at)
    for person in PEOPLE:
        key = DeliveryKey(SESSION.appointment, "reminder", "1h", person.key)
        told = Told(facts(19), 2, at)
        ledger.claim([Claim(key, f"<1h.{person.key}>", at, START, SESSION.id, told)], at)
        ledger.record([Outcome(key, DeliveryState.SENT, "250", at)], at)
    later = at + timedelta(minutes=1)
    ledger.record([Outcome(day, DeliveryState.SENT, "250", later)], later)
    session = replace(
        SESSION, start=START.replace(hour=19), end=START.replace(hour=21), moved_from=START
    )
    now = later + DELAY
    fast, full, _ = plans(ledger, session, Roster("test", PEOPLE), now, frozenset())
    same(fast, full, session, Roster("test", PEOPLE))
    assert [(n.registrant.key, n.kind, n.changes) for n in fast.owed] == [
        (PEOPLE[0].key, MailKind.UPDATE, ("time",))
    ]
    ledger.close()


def test_outcomes_recorded_together_end_as_recorded_one_by_one(ledger_target: str | Path) -> None:
    # Group commit hands the ledger the outcomes of several connections at once (on
    # PostgreSQL, one statement): sends (one at a higher SEQUENCE), failures and retries
    # must leave the rows and the counts as a statement each would.
    with Ledger(ledger_target, worker="w") as ledger:
        now = NOW
        told = Told(facts(17), 0, now)
        later = Told(facts(18), 1, now)

        def claims(lead: str) -> list[Claim]:
            return [
                Claim(
                    DeliveryKey(SESSION.appointment, MailKind.REMINDER, lead, p.key),
                    f"<{lead}.{n}@t>",
                    now,
                    START,
                    SESSION.id,
                    later if n == 1 else told,
                )
                for n, p in enumerate(PEOPLE)
            ]

        def outcomes(lead: str) -> list[Outcome]:
            keys = [c.key for c in claims(lead)]
            retry = now + timedelta(minutes=5)
            return [
                Outcome(keys[0], DeliveryState.SENT, "250 ok", now),
                Outcome(keys[1], DeliveryState.SENT, "250 ok", now, attempts=2),
                Outcome(keys[2], DeliveryState.FAILED, "550 no such user", now),
                Outcome(keys[3], DeliveryState.CLAIMED, "451 later", now, retry),
                Outcome(keys[4], DeliveryState.SENT, "250 ok", now),
            ]  # the sixth stays claimed

        ledger.claim(claims("1d"), now)
        ledger.claim(claims("1h"), now)
        for outcome in outcomes("1d"):
            ledger.record([outcome], now)
        before = counts(ledger)
        ledger.record(list(reversed(outcomes("1h"))), now)

        def shown(lead: str) -> list[tuple[object, ...]]:
            return [
                (r.recipient, r.state, r.attempts, r.sent_at, r.last_reply, r.updated_at)
                for r in sorted(ledger.rows(), key=lambda r: r.recipient)
                if r.lead == lead
            ]

        assert shown("1h") == shown("1d")
        assert [r[1] for r in shown("1h")] == [
            "sent",
            "sent",
            "failed",
            "claimed",
            "sent",
            "claimed",
        ]
        # The retry waits for its instant, the untouched claim does not.
        open_claims = ledger.view([SESSION.appointment], claims_only=True).claims
        assert open_claims[SESSION.appointment, "1h"] == open_claims[SESSION.appointment, "1d"]
        assert open_claims[SESSION.appointment, "1h"][PEOPLE[3].key] == now + timedelta(minutes=5)
        # The grouped outcomes moved the counts as the single ones did: the definition.
        assert counts(ledger) != before
        assert counts(ledger) == expected(ledger)
