"""Bounce reports read from a real Dovecot IMAP server (and a Maildir), matched by Message-ID:
hard bounces are never mailed again; everything else is reported, nothing is lost."""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reminder.cli import main
from reminder.core.model import DeliveryKey
from reminder.mail.dsn import parse_report
from reminder.service.worker import Worker
from reminder.storage.ledger import Claim, Ledger, Outcome, Status
from tests.support.imap import PASSWORD, USER, Dovecot, dovecot_server
from tests.support.project import DATA, Project, until

REPORTS = DATA / "bounces"
NOW = datetime(2023, 2, 22, 16, tzinfo=UTC)
SENT = {  # the Message-IDs the fictional reports quote
    "a1": "marie.leroy@example.org",
    "a2": "paul.henry@example.org",
    "a3": "ines.garnier@example.org",
    "a4": "lucie.moreau@example.org",
    "a5": "omar.benali@example.org",
}
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with dovecot_server() as server:
        yield server


def sent_ledger(project: Project) -> Path:
    """A ledger in which our 7-day reminders went out to the people the reports name."""
    path = project.root / "state" / "ledger.sqlite"
    with Ledger(path, worker="test") as ledger:
        claims = [
            Claim(
                DeliveryKey("2023-03-01T17:00+01:00", "reminder", "7d", address),
                f"<irev-elus-2023.20230301.reminder.7d.{tag}@irev.fr>",
                NOW,
                datetime(2023, 3, 1, 16, tzinfo=UTC),
            )
            for tag, address in SENT.items()
        ]
        ledger.claim(claims, NOW)
        ledger.record([Outcome(c.key, Status.SENT, "250 OK", NOW) for c in claims], NOW)
    return path


def use_imap(
    project: Project, server: Dovecot, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.append(
        f'[bounces]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "tls"\n'
        f'ca_file = "{server.ca_file}"\nuser = "{USER}"\nfolder = "{folder}"\ninterval = "1s"'
    )
    monkeypatch.setenv("REMINDER_BOUNCES__PASSWORD", PASSWORD)


def reports() -> list[bytes]:
    return [path.read_bytes() for path in sorted(REPORTS.glob("*.eml"))]


def suppressed(path: Path) -> dict[str, str]:
    with Ledger(path, readonly=True) as ledger:
        return {s.address: s.reply for s in ledger.suppressions()}


def test_bounce_reports_from_imap_suppress_the_mailboxes_that_do_not_exist(
    project: Project,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger = sent_ledger(project)
    dovecot.deliver("Rapports de non-remise", *reports())
    use_imap(project, dovecot, "Rapports de non-remise", monkeypatch)
    assert main(["--config", str(project.config), "bounces"]) == 0
    out = capsys.readouterr().out
    found = suppressed(ledger)
    # RFC 3464 (Postfix), Microsoft 365's text form (5.1.10), Gmail's text form (5.1.1).
    assert set(found) == {
        "marie.leroy@example.org",
        "paul.henry@example.org",
        "ines.garnier@example.org",
    }
    assert found["paul.henry@example.org"].startswith("550 5.1.10 RESOLVER.ADR.RecipientNotFound")
    assert "6 bounce report(s) read, 1 other message(s) left alone; 3 address(es) suppressed" in out
    assert "not suppressed l***@example.org: 550 5.7.1 Message rejected as spam" in out
    assert "unmatched s***@example.org: <a-newsletter-sent-by-a-colleague@irev.fr>" in out
    assert "1 delay notice(s)" in out
    assert PASSWORD not in out
    # Reports are marked read; the human reply stays unread for the staff who share the box.
    assert dovecot.unseen("Rapports de non-remise") == 1
    assert main(["--config", str(project.config), "bounces"]) == 0
    assert "0 bounce report(s) read, 1 other message(s)" in capsys.readouterr().out


def test_a_missing_imap_folder_is_named(
    project: Project,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_imap(project, dovecot, "Nulle part", monkeypatch)
    assert main(["--config", str(project.config), "bounces"]) == 1
    assert "no folder 'Nulle part' (bounces.folder)" in capsys.readouterr().err


async def test_the_service_reads_bounces_and_never_mails_that_address_again(
    project: Project, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = sent_ledger(project)
    use_imap(project, dovecot, "Service", monkeypatch)
    dovecot.deliver("Service", (REPORTS / "postfix-5.1.1.eml").read_bytes())
    worker = Worker(project.config, poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: "marie.leroy@example.org" in suppressed(ledger) or task.done())
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert dovecot.unseen("Service") == 0
    # The plan leaves her out from the next pass on: see test_worker for the sending side.
    with Ledger(ledger, readonly=True) as opened:
        assert "marie.leroy@example.org" in opened.suppressed_addresses()


def test_a_local_maildir_works_the_same(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = sent_ledger(project)
    box = mailbox.Maildir(project.root / "bounces", create=True)
    for report in reports():
        box.add(mailbox.MaildirMessage(report))
    box.close()
    project.append('[bounces]\nmaildir = "bounces"')
    assert main(["--config", str(project.config), "bounces"]) == 0
    assert len(suppressed(ledger)) == 3
    assert main(["--config", str(project.config), "bounces"]) == 0
    assert "0 bounce report(s) read, 1 other" in capsys.readouterr().out.splitlines()[-1]


def test_a_maildir_that_is_not_one_is_named(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "bounces").mkdir()
    project.append('[bounces]\nmaildir = "bounces"')
    assert main(["--config", str(project.config), "bounces"]) == 1
    assert "is not a Maildir (it needs new/ and cur/ folders)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("report", "recipient", "status"),
    [
        ("postfix-5.1.1.eml", "marie.leroy@example.org", "5.1.1"),
        ("microsoft365-5.1.10.eml", "paul.henry@example.org", "5.1.10"),
        ("gmail-5.1.1.eml", "ines.garnier@example.org", "5.1.1"),
        ("policy-5.7.1.eml", "lucie.moreau@example.org", "5.7.1"),
    ],
)
def test_each_report_form_names_the_recipient_status_and_our_message(
    report: str, recipient: str, status: str
) -> None:
    [bounce] = parse_report((REPORTS / report).read_bytes())
    assert (bounce.recipient, bounce.status, bounce.permanent) == (recipient, status, True)
    assert bounce.message_id.startswith("<irev-elus-2023.20230301.reminder.7d.a")


def test_a_password_in_the_config_file_is_refused(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project.append('[bounces]\nhost = "imap.example.org"\nuser = "b"\npassword = "x"')
    assert main(["--config", str(project.config), "check"]) == 1
    assert "REMINDER_BOUNCES__PASSWORD" in capsys.readouterr().err


# Last: Dovecot delays the next logins from an address after a failed one.
def test_a_wrong_imap_password_is_a_clear_error_without_the_password(
    project: Project,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_imap(project, dovecot, "INBOX", monkeypatch)
    monkeypatch.setenv("REMINDER_BOUNCES__PASSWORD", "not-the-password")
    assert main(["--config", str(project.config), "bounces"]) == 1
    err = capsys.readouterr().err
    assert f"the bounce mailbox {USER}@127.0.0.1:{dovecot.port}" in err
    assert "check bounces.user and the password" in err and "not-the-password" not in err
