"""Session dates from the rule, the semesters, the per-date entries and the holiday policy."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reminder.core.errors import ConfigError
from reminder.core.sessions import find_session
from reminder.inputs.config import load_config
from reminder.inputs.schedule import load_sessions
from tests.support.project import Project

PARIS = ZoneInfo("Europe/Paris")


def sessions_of(project: Project):  # type: ignore[no-untyped-def]
    return load_sessions(load_config(project.config))


def test_first_semester_2023_is_the_event_page_calendar(project: Project) -> None:
    sessions, _ = sessions_of(project)
    first = [s for s in sessions if s.semester == "Premier semestre 2023"]
    assert [s.start.date() for s in first] == [
        date(2023, 3, 1),
        date(2023, 4, 5),
        date(2023, 5, 3),
        date(2023, 6, 7),
        date(2023, 7, 5),
    ]
    assert all((s.start.hour, s.start.minute, s.end.hour) == (17, 0, 19) for s in first)
    assert first[0].start.utcoffset() == timedelta(hours=1)
    assert all(s.start.utcoffset() == timedelta(hours=2) for s in first[1:])
    assert first[0].start.isoformat() == "2023-03-01T17:00:00+01:00"


def test_first_session_carries_the_seed_programme(project: Project) -> None:
    sessions, _ = sessions_of(project)
    first = sessions[0]
    assert first.topic == "Mixité sociale dans l'habitat : quels enjeux, quelles perspectives ?"
    assert first.speakers == ("Christophe Noyé, géographe, Cf. Géo",)
    assert "renouvellement urbain" in first.partner
    assert not first.draft
    drafts = [s.topic for s in sessions[1:6]]
    assert drafts[0].startswith("Mixité scolaire") and drafts[4].startswith("Co-construire")
    assert all(s.draft for s in sessions[1:6])


def test_toussaint_is_flagged_by_default(project: Project) -> None:
    sessions, warnings = sessions_of(project)
    november = find_session(sessions, date(2023, 11, 1))
    assert november is not None and november.holiday == "Toussaint"
    assert any("2023-11-01" in w.message and "Toussaint" in w.message for w in warnings)
    assert all(w.severity == "warning" for w in warnings)


def test_skip_policy_drops_the_holiday(project: Project) -> None:
    project.edit('holidays = "warn"', 'holidays = "skip"')
    sessions, _ = sessions_of(project)
    assert date(2023, 11, 1) not in [s.start.date() for s in sessions]
    assert len([s for s in sessions if s.semester == "Second semestre 2023"]) == 3


def test_next_week_policy_moves_the_holiday_to_8_november(project: Project) -> None:
    project.edit('holidays = "warn"', 'holidays = "next-week"')
    sessions, _ = sessions_of(project)
    moved = find_session(sessions, date(2023, 11, 1))
    assert moved is not None
    assert moved.start == datetime(2023, 11, 8, 17, tzinfo=PARIS)
    assert moved.moved_from == datetime(2023, 11, 1, 17, tzinfo=PARIS)
    assert moved.id == "2023-11-01"  # same calendar entry, updated
    assert moved.sequence == 0  # derived from what the ledger says was sent, not from config


def test_a_semester_across_the_year_end(project: Project) -> None:
    project.edit(
        "# One [[sessions]] block",
        """[[semesters]]
name = "Premier semestre 2024-2025"
start = 2024-09-01
end = 2025-02-28

# One [[sessions]] block""",
    )
    sessions, warnings = sessions_of(project)
    later = [s.start.date() for s in sessions if s.semester == "Premier semestre 2024-2025"]
    assert later == [
        date(2024, 9, 4),
        date(2024, 10, 2),
        date(2024, 11, 6),
        date(2024, 12, 4),
        date(2025, 1, 1),
        date(2025, 2, 5),
    ]
    assert any("2025-01-01" in w.message and "Jour de l'an" in w.message for w in warnings)


def test_cancelled_moved_and_extra_sessions(project: Project) -> None:
    project.append("""
[[sessions]]
date = 2023-10-04
cancelled = true
cancelled_reason = "Grève des transports"

[[sessions]]
date = 2023-12-06
moved_to = 2023-12-13
start = "18h00"
end = "20:00"

[[sessions]]
date = 2023-06-21
extra = true
topic = "Séance supplémentaire"
start = "09:30"
end = "11:00"
""")
    sessions, _ = sessions_of(project)
    october = find_session(sessions, date(2023, 10, 4))
    assert october is not None and october.cancelled
    assert october.cancelled_reason == "Grève des transports"
    december = find_session(sessions, date(2023, 12, 6))
    assert december is not None
    assert december.start == datetime(2023, 12, 13, 18, tzinfo=PARIS)
    assert december.end == datetime(2023, 12, 13, 20, tzinfo=PARIS)
    assert december.moved and december.sequence == 0
    assert find_session(sessions, date(2023, 12, 13)) == december
    extra = find_session(sessions, date(2023, 6, 21))
    assert extra is not None and extra.extra and extra.topic == "Séance supplémentaire"
    assert extra.start == datetime(2023, 6, 21, 9, 30, tzinfo=PARIS)
    assert extra.semester == "Premier semestre 2023"
    assert [s.start for s in sessions] == sorted(s.start for s in sessions)


def test_a_moved_session_is_a_new_appointment_for_the_ledger(project: Project) -> None:
    before, _ = sessions_of(project)
    project.append('[[sessions]]\ndate = 2023-12-06\nstart = "18:00"')
    after, _ = sessions_of(project)
    assert before[-1].id == after[-1].id  # one calendar entry
    assert before[-1].appointment != after[-1].appointment  # but reminders are owed anew


def test_an_entry_matching_no_session_is_an_error_with_the_nearest_date(project: Project) -> None:
    project.append("[[sessions]]\ndate = 2023-04-06\ntopic = 'Typo'")
    with pytest.raises(ConfigError) as caught:
        sessions_of(project)
    problem = caught.value.problems[0]
    assert "2023-04-06 is not a session date" in problem.message
    assert "did you mean 2023-04-05" in problem.message and "extra = true" in problem.message
    assert problem.line == project.config.read_text().splitlines().index("date = 2023-04-06") + 1


def test_next_week_passes_every_holiday_and_says_which(project: Project) -> None:
    # 1 May 2024 is Fête du Travail and 8 May Fête de la Victoire: the next Wednesday that is
    # not a public holiday is 15 May.
    project.edit('holidays = "warn"', 'holidays = "next-week"')
    project.edit(
        "# One [[sessions]] block",
        "[[semesters]]\nname = 'Printemps 2024'\n"
        "start = 2024-04-01\nend = 2024-06-30\n\n# One [[sessions]] block",
    )
    sessions, warnings = sessions_of(project)
    may = find_session(sessions, date(2024, 5, 1))
    assert may is not None and may.start == datetime(2024, 5, 15, 17, tzinfo=PARIS)
    said = next(w for w in warnings if "2024-05-01" in w.message)
    assert "moves to 2024-05-15, the next Wednesday that is not a public holiday" in said.message
    assert "skipping 2024-05-08 (Fête de la Victoire), a public holiday too" in said.message
    assert said.key == "schedule.holidays" and said.line is not None


def test_a_start_the_clocks_skip_is_an_error_naming_the_entry_and_valid_times(
    project: Project,
) -> None:
    # 28 March 2027 in Paris: clocks go from 02:00 straight to 03:00.
    project.append('[[sessions]]\ndate = 2027-03-28\nextra = true\nstart = "02:30"\nend = "03:30"')
    with pytest.raises(ConfigError) as caught:
        sessions_of(project)
    [problem] = caught.value.problems
    assert problem.key == "sessions[6].start"
    assert problem.source.endswith("config.toml") and problem.line is not None
    text = project.config.read_text(encoding="utf-8").splitlines()
    assert text[problem.line - 1] == 'start = "02:30"'
    assert "02:30 on 2027-03-28, a time that does not exist in Europe/Paris" in problem.message
    assert "the nearest valid times are 01:59 and 03:00" in problem.message


def test_a_start_the_clocks_show_twice_is_a_warning_saying_which_is_used(
    project: Project,
) -> None:
    # 31 October 2027: 02:00 to 03:00 happens at +02:00, then again at +01:00.
    project.append('[[sessions]]\ndate = 2027-10-31\nextra = true\nstart = "02:30"\nend = "04:00"')
    sessions, warnings = sessions_of(project)
    session = find_session(sessions, date(2027, 10, 31))
    assert session is not None and session.start.isoformat() == "2027-10-31T02:30:00+02:00"
    [said] = [w for w in warnings if "2027-10-31" in w.message]
    assert said.severity == "warning" and said.key == "sessions[6].start"
    assert "the first is used, at offset +02:00, not the second (+01:00)" in said.message
