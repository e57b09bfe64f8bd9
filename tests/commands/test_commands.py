"""The commands as library functions: typed options in, an Answer out, the clock injected."""

import asyncio
import re
from datetime import date, datetime
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from reminder.commands import changing, checking, previewing
from reminder.core.answer import FAILED, OK
from reminder.core.errors import UsageError
from reminder.core.model import Lead
from reminder.service.simulate import simulate
from tests.support.project import Project
from tests.support.smtp import Server

PARIS = ZoneInfo("Europe/Paris")


def test_send_test_picks_the_next_session_by_the_injected_clock(
    project: Project, smtp_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_SMTP__HOST", "127.0.0.1")
    monkeypatch.setenv("REMINDER_SMTP__PORT", str(smtp_server.port))
    monkeypatch.setenv("REMINDER_SMTP__SECURITY", "none")
    now = datetime(2023, 3, 10, 9, tzinfo=PARIS)  # after March's session, before April's
    answer = previewing.send_test(project.config, to="staff@example.org", clock=lambda: now)
    assert answer.status == OK
    [mail] = smtp_server.handler.messages
    message = message_from_bytes(mail.data, policy=policy.default)
    # The next session is April's, and the mail is dated by the same clock.
    assert "5 avril" in str(message["Subject"])
    assert "10 Mar 2023" in str(message["Date"])


def test_send_test_refuses_an_address_as_a_usage_error(project: Project) -> None:
    with pytest.raises(UsageError, match="--to 'pas une adresse' is not an e-mail address"):
        previewing.send_test(project.config, to="pas une adresse")


def test_status_at_the_injected_clock_is_status_at_that_instant(project: Project) -> None:
    changing.migrate_ledger(project.config)
    now = datetime(2023, 2, 20, 9, tzinfo=PARIS)
    by_clock = checking.status(project.config, output="json", clock=lambda: now)
    by_option = checking.status(project.config, output="json", now=now)
    assert by_clock.out == by_option.out
    assert by_clock.status == by_option.status


def test_suppress_is_dated_by_the_injected_clock(project: Project) -> None:
    now = datetime(2023, 2, 20, 9, tzinfo=PARIS)
    assert changing.suppress(
        project.config, address="a@example.org", reason="test", clock=lambda: now
    ).out.startswith("suppressed ")
    again = changing.suppress(project.config, address="a@example.org", reason="test")
    assert "already suppressed since 2023-02-20 09:00+0100" in again.out
    assert changing.unsuppress(project.config, address="a@example.org").status == OK
    assert changing.unsuppress(project.config, address="a@example.org").status == FAILED


def test_preview_is_the_mail_simulate_sends_sequence_included(
    project: Project, tmp_path: Path
) -> None:
    # Staff raised the calendar SEQUENCE of April's session (a client held an older entry).
    project.edit("date = 2023-04-05\n", "date = 2023-04-05\nsequence = 3\n")
    who = "evelyne.dubois@example.org"
    result = asyncio.run(
        simulate(
            project.config, start=date(2023, 3, 28), end=date(2023, 3, 30), folder=tmp_path / "sim"
        )
    )
    [sent] = [
        data
        for data in (p.read_bytes() for p in result.messages.glob("*.20230405.reminder.7d.*"))
        if who.encode() in data
    ]
    answer = previewing.preview(
        project.config,
        session=date(2023, 4, 5),
        lead=Lead.parse("7d"),
        registrant=who,
        out=tmp_path / "preview",
        clock=lambda: datetime(2023, 3, 29, 9, tzinfo=PARIS),
    )
    assert answer.status == OK
    shown = (tmp_path / "preview" / "reminder-2023-04-05-7d.eml").read_bytes()
    assert (
        b"\r\nSEQUENCE:3\r\n" in (tmp_path / "preview" / "reminder-2023-04-05-7d.ics").read_bytes()
    )

    def without_date(data: bytes) -> bytes:
        return re.sub(rb"\r\nDate: [^\r]*", b"", data)

    assert without_date(shown) == without_date(sent)


def test_simulate_checks_the_templates_and_builds_the_composer_once(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch of a simulation reads the export as of its instant; the templates and
    the composer stay those of the run (checked again per batch, the sample took 7 s)."""
    from reminder.inputs.templating import Templates
    from reminder.mail.messages import Composer

    calls = {"check": 0, "composer": 0}
    check, init = Templates.check, Composer.__init__

    def counted_check(self: Templates) -> list[object]:
        calls["check"] += 1
        return check(self)  # type: ignore[return-value]

    def counted_init(self: Composer, *args: object, **kwargs: object) -> None:
        calls["composer"] += 1
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Templates, "check", counted_check)
    monkeypatch.setattr(Composer, "__init__", counted_init)
    result = asyncio.run(simulate(project.config, folder=tmp_path / "sim"))
    assert len(result.steps) > 30 and result.sent > 400
    assert calls == {"check": 1, "composer": 1}
