"""Change notices end to end: a running worker, a real SMTP server, staff editing config.toml."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import icalendar
import pytest
import time_machine
import vobject

from reminder.cli import main
from reminder.core.errors import LedgerError
from reminder.core.model import Session
from reminder.core.notices import ALWAYS
from reminder.inputs.config import load_config
from reminder.service.worker import Worker
from reminder.storage import backend
from reminder.storage.ledger import Ledger
from tests.support.notices import DELAY, UID
from tests.support.project import Project, person, until
from tests.support.smtp import Server
from tests.support.worker import (
    delivered,
    finish,
    process_config,
    reach,
    running,
    start,
    two_sessions,
    use_server,
)

PARIS = ZoneInfo("Europe/Paris")
pytestmark = pytest.mark.timeout(90)


def parsed(server: Server, since: int = 0) -> list[EmailMessage]:
    return [
        cast(EmailMessage, message_from_bytes(m.data, policy=policy.default))
        for m in server.handler.messages[since:]
    ]


def calendar_of(message: EmailMessage) -> tuple[str, str, int, str, datetime]:
    """(METHOD, UID, SEQUENCE, STATUS, DTSTART) read by icalendar and checked by vobject."""
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    calendar = icalendar.Calendar.from_ical(data)
    event = calendar.walk("VEVENT")[0]
    found = (
        str(calendar["METHOD"]),
        str(event["UID"]),
        int(event["SEQUENCE"]),
        str(event["STATUS"]),
        event.decoded("DTSTART"),
    )
    other = vobject.readOne(data.decode())  # a second, independent parser
    assert other.method.value == found[0]
    assert other.vevent.uid.value == found[1]
    assert int(other.vevent.sequence.value) == found[2]
    assert other.vevent.status.value == found[3]
    assert other.vevent.dtstart.value == found[4]
    assert part.get_param("method") == found[0]  # the MIME parameter matches METHOD
    return found


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def read_ledger(config: Path) -> Ledger:
    """The ledger the project's config names (its SQLite file, or a PostgreSQL schema)."""
    return Ledger(backend.ledger_target(load_config(config)), readonly=True)


def since(config: Path, session: str = "2023-03-01") -> datetime:
    with read_ledger(config) as ledger:
        return ledger.versions().get(session, ("", ALWAYS))[1]


async def reloaded(worker: Worker, check: Callable[[Worker], object]) -> datetime:
    """Wait for the worker to serve the edited files and record the change; return since."""
    config = worker.config_path
    edited = datetime.now(UTC) - timedelta(seconds=2)  # the (travelling) clock of the edit
    await until(lambda: bool(check(worker)))
    await until(lambda: since(config) >= edited)
    await until(lambda: bool(worker.scheduler.get_jobs()))
    return since(config)


def kinds(project: Project) -> Counter[tuple[str, str]]:
    with read_ledger(project.config) as ledger:
        return Counter((row.kind, row.state) for row in ledger.rows())


@asynccontextmanager
async def after_the_7d(
    project: Project, server: Server, people: int, attempts: int = 4
) -> AsyncIterator[tuple[time_machine.Coordinates, Worker]]:
    """A worker that has just sent the 7d reminder of 1 March to `people` registrants."""
    use_server(project, server)
    project.edit('security = "none"', f'security = "none"\nattempts = {attempts}')
    two_sessions(project)
    project.registrants([person(n) for n in range(people)])
    with time_machine.travel(
        datetime(2023, 2, 22, 17, 0, 30, tzinfo=PARIS), tick=True
    ) as traveller:
        async with running(project) as worker:
            await until(lambda: len(server.handler.messages) == people)
            yield traveller, worker


def march(worker: Worker) -> Session:
    return next(s for s in worker.snapshot.sessions if s.id == "2023-03-01")


async def test_a_cancellation_after_the_7d_reminder_reaches_who_got_it_once_and_ends_it(
    project: Project, smtp_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(0), person(1), person(2, sessions="2023-04-05")])
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            await reach(traveller, worker, datetime(2023, 2, 22, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 2)
            traveller.move_to(datetime(2023, 2, 24, 10, tzinfo=PARIS))
            project.edit(
                "date = 2023-03-01\n",
                'date = 2023-03-01\ncancelled = true\ncancelled_reason = "Grève des transports"\n',
            )
            changed = await reloaded(worker, lambda w: march(w).cancelled)
            assert len(smtp_server.handler.messages) == 2  # settling: nothing yet
            await reach(traveller, worker, changed + DELAY)
            await until(lambda: len(smtp_server.handler.messages) == 4)
            for instant in ((2023, 2, 28, 17), (2023, 3, 1, 16), (2023, 3, 1, 18)):
                await reach(traveller, worker, datetime(*instant, tzinfo=PARIS))
                await worker.wake("sweep")
            assert len(smtp_server.handler.messages) == 4
    notices = parsed(smtp_server, 2)
    assert sorted(m["To"].addresses[0].addr_spec for m in notices) == [
        "alex0@example.org",
        "alex1@example.org",
    ]
    for message in notices:
        assert message["Subject"] == ("Annulé – la séance du mercredi 1er mars n’aura pas lieu")
        text = text_of(message)
        assert "La séance du mercredi 1er mars 2023 est annulée\u00a0:" in text
        assert "Motif\u00a0: Grève des transports" in text
        method, uid, sequence, status, start = calendar_of(message)
        assert (method, uid, sequence, status) == ("CANCEL", UID, 1, "CANCELLED")
        assert start == datetime(2023, 3, 1, 17, tzinfo=PARIS)  # the entry they hold
    assert set(delivered(smtp_server).values()) == {1}
    assert kinds(project) == {("reminder", "sent"): 2, ("cancellation", "sent"): 2}
    assert main(["--config", str(project.config), "status", "--now", "2023-02-24T11:00"]) == 0
    shown = capsys.readouterr().out
    assert "change notices owed:\n  none" in shown
    assert "2023-03-01 17:00  cancellation v1  2     0       0           0" in shown


async def test_a_move_after_the_1d_reminder_sends_one_update_then_the_new_date_reminders(
    project: Project, smtp_server: Server, ledger_target: str | Path
) -> None:
    # On either ledger: on PostgreSQL the notice plan reads its told counts the same way.
    if isinstance(ledger_target, str):
        project.append(f'[ledger]\nurl = "{ledger_target}"')
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(0), person(1)])
    with time_machine.travel(datetime(2023, 2, 28, 16, 59, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            await until(lambda: len(smtp_server.handler.messages) == 2)  # 7d, late
            await until(lambda: bool(worker.scheduler.get_jobs()))
            await reach(traveller, worker, datetime(2023, 2, 28, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 4)  # 1d
            traveller.move_to(datetime(2023, 2, 28, 18, tzinfo=PARIS))
            project.edit("date = 2023-03-01\n", "date = 2023-03-01\nmoved_to = 2023-03-15\n")
            changed = await reloaded(worker, lambda w: march(w).moved)
            await reach(traveller, worker, changed + DELAY)
            await until(lambda: len(smtp_server.handler.messages) == 6)
            for number, instant in enumerate(
                ((2023, 3, 8, 17), (2023, 3, 14, 17), (2023, 3, 15, 16)), start=1
            ):
                await reach(traveller, worker, datetime(*instant, tzinfo=PARIS))
                await until(lambda n=number: len(smtp_server.handler.messages) == 6 + 2 * n)
            await worker.wake("sweep")
            assert len(smtp_server.handler.messages) == 12
    updates = parsed(smtp_server, 4)[:2]
    for message in updates:
        assert message["Subject"] == (
            "Modification – séance du mercredi 1er mars\u00a0: nouvelle date, "
            "mercredi 15 mars à 17h00"
        )
        text = text_of(message)
        assert (
            "Séance déplacée du mercredi 1er mars 2023 à 17h00 au mercredi 15 mars 2023 à 17h00."
            in text
        )
        assert "Nouvelle date\u00a0: mercredi 15 mars 2023" in text
        method, uid, sequence, status, start = calendar_of(message)
        assert (method, uid, sequence, status) == ("REQUEST", UID, 1, "CONFIRMED")
        assert start == datetime(2023, 3, 15, 17, tzinfo=PARIS)
    for message in parsed(smtp_server, 6):
        assert "séance déplacée du mercredi 1er mars 2023 à 17h00 au mercredi 15 mars" in (
            text_of(message)
        )
        assert calendar_of(message)[1:3] == (UID, 1)  # later reminders carry the new SEQUENCE
    assert set(delivered(smtp_server).values()) == {1}
    assert kinds(project) == {("reminder", "sent"): 10, ("update", "sent"): 2}


async def test_a_new_link_sends_one_update_with_old_and_new(
    project: Project, smtp_server: Server
) -> None:
    async with after_the_7d(project, smtp_server, people=1) as (traveller, worker):
        project.edit(
            "date = 2023-03-01\n", 'date = 2023-03-01\njoin_url = "https://zoom.us/j/42"\n'
        )
        changed = await reloaded(worker, lambda w: march(w).join_url)
        await reach(traveller, worker, changed + DELAY)
        await until(lambda: len(smtp_server.handler.messages) == 2)
        await worker.wake("sweep")
    update = parsed(smtp_server, 1)[0]
    assert update["Subject"] == (
        "Modification – séance du mercredi 1er mars\u00a0: nouveau lien de connexion"
    )
    text = text_of(update)
    assert "Nouveau lien\u00a0: https://zoom.us/j/42" in text
    assert "https://zoom.us/j/00000000000" in text
    assert calendar_of(update)[:4] == ("REQUEST", UID, 1, "CONFIRMED")
    assert len(smtp_server.handler.messages) == 2


async def test_a_change_undone_within_the_notice_delay_sends_nothing(
    project: Project, smtp_server: Server
) -> None:
    async with after_the_7d(project, smtp_server, people=2) as (traveller, worker):
        original = project.config.read_text(encoding="utf-8")
        project.edit("date = 2023-03-01\n", "date = 2023-03-01\nmoved_to = 2023-03-02\n")
        await reloaded(worker, lambda w: march(w).moved)
        traveller.shift(timedelta(minutes=4))
        project.config.write_text(original, encoding="utf-8")  # the typo is corrected
        await reloaded(worker, lambda w: not march(w).moved)
        await reach(traveller, worker, datetime(2023, 2, 22, 18, tzinfo=PARIS))
        await worker.wake("sweep")
        assert len(smtp_server.handler.messages) == 2
        await reach(traveller, worker, datetime(2023, 2, 28, 17, tzinfo=PARIS))
        await until(lambda: len(smtp_server.handler.messages) == 4)  # the 1d, as planned
    assert kinds(project) == {("reminder", "sent"): 4}
    for message in parsed(smtp_server):
        assert calendar_of(message)[2] == 0  # nothing changed: the entry keeps SEQUENCE 0


async def test_two_changes_in_a_row_send_one_notice_with_the_final_facts_then_a_third_one_more(
    project: Project, smtp_server: Server
) -> None:
    async with after_the_7d(project, smtp_server, people=1) as (traveller, worker):
        project.edit("date = 2023-03-01\n", "date = 2023-03-01\nmoved_to = 2023-03-08\n")
        await reloaded(worker, lambda w: march(w).moved)
        traveller.shift(timedelta(minutes=3))
        project.edit("moved_to = 2023-03-08\n", 'moved_to = 2023-03-08\nstart = "18:00"\n')
        changed = await reloaded(worker, lambda w: march(w).start.hour == 18)
        await reach(traveller, worker, changed + DELAY)
        await until(lambda: len(smtp_server.handler.messages) == 2)
        await worker.wake("sweep")
        assert len(smtp_server.handler.messages) == 2
        # After that notice went out, another change owes another notice.
        project.edit("date = 2023-03-01\n", 'date = 2023-03-01\njoin_url = "https://zoom.us/j/7"\n')
        changed = await reloaded(worker, lambda w: march(w).join_url)
        await reach(traveller, worker, changed + DELAY)
        await until(lambda: len(smtp_server.handler.messages) == 3)
    first, second = parsed(smtp_server, 1)
    assert "mercredi 8 mars à 18h00" in first["Subject"]
    assert "Séance déplacée du mercredi 1er mars 2023 à 17h00 au mercredi 8 mars 2023 à 18h00" in (
        text_of(first)
    )
    assert calendar_of(first)[2:] == (1, "CONFIRMED", datetime(2023, 3, 8, 18, tzinfo=PARIS))
    assert "nouveau lien" in second["Subject"]
    assert calendar_of(second)[2] == 2
    assert kinds(project) == {("reminder", "sent"): 1, ("update", "sent"): 2}


async def test_kill_9_during_a_cancellation_batch_resends_only_what_was_in_flight(
    project: Project, smtp_server: Server
) -> None:
    process_config(project, smtp_server, people=400)
    first = start(project)
    try:
        await until(lambda: _sent(project, "reminder") == 400, within=60)
    finally:
        finish(first)
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("extra = true\n", "extra = true\ncancelled = true\n").replace(
            'sweep_interval = "1h"', 'sweep_interval = "1h"\nnotice_delay = "0s"'
        ),
        encoding="utf-8",
    )
    smtp_server.handler.data_delay = 0.004
    reminders = len(smtp_server.handler.messages)
    second = start(project)
    try:
        await until(lambda: len(smtp_server.handler.messages) >= reminders + 100, within=60)
    finally:
        finish(second, signal.SIGKILL)
    assert len(smtp_server.handler.messages) < reminders + 400, "the batch ended before the kill"
    third = start(project)
    try:
        await until(lambda: _sent(project, "cancellation") == 400, within=60)
    finally:
        status, _ = finish(third)
    assert status == 0
    cancellations = Counter(
        (m.recipients[0], str(message_from_bytes(m.data)["Message-ID"]))
        for m in smtp_server.handler.messages[reminders:]
    )
    by_recipient = Counter(recipient for recipient, _ in cancellations)
    assert set(by_recipient) == {f"alex{n}@example.org" for n in range(400)}
    assert set(by_recipient.values()) == {1}, "a resent cancellation carried a new Message-ID"
    assert sum(count - 1 for count in cancellations.values()) <= 4 + 64
    assert _sent(project, "reminder") == 400  # and no reminder went out again


def _sent(project: Project, kind: str) -> int:
    path = project.root / "state" / "ledger.sqlite"
    if not path.exists():
        return 0
    try:
        with Ledger(path, readonly=True) as ledger:
            return sum(1 for row in ledger.rows() if row.kind == kind and row.state == "sent")
    except (sqlite3.OperationalError, LedgerError):  # the worker is still creating it
        return 0


async def test_a_notice_refused_for_now_is_retried_at_its_own_instant(
    project: Project, smtp_server: Server
) -> None:
    # One try a pass: the retry is the ledger's, at its instant.
    async with after_the_7d(project, smtp_server, 1, attempts=1) as (traveller, worker):
        smtp_server.handler.rcpt_replies["alex0@example.org"] = ["451 4.3.0 try again later"]
        project.edit("date = 2023-03-01\n", "date = 2023-03-01\ncancelled = true\n")
        changed = await reloaded(worker, lambda w: march(w).cancelled)
        await reach(traveller, worker, changed + DELAY)

        def attempts() -> int:
            with Ledger(project.root / "state" / "ledger.sqlite", readonly=True) as ledger:
                rows = [r for r in ledger.rows() if r.kind == "cancellation"]
                return rows[0].attempts if rows and rows[0].state == "claimed" else 0

        def soonest() -> datetime:
            return min(job.next_run_time for job in worker.scheduler.get_jobs())

        # Refused with 451 and kept claimed; the outcome is durable before the pass ends,
        # so wait for the pass to schedule the retry too.
        await until(lambda: attempts() == 1 and soonest() < changed + timedelta(hours=1))
        retry_at = soonest()
        # About 5 s after the refusal (the first retry's back-off), not at the 5-minute sweep.
        assert (
            changed + DELAY + timedelta(seconds=3)
            < retry_at
            < changed + DELAY + timedelta(seconds=30)
        )
        await reach(traveller, worker, retry_at)
        await until(lambda: len(smtp_server.handler.messages) == 2)
    assert kinds(project) == {("reminder", "sent"): 1, ("cancellation", "sent"): 1}
