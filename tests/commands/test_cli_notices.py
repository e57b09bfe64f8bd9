"""What staff see of change notices before and after the service sends them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import icalendar
import pytest

from reminder.core.mailing import DeliveryKey, DeliveryState, MailKind
from reminder.core.notices import Facts, Told
from reminder.storage.ledger import Claim, Ledger, Outcome
from tests.support.commands import cli
from tests.support.notices import DELAY, UID
from tests.support.project import Project
from tests.support.worker import PARIS

SENT_AT = datetime(2023, 2, 22, 17, tzinfo=PARIS)
START = datetime(2023, 3, 1, 17, tzinfo=PARIS)


def told_evelyne(project: Project) -> None:
    """The ledger as if the 7d reminder of 1 March had reached one registrant."""
    key = DeliveryKey(
        START.isoformat(timespec="minutes"), "reminder", "7d", "evelyne.dubois@example.org"
    )
    facts = Facts(START, START + timedelta(hours=2), "https://zoom.us/j/00000000000")
    with Ledger(project.root / "state" / "ledger.sqlite", worker="test") as ledger:
        claim = Claim(key, "<m@irev.fr>", SENT_AT, START, "2023-03-01", Told(facts, 0, SENT_AT))
        assert ledger.claim([claim], SENT_AT)
        ledger.record([Outcome(key, DeliveryState.SENT, "250 OK", SENT_AT)], SENT_AT)
        ledger.observe({"2023-03-01": "as first seen"}, SENT_AT)


def cancel_march(project: Project) -> None:
    project.edit("date = 2023-03-01\n", "date = 2023-03-01\ncancelled = true\n")


def test_check_plan_and_status_show_the_notices_a_cancellation_would_cause(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    told_evelyne(project)
    cancel_march(project)
    assert cli(project, "check", "--now", "2023-02-24T10:00") == 0
    out = capsys.readouterr().out
    assert "change notices these files would cause, against the ledger:" in out
    assert "2023-03-01  cancellation to 1 registrant(s) (status; SEQUENCE 1)" in out
    now = "2023-02-24T10:00"
    assert cli(project, "plan", "--now", now, "--to", "2023-03-31") == 0
    out = capsys.readouterr().out
    assert (
        "notice 2023-03-01  cancellation to 1 registrant(s) (status; SEQUENCE 1)  goes at "
        "2023-02-24 10:10 once the change has settled"
    ) in out
    assert cli(project, "status", "--now", now, "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["notices"] == [
        {
            "session": "2023-03-01",
            "kind": "cancellation",
            "state": "settling",
            "at": "2023-02-24T10:10:00+01:00",
            "registrants": 1,
            "changes": ["status"],
            "sequence": 1,
        }
    ]
    assert data["next_wakeups"][0] == {
        "at": "2023-02-24T10:10:00+01:00",
        "reminders": "change notices",
    }
    assert cli(project, "status", "--now", now) == 0
    assert "change notices owed:\n  2023-03-01  cancellation" in capsys.readouterr().out


def test_preview_of_a_reminder_for_a_cancelled_session_refuses(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    cancel_march(project)
    assert cli(project, "preview", "--session", "2023-03-01") == 1
    error = capsys.readouterr().err
    assert "the session of 2023-03-01 is cancelled: no reminder goes out for it" in error
    assert "--kind cancellation" in error


@pytest.mark.parametrize("kind", ["cancellation", "update"])
def test_preview_of_a_notice_writes_its_mail_and_calendar(
    project: Project, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "cancellation":
        cancel_march(project)
    else:
        project.edit("date = 2023-03-01\n", "date = 2023-03-01\nmoved_to = 2023-03-08\n")
    out = tmp_path / "preview"
    assert (
        cli(project, "preview", "--session", "2023-03-01", "--kind", kind, "--out", str(out)) == 0
    )
    printed = capsys.readouterr().out
    if kind == "cancellation":
        assert printed.startswith(
            "Subject: Annulé – la séance du mercredi 1er mars n’aura pas lieu"
        )
        assert "La séance du mercredi 1er mars 2023 est annulée" in printed
    else:
        assert "nouvelle date, mercredi 8 mars à 17h00" in printed
        assert "Séance déplacée du mercredi 1er mars 2023 à 17h00 au mercredi 8 mars 2023" in (
            printed
        )
    calendar = icalendar.Calendar.from_ical((out / f"{kind}-2023-03-01.ics").read_bytes())
    event = calendar.walk("VEVENT")[0]
    assert str(event["UID"]) == UID and int(event["SEQUENCE"]) == 1
    expected = ("CANCEL", "CANCELLED") if kind == "cancellation" else ("REQUEST", "CONFIRMED")
    assert (str(calendar["METHOD"]), str(event["STATUS"])) == expected
    message = message_from_bytes(
        (out / f"{kind}-2023-03-01.eml").read_bytes(), policy=policy.default
    )
    assert message["Subject"]
    assert DELAY  # the default delay the other tests rely on


def test_simulate_with_edits_shows_the_notices_in_its_timeline(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = project.config.read_text(encoding="utf-8")
    cancelled = text.replace("date = 2023-05-03\n", "date = 2023-05-03\ncancelled = true\n", 1)
    (project.root / "cancelled.toml").write_text(cancelled, encoding="utf-8")
    moved = cancelled.replace("date = 2023-06-07\n", "date = 2023-06-07\nmoved_to = 2023-06-14\n")
    (project.root / "moved.toml").write_text(moved, encoding="utf-8")
    edits = [
        f"--edit=2023-04-27T10:00={project.root / 'cancelled.toml'}",
        f"--edit=2023-06-01T10:00={project.root / 'moved.toml'}",
    ]
    args = [
        "simulate",
        "--from",
        "2023-04-20",
        "--to",
        "2023-06-30",
        "--out",
        str(tmp_path / "sim"),
    ]
    assert cli(project, *args, *edits) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2023-04-27 10:00              edit: cancelled.toml" in lines
    assert any(line.startswith("2023-04-27 10:10  2023-05-03  cancellation") for line in lines)
    assert any(line.startswith("2023-06-01 10:10  2023-06-07  update") for line in lines)
    assert not any("2023-05-03  1d" in line for line in lines)  # nothing more for May
    assert any(line.startswith("2023-06-13 17:00  2023-06-07  1d") for line in lines)


def test_simulate_says_what_is_wrong_with_an_edit(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(project, "simulate", "--edit", "2023-04-27T10:00")
    assert exit_.value.code == 2
    assert "write INSTANT=PATH" in capsys.readouterr().err


def test_a_notice_template_that_fails_to_render_is_caught_before_anything_is_sent(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.root / "templates" / "cancellation.txt").write_text(
        "{{ notice.before.nowhere.at_all }}\n", encoding="utf-8"
    )
    assert cli(project, "check") == 1
    out = capsys.readouterr().err  # problems go to stderr
    assert "cancellation.txt" in out and "while rendering" in out


def test_no_notice_is_shown_owed_to_a_registrant_suppressed_in_the_ledger(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # Evelyne unsubscribed after her reminder: the worker sends her no cancellation, so
    # status must not show one owed to her forever (nor the stop line count it).
    told_evelyne(project)
    with Ledger(project.root / "state" / "ledger.sqlite", worker="test") as ledger:
        ledger.suppress("evelyne.dubois@example.org", reason="x", source="unsubscribe", at=SENT_AT)
    cancel_march(project)
    assert cli(project, "status", "--now", "2023-02-24T10:00", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["notices"] == []


def test_send_test_of_a_cancelled_session_refuses_like_preview(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    # A test mail saying "the session takes place" for a cancelled one would mislead staff.
    cancel_march(project)
    assert cli(project, "send-test", "--to", "staff@example.org", "--session", "2023-03-01") == 1
    assert "the session of 2023-03-01 is cancelled" in capsys.readouterr().err
    assert not (project.root / "state" / "outbox").exists()


def test_status_names_the_retry_of_a_notice_for_a_cancelled_session(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    told_evelyne(project)
    cancel_march(project)
    sent_at = datetime(2023, 2, 24, 10, 10, tzinfo=PARIS)
    retry_at = datetime(2023, 2, 24, 10, 15, tzinfo=PARIS)
    key = DeliveryKey(
        START.isoformat(timespec="minutes"),
        MailKind.CANCELLATION,
        "",
        "evelyne.dubois@example.org",
        version=1,
    )
    facts = Facts(START, START + timedelta(hours=2), "https://zoom.us/j/00000000000", "cancelled")
    with Ledger(project.root / "state" / "ledger.sqlite", worker="test") as ledger:
        ledger.observe({"2023-03-01": "cancelled"}, datetime(2023, 2, 24, 10, tzinfo=PARIS))
        claim = Claim(key, "<c@irev.fr>", sent_at, START, "2023-03-01", Told(facts, 1, sent_at))
        assert ledger.claim([claim], sent_at)
        retry = Outcome(key, DeliveryState.CLAIMED, "451 4.3.0 try again later", sent_at, retry_at)
        ledger.record([retry], sent_at)
    cli(project, "status", "--now", "2023-02-24T10:12", "--format", "json")
    data = json.loads(capsys.readouterr().out)
    assert "2023-02-24T10:15:00+01:00" in [wake["at"] for wake in data["next_wakeups"]]
