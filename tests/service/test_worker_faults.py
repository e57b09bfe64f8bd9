"""The service when things go wrong: instants falling inside a pass, a refused login,
an export cut short, a state folder that disappears or fills up."""

from __future__ import annotations

import logging
import re
import shutil
import signal
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
import time_machine

from reminder.cli import main
from reminder.core.plan import deadline
from reminder.storage.ledger import Claim, Ledger
from tests.support.project import Project, person, until
from tests.support.smtp import Server
from tests.support.worker import (
    PARIS,
    finish,
    process_config,
    running,
    sent_in_ledger,
    start,
    statuses,
    two_sessions,
    use_server,
)

pytestmark = pytest.mark.timeout(90)
LEDGER = Path("state") / "ledger.sqlite"


async def test_an_instant_passing_during_a_first_pass_held_by_retries_is_served_at_its_end(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(project, smtp_server)
    project.edit("connections = 4", "connections = 4\nattempts = 5\nretry_base = 0.4")
    two_sessions(project)
    # Its 7-day reminder is late at start; alex0's server answers 451 four times, so the
    # first pass lasts at least 0.5 × (0.4 + 0.8 + 1.6 + 3.2) = 3 s: past 17:00, when March's
    # 7d falls due, even when a loaded machine takes up to 2 s to start the worker.
    project.append('[[sessions]]\ndate = 2023-02-24\nextra = true\ntopic = "Séance ajoutée"')
    project.registrants([person(0), person(1)])
    smtp_server.handler.rcpt_replies["alex0@example.org"] = ["451 4.7.1 Try again later"] * 4
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 22, 16, 59, 58, tzinfo=PARIS), tick=True):
        async with running(project):
            # The sweep is 5 minutes away: only the end of the first pass can send these.
            await until(lambda: len(smtp_server.handler.messages) == 4, within=15)
            assert datetime.now(PARIS) < datetime(2023, 2, 22, 17, 1, tzinfo=PARIS)
    assert "wake-up (due during the last pass)" in caplog.text
    assert statuses(project) == {("7d", "sent"): 4}


async def test_a_resend_carries_the_message_id_recorded_at_the_claim(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(0)])
    snapshot = project.snapshot()
    slot = next(s for s in snapshot.slots if s.session.id == "2023-03-01" and str(s.lead) == "1d")
    claimed = datetime(2023, 2, 28, 17, tzinfo=PARIS)
    with Ledger(project.root / LEDGER, worker="a crashed worker") as ledger:
        ledger.claim(
            [
                Claim(
                    slot.delivery_key("alex0@example.org"),
                    "<1d-claimed-before@irev.fr>",
                    slot.due_at,
                    deadline(slot.session, snapshot.cutoff),
                )
            ],
            claimed,
        )
    # Between the crash and the restart, staff change the cycle id and the sender's domain,
    # and ops rotate the key that marks Message-IDs.
    project.edit('id = "irev-elus-2023"', 'id = "irev-elus-2023-bis"')
    monkeypatch.setenv("REMINDER_BOUNCES__KEY", "a-key-rotated-since-the-claim-0123456789")
    project.edit('address = "contact@irev.fr"', 'address = "contact@irev.example"')
    with time_machine.travel(claimed + timedelta(minutes=20), tick=True):
        async with running(project):
            await until(lambda: len(smtp_server.handler.messages) == 1)
    message = message_from_bytes(smtp_server.handler.messages[0].data)
    assert message["Message-ID"] == "<1d-claimed-before@irev.fr>"
    assert "contact@irev.example" in str(message["From"])


def use_auth_server(project: Project, server: Server) -> None:
    assert server.ca_file is not None
    project.edit(
        "connections = 4\nmax_per_minute = 30",
        f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "starttls"\n'
        f'ca_file = "{server.ca_file}"\nusername = "cycle"\nconnections = 2',
    )


async def test_a_refused_login_holds_the_claims_visibly_and_its_fix_sends_them_at_once(
    project: Project,
    starttls_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_auth_server(project, starttls_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(5)])
    monkeypatch.setenv("REMINDER_SMTP__PASSWORD", "wrong-secret")
    config = ["--config", str(project.config)]
    with time_machine.travel(datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS), tick=True):
        async with running(project) as worker:
            await until(lambda: worker._paused is not None)
            with Ledger(project.root / LEDGER, readonly=True) as ledger:
                waiting = ledger.faults()
            assert len(waiting) == 5
            assert all("535" in row.fault for row in waiting)
            capsys.readouterr()
            assert main(["status", *config]) == 1
            shown = capsys.readouterr().out
            assert "5 waiting on a configuration fault" in shown
            assert "535" in shown
            assert main(["history", *config]) == 1
            shown = capsys.readouterr().out
            assert "waiting" in shown and "configuration fault: 535" in shown
            monkeypatch.setenv("REMINDER_SMTP__PASSWORD", "s3cret")
            await worker.reload("SIGHUP")
            await until(lambda: len(starttls_server.handler.messages) == 5, within=10)
    assert statuses(project) == {("1d", "sent"): 5, ("7d", "superseded"): 5}
    with Ledger(project.root / LEDGER, readonly=True) as ledger:
        assert ledger.faults() == []


async def test_an_export_that_drops_most_registrants_keeps_the_last_good_list(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(5)])
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 27, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            project.registrants([])  # the header row only
            await until(lambda: "would be removed" in caplog.text)
            assert "5 of 5 registrants would be removed" in caplog.text
            assert "accept it with SIGHUP" in caplog.text
            assert len(worker.snapshot.roster.registrants) == 5
            # The start pass sent the late 7d reminders; the 1d one goes to the last good list.
            before = len(smtp_server.handler.messages)
            traveller.move_to(datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS))
            await worker.wake("sweep")
            await until(lambda: len(smtp_server.handler.messages) == before + 5)
            await worker.reload("SIGHUP")  # the file unchanged: staff accept it
            assert worker.snapshot.roster.registrants == ()
            assert "5 of 5 removed, accepted by SIGHUP" in caplog.text


async def test_a_full_disk_is_one_clear_error_naming_the_ledger(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(300)])  # claims that need new pages
    caplog.set_level(logging.INFO)
    with time_machine.travel(datetime(2023, 2, 28, 16, 0, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            await until(lambda: smtp_server.handler.messages != [] and not worker._busy.locked())
            db = worker.ledger.db
            pages = await worker.thread.call(lambda: db.execute("PRAGMA page_count").fetchone()[0])
            # SQLite's own "database or disk is full", without filling a real disk.
            await worker.thread.call(db.execute, f"PRAGMA max_page_count = {pages}")
            traveller.move_to(datetime(2023, 2, 28, 17, 0, 1, tzinfo=PARIS))
            await worker.wake("sweep")
            await worker.wake("sweep")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert f"the ledger {project.root / LEDGER} cannot be written" in errors[0]
    assert "database or disk is full" in errors[0]
    assert "no transaction is active" not in caplog.text
    assert "never retrieved" not in caplog.text


async def test_removing_the_state_folder_stops_the_worker_with_a_clear_error(
    project: Project, smtp_server: Server
) -> None:
    process_config(project, smtp_server, people=1)
    worker = start(project)
    try:
        await until(lambda: sent_in_ledger(project) == 1, within=30)
        shutil.rmtree(project.root / "state")
        status, log = finish(worker, how=None)  # it stops by itself
    finally:
        if worker.poll() is None:
            finish(worker, signal.SIGKILL)
    assert status == 1
    assert "the state folder changed under the running worker" in log
    assert "worker.lock was removed" in log
    assert "Traceback" not in log


def test_an_unusable_state_folder_is_named_at_start(project: Project) -> None:
    (project.root / "blocked").write_text("a file where the state folder should be")
    project.edit('state = "state"', 'state = "blocked/state"')
    worker = start(project)
    status, log = finish(worker, how=None)
    assert status == 1
    assert "the state folder cannot be used" in log
    assert "blocked/state" in log
    assert "Not a directory" in log
    assert "Traceback" not in log


async def test_ctrl_c_drains_and_exits_130_with_times_in_the_cycle_zone(
    project: Project, smtp_server: Server
) -> None:
    process_config(project, smtp_server, people=3)
    worker = start(project)
    await until(lambda: sent_in_ledger(project) == 3, within=30)
    status, log = finish(worker, signal.SIGINT)
    assert status == 130
    first = log.splitlines()[0]
    offset = datetime.now(PARIS).strftime("%z")
    zone = re.escape(f"{offset[:3]}:{offset[3:]}")
    assert re.match(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d{zone} INFO ", first), first
    assert log.splitlines()[-1].endswith("stopped: sent 3 since start; left for the next start: 0")


async def test_a_relay_that_refused_for_a_moment_gets_the_reminder_seconds_later(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # A retry waited five minutes whatever the fault: a relay busy for ten seconds held a
    # reminder due now for five minutes. The first retry between passes comes after about
    # five seconds, and the wait doubles with every try recorded.
    use_server(project, smtp_server)
    project.edit("connections = 4", "connections = 4\nattempts = 1")
    two_sessions(project)
    project.registrants([person(0)])
    smtp_server.handler.rcpt_replies["alex0@example.org"] = ["451 4.7.1 Try again later"]
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 22, 17, 0, 1, tzinfo=PARIS), tick=True):
        async with running(project):
            await until(lambda: "will retry" in caplog.text)
            refused = datetime.now(PARIS)
            await until(lambda: len(smtp_server.handler.messages) == 1, within=10)
            assert datetime.now(PARIS) - refused < timedelta(seconds=8)
    assert statuses(project) == {("7d", "sent"): 1}
    # Every other time in the log is Paris time with its offset; a bare UTC clock time
    # here told ops the retry was an hour earlier than it was.
    assert re.search(
        r"will retry 7d reminder for a\*\*\*@example\.org at 2023-02-22T17:0\d:\d\d\+01:00",
        caplog.text,
    ), caplog.text
