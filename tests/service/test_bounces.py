"""Bounce reports read from a real Dovecot IMAP server (and a Maildir), matched by Message-ID:
hard bounces are never mailed again; everything else is reported, nothing is lost."""

from __future__ import annotations

import asyncio
import hashlib
import mailbox
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reminder.cli import main
from reminder.core.mailing import DeliveryKey, DeliveryState
from reminder.core.message_ids import message_id
from reminder.mail.dsn import parse_report
from reminder.service.worker import Worker
from reminder.storage.ledger import Claim, Ledger, Outcome
from tests.support.imap import PASSWORD, USER, Dovecot, dovecot_server
from tests.support.project import DATA, Project, until

REPORTS = DATA / "bounces"
NOW = datetime(2023, 2, 22, 16, tzinfo=UTC)
CYCLE, SESSION = "irev-elus-2023", "2023-03-01T17:00+01:00"
# The key the reports' Message-IDs were marked with (as REMINDER_BOUNCES__KEY would be).
KEY = b"test-key-that-marks-message-ids-0123456789"
SENT = [  # whom our 7-day reminders went to; the reports name them
    f"{name}@example.org"
    for name in (
        "marie.leroy",
        "paul.henry",
        "ines.garnier",
        "lucie.moreau",
        "omar.benali",
        "jean.dupont",
        "nadia.roux",
        "hugo.lambert",
        "claire.petit",
    )
]
# Real reports of four mail systems, and what each proves of our mail.
GENUINE = {
    "postfix-5.1.1.eml": ("marie.leroy@example.org", "5.1.1"),
    "microsoft365-5.1.10.eml": ("paul.henry@example.org", "5.1.10"),  # its text form
    "microsoft365-ndr-5.1.10.eml": ("nadia.roux@example.org", "5.1.10"),
    "exchange-5.1.1.eml": ("jean.dupont@example.org", "5.1.1"),
    "gmail-5.1.1.eml": ("ines.garnier@example.org", "5.1.1"),  # its text form
    "gmail-dsn-5.1.1.eml": ("hugo.lambert@example.org", "5.1.1"),
    "policy-5.7.1.eml": ("lucie.moreau@example.org", "5.7.1"),
    "postfix-expired-4.2.2.eml": ("claire.petit@example.org", "4.2.2"),
}
pytestmark = pytest.mark.timeout(60)


def our_id(address: str, key: bytes = KEY) -> str:
    return message_id(key, DeliveryKey(SESSION, "reminder", "7d", address), CYCLE, "irev.fr")


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
                DeliveryKey(SESSION, "reminder", "7d", address),
                our_id(address),
                NOW,
                datetime(2023, 3, 1, 16, tzinfo=UTC),
            )
            for address in SENT
        ]
        ledger.claim(claims, NOW)
        ledger.record([Outcome(c.key, DeliveryState.SENT, "250 OK", NOW) for c in claims], NOW)
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
    """The genuine reports, a delay notice, a colleague's bounce and a person's reply."""
    names = [*GENUINE, "delayed-4.4.7.eml", "not-ours-5.1.1.eml", "human-reply.eml"]
    return [(REPORTS / name).read_bytes() for name in names]


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
    # RFC 3464 (Postfix, Microsoft 365, Exchange, Gmail) and the text forms of Microsoft
    # 365 and Gmail: the mailboxes that do not exist.
    assert set(found) == {
        address for address, status in GENUINE.values() if status.startswith("5.1.")
    }
    assert found["paul.henry@example.org"].startswith("550 5.1.10 RESOLVER.ADR.RecipientNotFound")
    assert (
        "10 bounce report(s) read, 1 other message(s) left alone; 6 address(es) suppressed" in out
    )
    assert "2 other failure(s), 1 unmatched, 0 suspicious, 1 delay notice(s)" in out
    assert "not suppressed l***@example.org: 550 5.7.1 Message rejected as spam" in out
    # A soft failure the server stopped retrying is listed, not suppressed.
    assert "not suppressed c***@example.org: gave up after retrying: 452 4.2.2" in out
    assert "unmatched s***@example.org: <a-newsletter-sent-by-a-colleague@irev.fr>" in out
    assert PASSWORD not in out
    # Reports are marked read; the human reply stays unread for the staff who share the box.
    assert dovecot.unseen("Rapports de non-remise") == 1
    assert main(["--config", str(project.config), "bounces"]) == 0
    assert "0 bounce report(s) read, 1 other message(s)" in capsys.readouterr().out


def readdressed(report: bytes, to: str, quoted: str | None = None) -> bytes:
    """Marie's genuine report, made to name `to` (and quote `quoted`) instead."""
    text = report.replace(b"marie.leroy@example.org", to.encode())
    if quoted:
        text = text.replace(our_id("marie.leroy@example.org").encode(), quoted.encode())
    return text.replace(b"Marie Leroy", b"Someone Else")


def test_forged_derived_and_replayed_reports_suppress_nobody(
    project: Project,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger = sent_ledger(project)
    genuine = (REPORTS / "postfix-5.1.1.eml").read_bytes()  # Marie's mailbox does not exist
    ines, lucie = "ines.garnier@example.org", "lucie.moreau@example.org"
    # What the previous release wrote for Ines's mail: anyone could compute it.
    legacy = hashlib.sha256("|".join((CYCLE, SESSION, "reminder", "7d", ines)).encode())
    derived = f"<{CYCLE}.20230301.reminder.7d.{legacy.hexdigest()[:20]}@irev.fr>"
    # Our form, marked with a key that is not the service's.
    guessed = our_id(ines, key=b"a key someone outside chose for this")
    dovecot.deliver(
        "Falsifications",
        # An ordinary mailbox sends a DSN-shaped message quoting Marie's real Message-ID.
        (REPORTS / "forged-ordinary-sender.eml").read_bytes(),
        # A null sender (anyone may connect to the MX) with worked-out Message-IDs.
        readdressed(genuine, ines, derived),
        readdressed(genuine, ines, guessed),
        # Marie's genuine report, replayed for Lucie.
        readdressed(genuine, lucie),
    )
    use_imap(project, dovecot, "Falsifications", monkeypatch)
    assert main(["--config", str(project.config), "bounces"]) == 0
    out = capsys.readouterr().out
    assert suppressed(ledger) == {}
    assert "4 bounce report(s) read, 0 other message(s) left alone; 0 address(es) suppressed" in out
    assert "0 other failure(s), 0 unmatched, 4 suspicious" in out
    assert (
        "suspicious, not acted on: m***@example.org: sent by h***@gmail.example, not by a "
        "mail system" in out
    )
    assert "suspicious, not acted on: i***@example.org: its Message-ID carries no mark" in out
    assert "i***@example.org: no mail of this ledger carries its Message-ID" in out
    assert "l***@example.org: its Message-ID is that of a mail to m***@example.org" in out
    # Listed once: they are marked read like any report.
    assert dovecot.unseen("Falsifications") == 0


def test_reports_about_mails_marked_with_a_former_key_still_suppress(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = sent_ledger(project)  # marked with KEY
    monkeypatch.setenv("REMINDER_BOUNCES__KEY", "the-key-after-rotation-0123456789abcdef")
    box = mailbox.Maildir(project.root / "bounces", create=True)
    box.add(mailbox.MaildirMessage((REPORTS / "postfix-5.1.1.eml").read_bytes()))
    box.close()
    project.append('[bounces]\nmaildir = "bounces"')
    assert main(["--config", str(project.config), "bounces"]) == 0
    assert set(suppressed(ledger)) == {"marie.leroy@example.org"}


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
    project: Project,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = sent_ledger(project)
    use_imap(project, dovecot, "Service", monkeypatch)
    forged = (REPORTS / "forged-ordinary-sender.eml").read_bytes()
    dovecot.deliver("Service", forged, (REPORTS / "postfix-5.1.1.eml").read_bytes())
    worker = Worker(project.config, poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: "marie.leroy@example.org" in suppressed(ledger) or task.done())
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert dovecot.unseen("Service") == 0
    # The forgery is worth a look: a warning, and no error.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("1 report(s) quote a Message-ID of ours without proving" in w for w in warnings)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
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
    assert len(suppressed(ledger)) == 6
    assert main(["--config", str(project.config), "bounces"]) == 0
    assert "0 bounce report(s) read, 1 other" in capsys.readouterr().out.splitlines()[-1]


def test_a_maildir_that_is_not_one_is_named(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "bounces").mkdir()
    project.append('[bounces]\nmaildir = "bounces"')
    assert main(["--config", str(project.config), "bounces"]) == 1
    assert "is not a Maildir (it needs new/ and cur/ folders)" in capsys.readouterr().err


@pytest.mark.parametrize(("report", "expected"), GENUINE.items(), ids=list(GENUINE))
def test_each_report_form_names_the_recipient_status_and_our_marked_message(
    report: str, expected: tuple[str, str]
) -> None:
    found = parse_report((REPORTS / report).read_bytes())
    assert found is not None and found.from_mail_system
    [bounce] = found.bounces
    recipient, status = expected
    assert (bounce.recipient, bounce.status, bounce.failed) == (recipient, status, True)
    assert bounce.message_id == our_id(recipient)


def test_a_report_naming_our_mail_only_in_its_own_fields_is_matched() -> None:
    # Gmail may return no copy of the mail: its per-message fields still name it.
    report = (REPORTS / "gmail-dsn-5.1.1.eml").read_bytes()
    boundary = b"--000000000000ca2d9205f5a5444d"
    copy = report.index(boundary + b"\nContent-Type: message/rfc822")
    found = parse_report(report[:copy] + boundary + b"--\n")
    assert found is not None
    assert found.bounces[0].message_id == our_id("hugo.lambert@example.org")


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
    # The server's reply as text, not as a Python bytes literal.
    assert "[AUTHENTICATIONFAILED] Authentication failed." in err and "b'" not in err
