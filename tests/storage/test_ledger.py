"""The ledger contract, on a real SQLite file and a real PostgreSQL schema alike:
claims, outcomes, races, migrations, leases."""

import asyncio
import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reminder.core.errors import LedgerError
from reminder.core.mailing import DeliveryKey, DeliveryState
from reminder.core.message_ids import message_id
from reminder.core.notices import ALWAYS, Facts, Told
from reminder.mail.smtpsink import free_port
from reminder.storage.backend import copy_ledger
from reminder.storage.cluster import Membership, end_send, take_send, workers
from reminder.storage.database import PostgresDatabase
from reminder.storage.deliveries import _WORKERS_LOCK as WORKERS_LOCK
from reminder.storage.ledger import MIGRATIONS, Claim, Ledger, Outcome, Suppression
from reminder.storage.thread import LedgerThread
from tests.conftest import POSTGRES

NOW = datetime(2023, 2, 28, 16, tzinfo=UTC)
START = datetime(2023, 3, 1, 16, tzinfo=UTC)


def claim(n: int, lead: str = "1d") -> Claim:
    key = DeliveryKey("2023-03-01T17:00+01:00", "reminder", lead, f"p{n}@example.org")
    return Claim(key, f"<m{n}.{lead}@irev.fr>", NOW, START)


def test_a_delivery_is_claimed_once(ledger: Ledger) -> None:
    assert ledger.claim([claim(1), claim(2)], NOW) == [claim(1), claim(2)]
    assert ledger.claim([claim(1), claim(3)], NOW) == [claim(3)]


def test_the_database_itself_refuses_a_second_row(ledger: Ledger) -> None:
    ledger.claim([claim(1)], NOW)
    with pytest.raises(LedgerError, match=r"(?i)unique"):
        ledger.db.write(
            [
                (
                    "INSERT INTO deliveries (session, kind, lead, recipient, status, due_at, "
                    "not_after, updated_at) VALUES (?, ?, ?, ?, 'sent', '', '', '')",
                    claim(1).key.stored,
                )
            ]
        )


def test_sent_is_settled_and_never_claimed_again(ledger: Ledger) -> None:
    ledger.claim([claim(1)], NOW)
    ledger.record([Outcome(claim(1).key, DeliveryState.SENT, "250 ok", NOW)], NOW)
    view = ledger.view([claim(1).key.appointment])
    assert view.settled == {(claim(1).key.appointment, "1d"): {"p1@example.org"}}
    later = NOW + timedelta(hours=1)
    ledger.adopt_claims(later)
    assert ledger.claim([claim(1)], later) == []
    [row] = ledger.rows()
    assert (row.state, row.attempts, row.message_id, row.sent_at) == (
        "sent",
        1,
        "<m1.1d@irev.fr>",
        NOW,
    )


def test_the_planner_s_view_of_a_session_with_several_leads_and_outcomes(ledger: Ledger) -> None:
    later = NOW + timedelta(minutes=5)
    ledger.claim([claim(n, lead) for n in range(4) for lead in ("7d", "1d")], NOW)
    ledger.record(
        [
            Outcome(claim(0, "7d").key, DeliveryState.SENT, "250", NOW),
            Outcome(claim(1, "7d").key, DeliveryState.FAILED, "550", NOW),
            Outcome(claim(2, "7d").key, DeliveryState.CLAIMED, "451", NOW, later),
            Outcome(claim(0, "1d").key, DeliveryState.SENT, "250", NOW),
        ],
        NOW,
    )
    ledger.supersede([(claim(3, "7d").key, NOW)], NOW)
    session = claim(0).key.appointment
    view = ledger.view([session])
    assert view.settled == {
        (session, "7d"): {"p0@example.org", "p1@example.org", "p3@example.org"},
        (session, "1d"): {"p0@example.org"},
    }
    assert view.claims[session, "7d"] == {"p2@example.org": later}
    assert set(view.claims[session, "1d"]) == {"p1@example.org", "p2@example.org", "p3@example.org"}
    only = ledger.view([session], claims_only=True)
    assert only.settled == {} and only.claims == view.claims


def test_a_transient_failure_keeps_the_claim_for_a_later_retry(ledger: Ledger) -> None:
    ledger.claim([claim(1)], NOW)
    retry_at = NOW + timedelta(minutes=5)
    ledger.record(
        [Outcome(claim(1).key, DeliveryState.CLAIMED, "451 try later", NOW, retry_at, 4)], NOW
    )
    view = ledger.view([claim(1).key.appointment])
    assert view.claims == {(claim(1).key.appointment, "1d"): {"p1@example.org": retry_at}}
    assert ledger.claim([claim(1)], NOW + timedelta(minutes=4)) == []
    # The retry carries the tries recorded so far: its next back-off grows with them.
    assert ledger.claim([claim(1)], NOW + timedelta(minutes=6)) == [replace(claim(1), tries=4)]
    later = NOW + timedelta(minutes=7)
    ledger.record(
        [Outcome(claim(1).key, DeliveryState.CLAIMED, "451 try later", later, later, 4)], later
    )
    assert ledger.claim([claim(1)], later) == [replace(claim(1), tries=8)]


def test_claims_of_a_dead_worker_are_adopted_at_start(ledger_target: str | Path) -> None:
    with Ledger(ledger_target, worker="old") as old:
        old.claim([claim(1)], NOW)
    with Ledger(ledger_target, worker="new") as new:
        assert new.claim([claim(1)], NOW) == []  # still under the old worker's lease
        assert new.adopt_claims(NOW) == 1
        assert new.claim([claim(1)], NOW) == [claim(1)]
        [row] = new.rows()
        assert row.message_id == "<m1.1d@irev.fr>"


def test_supersede_records_older_reminders_and_closes_their_claims(ledger: Ledger) -> None:
    ledger.claim([claim(1, "7d")], NOW)
    ledger.supersede([(claim(1, "7d").key, NOW), (claim(2, "7d").key, NOW)], NOW)
    assert {(r.recipient, r.state) for r in ledger.rows()} == {
        ("p1@example.org", "superseded"),
        ("p2@example.org", "superseded"),
    }


def test_supersede_never_overwrites_a_sent_delivery(ledger: Ledger) -> None:
    ledger.claim([claim(1, "7d")], NOW)
    ledger.record([Outcome(claim(1, "7d").key, DeliveryState.SENT, "250", NOW)], NOW)
    ledger.supersede([(claim(1, "7d").key, NOW)], NOW)
    assert ledger.rows()[0].state == "sent"


def test_claims_left_open_at_the_session_start_expire_as_failed(ledger: Ledger) -> None:
    ledger.claim([claim(1)], NOW)
    ledger.record([Outcome(claim(1).key, DeliveryState.CLAIMED, "421 busy", NOW, NOW)], NOW)
    assert ledger.expire(START - timedelta(seconds=1)) == 0
    assert ledger.expire(START) == 1
    [row] = ledger.rows()
    assert row.state == "failed"
    assert row.last_reply == "not confirmed before the session started: 421 busy"
    assert ledger.last_error() == row


def test_counts_per_session_and_lead(ledger: Ledger) -> None:
    ledger.claim([claim(1), claim(2), claim(3)], NOW)
    ledger.record(
        [
            Outcome(claim(1).key, DeliveryState.SENT, "250", NOW),
            Outcome(claim(2).key, DeliveryState.FAILED, "550 no such user", NOW),
        ],
        NOW,
    )
    assert ledger.counts() == {
        ("2023-03-01T17:00+01:00", "reminder", "1d"): {"sent": 1, "failed": 1, "claimed": 1}
    }
    assert [r.recipient for r in ledger.rows(recipient="P2@Example.org")] == ["p2@example.org"]


def test_counts_move_the_claims_waiting_on_a_fault_to_waiting(ledger: Ledger) -> None:
    ledger.claim([claim(1), claim(2), claim(3), claim(4, "7d")], NOW)
    ledger.record([Outcome(claim(1).key, DeliveryState.SENT, "250", NOW)], NOW)
    ledger.hold([claim(2).key, claim(4, "7d").key], "535 authentication failed", NOW)
    assert ledger.counts() == {
        ("2023-03-01T17:00+01:00", "reminder", "1d"): {"claimed": 1, "sent": 1, "waiting": 1},
        ("2023-03-01T17:00+01:00", "reminder", "7d"): {"waiting": 1},
    }
    assert ledger.last_error() == ledger.errors(1)[0]
    assert ledger.last_error().recipient in {"p2@example.org", "p4@example.org"}  # type: ignore[union-attr]
    held = {"p2@example.org", "p4@example.org"}
    assert {r.recipient: r.state for r in ledger.rows()} == {
        "p1@example.org": DeliveryState.SENT,
        "p2@example.org": DeliveryState.WAITING,
        "p3@example.org": DeliveryState.CLAIMED,
        "p4@example.org": DeliveryState.WAITING,
    }
    # Their deadline passes while the fault holds them: they failed, nothing waits now.
    ledger.expire(START)
    assert {r.state for r in ledger.rows() if r.recipient in held} == {DeliveryState.FAILED}


def test_counts_errors_and_claims_read_indexes_not_the_table_rows(tmp_path: Path) -> None:
    # A ledger of millions of sent rows: status, the planner's view, the expiry of
    # claims and the stop line must not read every row of the table.
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        statements: list[str] = []
        execute = ledger.db.execute

        def noted(sql: str, parameters: Sequence[object] = ()) -> Any:
            statements.append(sql)
            return execute(sql, parameters)

        ledger.db.execute = noted  # type: ignore[method-assign]
        ledger.counts()
        ledger.last_error()
        ledger.view([claim(1).key.appointment], claims_only=True)
        ledger.open_claims(NOW)
        ledger.faults()
        ledger.db.execute = execute  # type: ignore[method-assign]
        counting, erring, viewing, open_claims, faults = (
            " / ".join(
                row[-1]
                for row in ledger.db.execute(f"EXPLAIN QUERY PLAN {sql}", ("",) * sql.count("?"))
            )
            for sql in statements
        )
        expiring = " / ".join(
            row[-1]
            for row in ledger.db.execute(
                "EXPLAIN QUERY PLAN UPDATE deliveries SET status = 'failed' "
                "WHERE status != 'sent' AND status = 'claimed' AND not_after <= ?",
                ("",),
            )
        )
        # The index holds no sent row: a result's commit only takes its entry out.
        [(index_sql,)] = ledger.db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'deliveries_unsent'"
        ).fetchall()
    assert "WHERE status != 'sent'" in index_sql
    assert "COVERING INDEX sqlite_autoindex_deliveries_1" in counting, counting
    assert "USING INDEX deliveries_unsent" in counting, counting
    assert "SCAN deliveries /" not in counting + " /", counting
    for plan in (erring, viewing, open_claims, faults, expiring):
        assert "INDEX deliveries_unsent" in plan, plan


def test_counts_are_one_snapshot_while_a_worker_claims(tmp_path: Path) -> None:
    # The status page counts while workers claim: a claim landing during the count
    # (here: between the statements, if there were two) must not break or skew it.
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, worker="reader") as reader, Ledger(path, worker="worker") as worker:
        worker.claim([claim(n) for n in range(3)], NOW)
        worker.record(
            [Outcome(claim(n).key, DeliveryState.SENT, "250", NOW) for n in range(3)], NOW
        )
        execute = reader.db.execute

        def then_a_claim(sql: str, parameters: Sequence[object] = ()) -> Any:
            rows = execute(sql, parameters)
            worker.claim([claim(n) for n in range(3, 6)] + [claim(9, "7d")], NOW)
            return rows

        reader.db.execute = then_a_claim  # type: ignore[method-assign]
        assert reader.counts() == {("2023-03-01T17:00+01:00", "reminder", "1d"): {"sent": 3}}


def test_counts_of_every_status_add_up_from_the_totals(ledger: Ledger) -> None:
    # The sent are counted as what the others leave of each total.
    keys = [claim(n) for n in range(1, 7)]
    ledger.claim(keys, NOW)
    ledger.record([Outcome(keys[0].key, DeliveryState.SENT, "250", NOW)], NOW)
    ledger.record([Outcome(keys[1].key, DeliveryState.SENT, "250", NOW)], NOW)
    ledger.record([Outcome(keys[2].key, DeliveryState.FAILED, "550", NOW)], NOW)
    ledger.hold([keys[3].key], "configuration fault: 535", NOW)
    assert ledger.counts() == {
        ("2023-03-01T17:00+01:00", "reminder", "1d"): {
            "claimed": 2,
            "failed": 1,
            "sent": 2,
            "waiting": 1,
        }
    }
    for key in keys[4:]:
        ledger.record([Outcome(key.key, DeliveryState.FAILED, "550", NOW)], NOW)
    ledger.record([Outcome(keys[3].key, DeliveryState.FAILED, "535", NOW)], NOW)
    ledger.record([Outcome(keys[0].key, DeliveryState.SENT, "250", NOW)], NOW)  # already settled
    assert ledger.counts() == {
        ("2023-03-01T17:00+01:00", "reminder", "1d"): {"failed": 4, "sent": 2}
    }


def test_schema_version_and_a_newer_ledger_is_refused(ledger_target: str | Path) -> None:
    with Ledger(ledger_target) as ledger:
        assert ledger.version() == len(MIGRATIONS)
        ledger.claim([claim(1)], NOW)
    with Ledger(ledger_target) as again:  # reopening migrates nothing and keeps the rows
        assert len(again.rows()) == 1
        newer = len(MIGRATIONS) + 1
        if again.shared:
            again.db.write([("UPDATE reminder_schema SET version = ?", (newer,))])
        else:
            assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            again.db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(LedgerError, match="newer release"):
        Ledger(ledger_target)


def _race(
    target: str,
    worker: str,
    start: "multiprocessing.synchronize.Event",
    results: "multiprocessing.Queue[list[str]]",
) -> None:
    where = target if "://" in target else Path(target)
    with Ledger(where, worker=worker) as ledger:
        start.wait()
        won: list[str] = []
        for offset in range(0, 400, 20):  # many small transactions interleave
            won += [
                c.key.recipient
                for c in ledger.claim([claim(n) for n in range(offset, offset + 20)], NOW)
            ]
        results.put(won)


def test_two_claimers_racing_on_one_ledger_never_both_win(ledger_target: str | Path) -> None:
    Ledger(ledger_target).close()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    results: multiprocessing.Queue[list[str]] = context.Queue()
    workers = [
        context.Process(target=_race, args=(str(ledger_target), name, start, results))
        for name in ("a", "b")
    ]
    for process in workers:
        process.start()
    start.set()
    first, second = results.get(timeout=30), results.get(timeout=30)
    for process in workers:
        process.join(timeout=30)
    assert not set(first) & set(second)
    assert len(first) + len(second) == 400


def test_a_chunk_of_new_claims_retries_and_others_claims_is_won_where_it_may_be(
    ledger_target: str | Path,
) -> None:
    # One chunk: a new delivery, a claim found unsent and due again, a claim still in
    # another worker's lease, a sent one. The retry keeps its first Message-ID whatever
    # today's files would give it, and records today's facts.
    with Ledger(ledger_target, worker="old") as old:
        old.claim([claim(1), claim(2), claim(3)], NOW)
        old.record([Outcome(claim(3).key, DeliveryState.SENT, "250", NOW)], NOW)
        later = NOW + timedelta(minutes=5)
        old.record([Outcome(claim(1).key, DeliveryState.CLAIMED, "451", NOW, later)], NOW)
    with Ledger(ledger_target, worker="new") as new:
        told = Told(
            Facts(START, START + timedelta(hours=2), "https://zoom.us/j/9", "confirmed"), 1, NOW
        )
        chunk = [
            replace(claim(n), message_id=f"<today{n}@irev.fr>", session_id="2023-03-01", told=told)
            for n in (4, 3, 2, 1)
        ]
        won = new.claim(chunk, later)
        assert [(c.key.recipient, c.message_id) for c in won] == [
            ("p1@example.org", "<m1.1d@irev.fr>"),  # its first claim's Message-ID
            ("p4@example.org", "<today4@irev.fr>"),
        ]
        rows = {row.recipient: row for row in new.rows()}
        assert [rows[f"p{n}@example.org"].state for n in (1, 2, 3, 4)] == [
            "claimed",
            "claimed",
            "sent",
            "claimed",
        ]
        facts = new.db.execute(
            "SELECT recipient, fact_join_url, sequence FROM deliveries ORDER BY recipient"
        ).fetchall()
        assert [tuple(f) for f in facts] == [
            ("p1@example.org", "https://zoom.us/j/9", 1),  # today's facts, retold
            ("p2@example.org", None, None),
            ("p3@example.org", None, None),
            ("p4@example.org", "https://zoom.us/j/9", 1),
        ]


def test_a_claim_tried_again_after_its_answer_was_lost_wins_what_the_lost_try_claimed(
    ledger_target: str | Path,
) -> None:
    with Ledger(ledger_target, worker="w") as ledger:
        ledger.claim([claim(1), claim(2)], NOW)  # committed; its answer lost on the way
        # An ordinary claim never wins a delivery twice, not even for the same worker...
        assert ledger.claim([claim(1), claim(3)], NOW) == [claim(3)]
        # ...but the try after a lost answer wins what its lost try claimed.
        assert ledger.claim([claim(1), claim(2)], NOW, ours=True) == [claim(1), claim(2)]
    with Ledger(ledger_target, worker="other") as other:
        assert other.claim([claim(1), claim(4)], NOW, ours=True) == [claim(4)]


def test_outcomes_written_together_are_all_written_or_none(ledger: Ledger) -> None:
    # A group of outcomes is one transaction (on PostgreSQL, one message the server runs
    # as an implicit transaction): a statement that fails takes the others back with it.
    ledger.claim([claim(1), claim(2)], NOW)
    sent = (
        "UPDATE deliveries SET status = 'sent' WHERE session = ? AND kind = ? AND lead = ? "
        "AND recipient = ?"
    )
    with pytest.raises(LedgerError):
        ledger.db.write([(sent, claim(1).key.stored), ("UPDATE no_such_table SET x = 1", ())])
    assert {row.state for row in ledger.rows()} == {DeliveryState.CLAIMED}
    counts = ledger.db.write([(sent, claim(1).key.stored), (sent, claim(9).key.stored)])
    assert counts == [1, 0]  # each statement's own row count, in order
    assert ledger.claim([claim(1), claim(2)], NOW) == []


def test_replies_written_together_come_back_as_the_server_wrote_them(ledger: Ledger) -> None:
    # On PostgreSQL a group's values are bound into one message on this side: a relay's
    # reply with quotes, backslashes, a semicolon or SQL is kept as text, nothing more.
    odd = "550 5.1.1 <o'brien@example.org>: it's \\ gone; DROP TABLE deliveries; -- $1 %s ?"
    ledger.claim([claim(1), claim(2)], NOW)
    ledger.record(
        [
            Outcome(claim(1).key, DeliveryState.FAILED, odd, NOW),
            Outcome(claim(2).key, DeliveryState.SENT, "250 2.0.0 Ok: queued as 'x'", NOW),
        ],
        NOW,
    )
    replies = {row.recipient: row.last_reply for row in ledger.rows()}
    assert replies == {"p1@example.org": odd, "p2@example.org": "250 2.0.0 Ok: queued as 'x'"}


def test_two_workers_taking_the_same_open_claims_again_each_win_one(
    ledger_target: str | Path,
) -> None:
    # A dead worker's 200 claims, adopted: two workers take them again at once, in
    # overlapping chunks from different places; each is won once, with its Message-ID.
    with Ledger(ledger_target, worker="dead") as dead:
        dead.claim([claim(n) for n in range(200)], NOW)
    with Ledger(ledger_target, worker="a") as adopter:
        assert adopter.adopt_claims(NOW) == 200
    won: dict[str, list[Claim]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def take(worker: str, first: int) -> None:
        with Ledger(ledger_target, worker=worker) as ledger:
            start.wait()
            for offset in range(0, 200, 16):
                at = (first + offset) % 200
                chunk = [replace(claim(n % 200), message_id="<new@x>") for n in range(at, at + 16)]
                won[worker] += ledger.claim(chunk, NOW)

    threads = [threading.Thread(target=take, args=(w, first)) for w, first in (("a", 0), ("b", 72))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    a, b = ({c.key.recipient for c in won[name]} for name in ("a", "b"))
    assert not a & b and len(a | b) == 200
    assert len(won["a"]) + len(won["b"]) == 200
    assert {c.message_id for c in won["a"] + won["b"]} == {f"<m{n}.1d@irev.fr>" for n in range(200)}


# --- suppressions ---------------------------------------------------------------------------


def test_a_suppression_is_kept_once_with_its_first_reason(ledger: Ledger) -> None:
    assert ledger.suppress(" Alex@Example.org ", reason="asked by phone", source="staff", at=NOW)
    later = NOW + timedelta(hours=1)
    assert not ledger.suppress("alex@example.org", reason="again", source="bounce", at=later)
    assert ledger.suppressed_addresses() == {"alex@example.org"}
    [kept] = ledger.suppressions()
    assert kept == Suppression("alex@example.org", "asked by phone", "staff", "", NOW)


def test_suppressions_are_listed_newest_first_with_the_bounce_reply(ledger: Ledger) -> None:
    ledger.suppress("a@example.org", reason="staff", source="staff", at=NOW)
    ledger.suppress(
        "b@example.org",
        reason="mailbox does not exist",
        source="bounce",
        at=NOW + timedelta(minutes=1),
        reply="550 5.1.1 user unknown",
    )
    assert [(s.address, s.reply) for s in ledger.suppressions()] == [
        ("b@example.org", "550 5.1.1 user unknown"),
        ("a@example.org", ""),
    ]


def test_unsuppress_mails_the_address_again(ledger: Ledger) -> None:
    ledger.suppress("a@example.org", reason="x", source="unsubscribe", at=NOW)
    assert ledger.unsuppress("A@example.org")
    assert not ledger.unsuppress("a@example.org")
    assert ledger.suppressed_addresses() == frozenset()


def test_a_decline_is_kept_once_undone_and_made_again(ledger: Ledger) -> None:
    day = START.date()
    assert ledger.decline("2023-03-01", " P1@Example.org ", day, NOW)
    assert not ledger.decline("2023-03-01", "p1@example.org", day, NOW + timedelta(hours=1))
    (first,) = ledger.declines()
    assert (first.session_id, first.recipient, first.day) == ("2023-03-01", "p1@example.org", day)
    assert (first.declined_at, first.undone_at) == (NOW, None)  # the first date is kept
    later = NOW + timedelta(hours=2)
    assert ledger.undo_decline("2023-03-01", "p1@example.org", later)
    assert not ledger.undo_decline("2023-03-01", "p1@example.org", later)
    assert not ledger.undo_decline("2023-04-05", "p1@example.org", later)
    (undone,) = ledger.declines()
    assert undone.undone_at == later and undone.changed_at == later
    again = NOW + timedelta(hours=3)
    assert ledger.decline("2023-03-01", "p1@example.org", day, again)
    (made_again,) = ledger.declines()
    assert (made_again.declined_at, made_again.undone_at) == (again, None)
    # The session moved to another day since: declining the new date counts as new.
    moved = day + timedelta(days=7)
    assert ledger.decline("2023-03-01", "p1@example.org", moved, again)
    assert next(iter(ledger.declines())).day == moved


def test_declines_written_here_count_as_outside_the_delivery_pass(
    ledger_target: str | Path,
) -> None:
    # A decline through this worker's own HTTP face owes a notice: the notice plan a
    # pass kept, made before it, is stale.
    with Ledger(ledger_target, worker="one") as ledger:
        before = ledger.outside_writes()
        ledger.decline("2023-03-01", "p1@example.org", START.date(), NOW)
        if ledger.shared:
            assert ledger.outside_writes() is None
            return
        assert ledger.outside_writes() != before
        marked = ledger.outside_writes()
        ledger.decline("2023-03-01", "p1@example.org", START.date(), NOW)  # nothing new
        assert ledger.outside_writes() == marked
        ledger.undo_decline("2023-03-01", "p1@example.org", NOW)
        assert ledger.outside_writes() != marked


def test_an_unknown_suppression_source_is_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="not one of"):
        ledger.suppress("a@example.org", reason="x", source="robot", at=NOW)


def test_a_ledger_of_the_first_schema_gains_the_suppressions_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.close()
    with Ledger(path) as ledger:
        assert ledger.suppress("a@example.org", reason="x", source="staff", at=NOW)
    with Ledger(path, readonly=True) as ledger:
        assert ledger.suppressed_addresses() == {"a@example.org"}


def test_a_worker_whose_lease_expired_loses_its_claims_to_a_live_one(
    ledger_target: str | Path,
) -> None:
    lease = timedelta(seconds=30)
    with Ledger(ledger_target, worker="dead") as dead, Ledger(ledger_target, worker="live") as live:
        Membership(dead).join("host-a", 1, NOW, lease)
        Membership(live).join("host-b", 2, NOW, lease)
        assert dead.claim([claim(1), claim(2)], NOW) == [claim(1), claim(2)]
        dead.record([Outcome(claim(2).key, DeliveryState.SENT, "250", NOW)], NOW)
        # Within the lease nothing moves; the heartbeat keeps it.
        assert live.adopt_claims(NOW + timedelta(seconds=29), only_expired=True) == 0
        assert Membership(live).renew(NOW + timedelta(seconds=29), lease, 0)
        later = NOW + timedelta(seconds=31)
        assert live.adopt_claims(later, only_expired=True) == 1
        assert [r.host for r in workers(live)] == ["host-b"]
        [adopted] = live.claim([claim(1)], later)
        assert adopted.message_id == "<m1.1d@irev.fr>"
        # The dead worker wakes: its row is gone, and it cannot take the claim back.
        assert not Membership(dead).renew(later, lease, 3)
        assert dead.claim([claim(1)], later) == []


def test_a_worker_frozen_inside_a_transaction_does_not_hold_up_adoption(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker stopped (SIGSTOP, a suspended VM) between two statements of a transaction
    # holds its locks until the server ends that transaction: without a limit, the
    # others' adoption of its claims waited for it forever.
    monkeypatch.setattr(PostgresDatabase, "IDLE_IN_TRANSACTION", 1.0)
    lease = timedelta(seconds=30)
    with (
        Ledger(postgres_url, worker="frozen") as frozen,
        Ledger(postgres_url, worker="live") as live,
    ):
        Membership(frozen).join("host-a", 1, NOW, lease)
        Membership(live).join("host-b", 2, NOW, lease)
        frozen.claim([claim(1)], NOW)
        inside, resume = threading.Event(), threading.Event()

        def stuck(execute: Any) -> None:
            execute("UPDATE deliveries SET updated_at = updated_at")  # its claims' row locks
            inside.set()
            resume.wait(30)

        adopted: list[int] = []
        freezing = threading.Thread(target=frozen.db.transaction, args=(stuck, WORKERS_LOCK))
        adopting = threading.Thread(
            target=lambda: adopted.append(
                live.adopt_claims(NOW + timedelta(seconds=31), only_expired=True)
            )
        )
        try:
            freezing.start()
            assert inside.wait(10)
            adopting.start()
            adopting.join(10)
            assert adopted == [1], "adoption waited on the frozen worker's transaction"
        finally:
            resume.set()
            freezing.join(30)
            adopting.join(30)


def test_a_clean_stop_hands_open_claims_to_the_others_at_once(ledger_target: str | Path) -> None:
    with Ledger(ledger_target, worker="a") as a, Ledger(ledger_target, worker="b") as b:
        Membership(a).join("h", 1, NOW, timedelta(seconds=30))
        a.claim([claim(1)], NOW)
        assert b.claim([claim(1)], NOW) == []
        Membership(a).leave(NOW)
        assert b.claim([claim(1)], NOW) == [claim(1)]
        assert workers(b) == []


def test_the_shared_budget_holds_the_rate_for_every_worker(ledger_target: str | Path) -> None:
    with Ledger(ledger_target, worker="a") as a, Ledger(ledger_target, worker="b") as b:
        for member in (a, b):
            Membership(member).join("host", 1, datetime.now(UTC), timedelta(minutes=5))
        limits = [(2, 60.0)]
        first, second = take_send(a, limits, 60), take_send(b, limits, 60)
        assert isinstance(first, int) and isinstance(second, int)
        assert take_send(a, limits, 60) == pytest.approx(0.01)  # two in flight: wait
        end_send(a, first)
        end_send(b, second)
        wait = take_send(b, limits, 60)  # two ended just now: a window to wait
        assert isinstance(wait, float) and 59 < wait <= 60


def test_a_dead_workers_unfinished_send_holds_the_budget_only_until_its_lease_ends(
    ledger_target: str | Path,
) -> None:
    with Ledger(ledger_target, worker="a") as a, Ledger(ledger_target, worker="b") as b:
        now = datetime.now(UTC)
        Membership(a).join("host", 1, now, timedelta(minutes=5))
        Membership(b).join("host", 2, now, timedelta(seconds=1))  # b dies: never renewed
        limits = [(1, 1.0)]
        assert isinstance(take_send(b, limits, 60), int)  # killed mid-send: never ended
        assert take_send(a, limits, 60) == pytest.approx(0.01)  # while b's lease runs
        Membership(b).join("host", 2, now, timedelta(seconds=-2))  # b's lease ran out
        wait = take_send(a, limits, 60)
        # Counted as ended when the lease did, not a whole 60 s deadline after it began.
        assert isinstance(wait, int) or wait <= 1.0


def test_copy_moves_a_sqlite_ledger_row_for_row(tmp_path: Path, postgres_url: str) -> None:
    with Ledger(tmp_path / "ledger.sqlite", worker="old") as source:
        source.claim([claim(n) for n in range(5)], NOW)
        source.record([Outcome(claim(0).key, DeliveryState.SENT, "250 ok", NOW)], NOW)
        source.suppress("gone@example.org", reason="bounce", source="bounce", at=NOW)
        source.decline("2023-03-01", "p1@example.org", START.date(), NOW)
        source.decline("2023-03-01", "p2@example.org", START.date(), NOW)
        source.undo_decline("2023-03-01", "p2@example.org", NOW + timedelta(hours=1))
        with Ledger(postgres_url, worker="copy") as target:
            copied = copy_ledger(source, target)
            assert copied["deliveries"] == 5 and copied["suppressions"] == 1
            assert copied["declines"] == 2
            assert target.rows() == source.rows()
            assert target.suppressed_addresses() == {"gone@example.org"}
            assert list(target.declines()) == list(source.declines())
            target.claim([claim(9)], NOW)  # new rows continue after the copied ids
            with pytest.raises(LedgerError, match="already holds"):
                copy_ledger(source, target)


def test_what_each_registrant_was_told_and_the_session_versions(ledger: Ledger) -> None:
    def facts(hour: int) -> Facts:
        return Facts(START.replace(hour=hour), START.replace(hour=hour + 2), "https://z/1")

    first, second = claim(1, "7d"), claim(1, "1d")
    for n, (c, hour) in enumerate(((first, 16), (second, 17))):
        at = NOW + timedelta(minutes=n)
        told = Claim(c.key, c.message_id, at, START, "2023-03-01", Told(facts(hour), n, at))
        ledger.claim([told], at)
        ledger.record([Outcome(c.key, DeliveryState.SENT, "250", at)], at)
    last = ledger.notice_view(["2023-03-01"], {}).told["2023-03-01"]["p1@example.org"]
    assert (last.facts, last.sequence) == (facts(17), 1)  # the latest mail's facts
    assert ledger.observe({"2023-03-01": "v1"}, NOW) == {"2023-03-01": ALWAYS}
    later = NOW + timedelta(hours=1)
    assert ledger.observe({"2023-03-01": "v1"}, later) == {"2023-03-01": ALWAYS}
    assert ledger.observe({"2023-03-01": "v2"}, later) == {"2023-03-01": later}


def test_a_ledger_of_an_older_schema_read_only_says_how_to_upgrade_it(tmp_path: Path) -> None:
    # After an upgrade of the package and before the service restarts, status, history,
    # plan and check read the old ledger: a clear message, not "no such column".
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.close()
    with pytest.raises(LedgerError, match=r"older release.*`reminder run` upgrades it"):
        Ledger(path, readonly=True)
    with Ledger(path):  # a writer upgrades it; readers are served again
        pass
    with Ledger(path, readonly=True) as ledger:
        assert ledger.suppressed_addresses() == frozenset()


def test_registrants_told_the_same_facts_share_one_value(ledger: Ledger) -> None:
    facts = Facts(START, START.replace(hour=19), "https://z/1")
    for n in (1, 2):
        c = claim(n, "1d")
        told = Claim(c.key, c.message_id, NOW, START, "2023-03-01", Told(facts, 0, NOW))
        ledger.claim([told], NOW)
        ledger.record([Outcome(c.key, DeliveryState.SENT, "250", NOW)], NOW)
    told_about = ledger.notice_view(["2023-03-01"], {}).told["2023-03-01"]
    one, two = told_about["p1@example.org"], told_about["p2@example.org"]
    assert one.facts == two.facts == facts
    assert one.facts is two.facts  # a million registrants told the same: one value


def test_another_process_s_writes_are_told_apart_from_its_own(ledger_target: str | Path) -> None:
    # What lets a worker keep a notice plan that owed nothing: SQLite tells whether any
    # other connection committed since; with PostgreSQL, other workers always may have.
    now = datetime.now(UTC)
    with (
        Ledger(ledger_target, worker="one") as ledger,
        Ledger(ledger_target, worker="two") as other,
    ):
        before = ledger.outside_writes()
        ledger.claim([claim(1)], now)
        if ledger.shared:
            assert before is None and ledger.outside_writes() is None
            return
        assert ledger.outside_writes() == before  # its own write
        other.claim([claim(2)], now)
        assert ledger.outside_writes() != before


def test_a_bounce_finds_its_delivery_by_message_id_without_an_index_on_them(
    ledger_target: str | Path,
) -> None:
    keys = [
        DeliveryKey("2023-03-01T17:00+01:00", "reminder", lead, f"p{n}@example.org")
        for n in range(3)
        for lead in ("7d", "1d")
    ]
    keys.append(DeliveryKey("2023-03-01T09:00+01:00", "reminder", "1d", "early@example.org"))
    ids = {key: message_id(b"k" * 32, key, "irev-elus-2023", "irev.fr") for key in keys}
    with Ledger(ledger_target, worker="w") as ledger:
        ledger.claim([Claim(k, ids[k], NOW, START) for k in keys], NOW)
        p1 = DeliveryKey("2023-03-01T17:00+01:00", "reminder", "1d", "p1@example.org")
        early = keys[-1]
        assert ledger.recipient_of(ids[p1], "P1@Example.org") == "p1@example.org"
        assert ledger.recipient_of(f"  {ids[p1]} ") == "p1@example.org"  # no address named
        assert ledger.recipient_of(ids[p1], "alias@elsewhere.org") == "p1@example.org"  # forwarded
        assert ledger.recipient_of(ids[early]) == "early@example.org"  # another session that day
        wrong_day = ids[p1].replace(".20230301.", ".20230302.")
        assert ledger.recipient_of(wrong_day) is None
        assert ledger.recipient_of("<someone-elses@example.com>") is None
        if ledger.shared:
            return
        indexes = {name for (name,) in ledger.db.execute("SELECT name FROM sqlite_master")}
        assert "deliveries_message_id" not in indexes  # its upkeep made claims dear


@pytest.fixture
def icu_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database whose text sorts by a language's rules (ICU), as many servers' do."""
    import psycopg

    base, _, _ = postgres_url.partition("?")
    name = f"t_icu_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'fr' LOCALE 'C.UTF-8'"
        )
        try:
            yield base.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_copy_into_a_database_that_sorts_text_otherwise_is_no_difference(
    tmp_path: Path, icu_postgres_url: str
) -> None:
    # Byte order puts '+' before '-'; the French collation puts '-' first.
    with Ledger(tmp_path / "ledger.sqlite", worker="old") as source:
        for address in ("a+b@example.org", "a-b@example.org"):
            source.suppress(address, reason="asked", source="staff", at=NOW)
        with Ledger(icu_postgres_url, worker="copy") as target:
            assert copy_ledger(source, target)["suppressions"] == 2
            assert target.suppressed_addresses() == source.suppressed_addresses()


def test_each_workers_in_flight_is_read_from_the_ledgers_claims(ledger_target: str | Path) -> None:
    with Ledger(ledger_target, worker="a") as a, Ledger(ledger_target, worker="b") as b:
        for member in (a, b):
            Membership(member).join("host", 1, NOW, timedelta(minutes=5))
        a.claim([claim(n) for n in range(3)], NOW)
        Membership(a).renew(NOW, timedelta(minutes=5), in_flight=28)  # a stale count
        a.record([Outcome(claim(0).key, DeliveryState.SENT, "250", NOW)], NOW)
        assert {w.id: w.in_flight for w in workers(b)} == {"a": 2, "b": 0}


@pytest.mark.parametrize(
    ("where", "said"),
    [
        (POSTGRES.rsplit("/", 1)[0] + "/no_such_database_here", "the database does not exist"),
        ("postgresql://root@127.0.0.1:{closed}/test", "connection refused"),
    ],
)
def test_a_database_that_cannot_be_used_says_why_at_once(where: str, said: str) -> None:
    url = where.format(closed=free_port())
    with pytest.raises(LedgerError, match=said):
        Ledger(url, patience=0)


async def test_outcomes_queued_together_commit_together_and_each_caller_hears_its_own(
    tmp_path: Path,
) -> None:
    thread: LedgerThread[Ledger] = LedgerThread()
    ledger = await thread.open(lambda: Ledger(tmp_path / "ledger.sqlite", worker="w"))
    try:
        await thread.call(ledger.claim, [claim(n) for n in range(6)], NOW)
        said: list[str] = []
        await thread.call(ledger.db.db.set_trace_callback, said.append)  # type: ignore[attr-defined]
        hold = asyncio.ensure_future(thread.call(time.sleep, 0.2))  # results queue behind
        recorded = [
            asyncio.ensure_future(
                thread.record(Outcome(claim(n).key, DeliveryState.SENT, "250", NOW))
            )
            for n in range(6)
        ]
        await hold
        await asyncio.gather(*recorded)
        await thread.call(ledger.db.db.set_trace_callback, None)  # type: ignore[attr-defined]
        # One transaction for the six, each connection answered after its commit.
        assert sum(s.startswith("BEGIN") for s in said) == 1
        counts = await thread.call(ledger.counts)
        assert counts[("2023-03-01T17:00+01:00", "reminder", "1d")][DeliveryState.SENT] == 6
    finally:
        await thread.close(Ledger.close)
