"""A registrant's decline of one session, as the plan and the notices read it: pure
functions, explicit instants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from reminder.core.declines import Decline, Declines, declined, expected
from reminder.core.mailing import MailKind
from reminder.core.model import Lead, Registrant, Roster, Session
from reminder.core.notices import (
    Facts,
    NoticePlan,
    NoticeView,
    Told,
    plan_notices,
    read_one_by_one,
)
from reminder.core.plan import LedgerView, due_batch, reminder_slots

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2023, 3, 1, 17, tzinfo=PARIS)
MARCH = Session("2023-03-01", START, START + timedelta(hours=2), "S1")
APRIL = Session(
    "2023-04-05",
    datetime(2023, 4, 5, 17, tzinfo=PARIS),
    datetime(2023, 4, 5, 19, tzinfo=PARIS),
    "S1",
)
LEADS = [Lead.parse(t) for t in ("7d", "1d")]
SLOTS = reminder_slots([MARCH, APRIL], LEADS)
ANNE, BOB = Registrant("anne@example.org"), Registrant("bob@example.org")
ROSTER = Roster("test", (ANNE, BOB))
LINK = "https://zoom.us/j/1"
DELAY = timedelta(minutes=10)
DECLINED_AT = datetime(2023, 2, 25, 10, tzinfo=PARIS)
TOLD = Told(
    Facts(START, START + timedelta(hours=2), LINK), 0, datetime(2023, 2, 22, 17, tzinfo=PARIS)
)


def anne_declines(session: Session = MARCH, undone_at: datetime | None = None) -> Declines:
    return Declines([Decline(session.id, ANNE.key, session.start.date(), DECLINED_AT, undone_at)])


def sent(*pairs: tuple[Session, str, str]) -> LedgerView:
    found: dict[tuple[str, str], frozenset[str]] = {}
    for session, lead, who in pairs:
        key = (session.appointment, lead)
        found[key] = found.get(key, frozenset()) | {who}
    return LedgerView(found)


def sends(
    now: datetime, declines: Declines, view: LedgerView | None = None
) -> set[tuple[str, str, str, bool]]:
    batch = due_batch(now, SLOTS, ROSTER, view or LedgerView(), declines=declines)
    return {(d.slot.session.id, str(d.slot.lead), d.registrant.key, d.late) for d in batch.sends}


def test_a_standing_decline_stops_that_session_s_reminders_to_them_only() -> None:
    one_day_before = datetime(2023, 2, 28, 17, tzinfo=PARIS)
    owed = sends(
        one_day_before, anne_declines(), sent((MARCH, "7d", ANNE.key), (MARCH, "7d", BOB.key))
    )
    assert owed == {("2023-03-01", "1d", BOB.key, False)}
    # Her other sessions are hers as before.
    april = datetime(2023, 3, 29, 17, tzinfo=PARIS)
    assert sends(april, anne_declines()) == {
        ("2023-04-05", "7d", ANNE.key, False),
        ("2023-04-05", "7d", BOB.key, False),
    }


def test_an_undone_decline_lets_the_latest_reminder_go_late_and_supersedes_the_older() -> None:
    undone = anne_declines(undone_at=datetime(2023, 2, 28, 18, tzinfo=PARIS))
    now = datetime(2023, 2, 28, 18, 5, tzinfo=PARIS)
    batch = due_batch(
        now, SLOTS, ROSTER, sent((MARCH, "1d", BOB.key), (MARCH, "7d", BOB.key)), declines=undone
    )
    assert [(d.registrant.key, str(d.slot.lead), d.late) for d in batch.sends] == [
        (ANNE.key, "1d", True)
    ]
    assert [(k.recipient, k.lead) for k, _ in batch.superseded] == [(ANNE.key, "7d")]


def test_a_move_to_another_day_asks_them_again_a_new_time_the_same_day_does_not() -> None:
    next_week = START + timedelta(days=7)
    moved = replace(MARCH, start=next_week, end=next_week + timedelta(hours=2), moved_from=START)
    later_that_day = replace(
        MARCH, start=START + timedelta(hours=1), end=START + timedelta(hours=3)
    )
    declines = anne_declines()
    assert declines.standing(moved) == set()
    assert declines.standing(later_that_day) == {ANNE.key}
    assert declines.standing(MARCH) == {ANNE.key}


def test_the_export_stays_the_source_a_dropped_registrant_s_decline_is_moot() -> None:
    declines = anne_declines()
    assert [
        d.recipient for d in declined(MARCH, ROSTER.having(declines.recipients()), declines)
    ] == [ANNE.key]
    assert [r.key for r in expected(MARCH, ROSTER, declines)] == [BOB.key]
    # The export takes her off the session: nothing to decline, nobody expected there.
    april_only = Roster("test", (replace(ANNE, sessions=frozenset({"2023-04-05"})), BOB))
    assert declined(MARCH, april_only.having(declines.recipients()), declines) == []
    # Put back on it, her decline still stands until she undoes it.
    assert [
        d.recipient for d in declined(MARCH, ROSTER.having(declines.recipients()), declines)
    ] == [ANNE.key]
    gone = Roster("test", (BOB,))
    assert declined(MARCH, gone.having(declines.recipients()), declines) == []


def plan(
    now: datetime, declines: Declines, told: Told = TOLD, session: Session = MARCH
) -> NoticePlan:
    view = NoticeView(told={session.id: {ANNE.key: told, BOB.key: TOLD}})
    return plan_notices(now, [session], ROSTER, view, DELAY, LINK, frozenset(), declines)


def test_a_decline_of_a_session_they_were_told_of_owes_them_one_cancellation_after_the_delay() -> (
    None
):
    early = plan(DECLINED_AT + DELAY / 2, anne_declines())
    assert not early.owed
    assert [(n.registrant.key, n.due_at) for n in early.waiting] == [
        (ANNE.key, DECLINED_AT + DELAY)
    ]
    owed = plan(DECLINED_AT + DELAY, anne_declines()).owed
    assert [(n.registrant.key, n.kind, n.sequence, n.declined) for n in owed] == [
        (ANNE.key, MailKind.CANCELLATION, 1, True)
    ]
    assert owed[0].not_after == START


def test_an_undo_within_the_delay_owes_nothing() -> None:
    undone = anne_declines(undone_at=DECLINED_AT + DELAY / 2)
    result = plan(DECLINED_AT + DELAY, undone)
    assert not result.owed and not result.waiting


def test_told_cancelled_a_declined_registrant_hears_of_no_change_and_an_undo_puts_it_back() -> None:
    cancelled = Told(replace(TOLD.facts, status="cancelled"), 1, DECLINED_AT + DELAY)
    new_link = replace(MARCH, join_url="https://zoom.us/j/2")
    later = DECLINED_AT + timedelta(days=1)
    owed = plan(later, anne_declines(), cancelled, new_link).owed
    assert [n.registrant.key for n in owed] == [BOB.key]  # the new link: Bob only
    came_back = DECLINED_AT + timedelta(days=2)
    undone = anne_declines(undone_at=came_back)
    assert not plan(came_back + DELAY / 2, undone, cancelled).owed
    (update,) = plan(came_back + DELAY, undone, cancelled).owed
    assert (update.registrant.key, update.kind, update.sequence, update.came_back) == (
        ANNE.key,
        MailKind.UPDATE,
        2,
        True,
    )


def test_the_notice_plan_reads_the_rows_of_whoever_chose_one_by_one() -> None:
    assert ANNE.key in read_one_by_one(MARCH, ROSTER, (), anne_declines())
    assert ANNE.key not in read_one_by_one(APRIL, ROSTER, (), anne_declines())


def test_declines_by_session_and_their_instants() -> None:
    undone_at = datetime(2023, 2, 26, 9, tzinfo=UTC)
    declines = Declines(
        [
            Decline(MARCH.id, ANNE.key, date(2023, 3, 1), DECLINED_AT, undone_at),
            Decline(MARCH.id, BOB.key, date(2023, 3, 1), DECLINED_AT),
        ]
    )
    assert declines.standing(MARCH) == {BOB.key}
    assert set(declines.of(MARCH.id)) == {ANNE.key, BOB.key}
    found = declines.find(MARCH.id, ANNE.key)
    assert found is not None and found.changed_at == undone_at
    assert not Declines() and declines
