"""Which notices are owed, when, and with which SEQUENCE: pure functions, explicit instants."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from reminder.core.mailing import DeliveryKey, MailKind
from reminder.core.model import Registrant, Roster, Session
from reminder.core.notices import ALWAYS, Facts, NoticeView, Told, plan_notices, since_as_of

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2023, 3, 1, 17, tzinfo=PARIS)
SESSION = Session("2023-03-01", START, START + timedelta(hours=2), "S1")
LINK = "https://zoom.us/j/1"
ANNE = Registrant("anne@example.org")
BOB = Registrant("bob@example.org")
CLEO = Registrant("cleo@example.org")  # registered, never mailed about it
ROSTER = Roster("test", (ANNE, BOB, CLEO))
DELAY = timedelta(minutes=10)
SENT_AT = datetime(2023, 2, 22, 17, tzinfo=PARIS)
TOLD = Told(Facts(START, START + timedelta(hours=2), LINK), 0, SENT_AT)
CHANGED_AT = datetime(2023, 2, 24, 10, tzinfo=PARIS)


def view(**extra: object) -> NoticeView:
    base = NoticeView(
        told={SESSION.id: {ANNE.key: TOLD, BOB.key: TOLD}}, since={SESSION.id: CHANGED_AT}
    )
    return replace(base, **extra)  # type: ignore[arg-type]


def test_nothing_changed_owes_nothing_and_keeps_sequence() -> None:
    plan = plan_notices(CHANGED_AT + DELAY, [SESSION], ROSTER, view(), DELAY, LINK)
    assert not plan.owed and not plan.waiting
    assert plan.sequence(SESSION, ANNE.key) == 0 and plan.sequence(SESSION, CLEO.key) == 0


def test_a_cancellation_waits_for_the_delay_then_is_owed_to_who_was_told_only() -> None:
    cancelled = replace(SESSION, cancelled=True)
    early = plan_notices(CHANGED_AT + DELAY / 2, [cancelled], ROSTER, view(), DELAY, LINK)
    assert not early.owed
    assert {n.due_at for n in early.waiting} == {CHANGED_AT + DELAY}
    assert early.held == {SESSION.appointment: CHANGED_AT + DELAY}  # its reminders wait too
    plan = plan_notices(CHANGED_AT + DELAY, [cancelled], ROSTER, view(), DELAY, LINK)
    assert {(n.registrant.key, n.kind, n.sequence) for n in plan.owed} == {
        (ANNE.key, MailKind.CANCELLATION, 1),
        (BOB.key, MailKind.CANCELLATION, 1),
    }
    assert next(iter(plan.owed)).not_after == START  # not after the session they know


def test_a_registrant_taken_off_the_session_gets_a_cancellation_and_the_others_nothing() -> None:
    roster = Roster("test", (ANNE, replace(BOB, sessions=frozenset({"2023-04-05"})), CLEO))
    plan = plan_notices(CHANGED_AT + DELAY, [SESSION], roster, view(), DELAY, LINK)
    assert [(n.registrant.key, n.kind) for n in plan.owed] == [(BOB.key, MailKind.CANCELLATION)]


def test_a_move_owes_an_update_with_what_changed() -> None:
    later = START + timedelta(days=7)
    moved = replace(SESSION, start=later, end=later + timedelta(hours=2), moved_from=START)
    plan = plan_notices(CHANGED_AT + DELAY, [moved], ROSTER, view(), DELAY, LINK)
    assert {n.kind for n in plan.owed} == {MailKind.UPDATE}
    assert {n.changes for n in plan.owed} == {("date",)}
    assert {n.key for n in plan.owed} == {
        DeliveryKey(moved.appointment, MailKind.UPDATE, "", ANNE.key, version=1),
        DeliveryKey(moved.appointment, MailKind.UPDATE, "", BOB.key, version=1),
    }
    assert plan.sequence(moved, CLEO.key) == 1  # later reminders carry the new SEQUENCE


def test_a_topic_change_owes_nothing_unless_staff_ask() -> None:
    retitled = replace(SESSION, topic="Nouveau thème")
    assert not plan_notices(CHANGED_AT + DELAY, [retitled], ROSTER, view(), DELAY, LINK).owed
    asked = replace(retitled, notify_topic=True)
    plan = plan_notices(CHANGED_AT + DELAY, [asked], ROSTER, view(), DELAY, LINK)
    assert {n.changes for n in plan.owed} == {("topic",)}


def test_a_settled_notice_is_not_owed_again_and_an_open_claim_is_retried_at_its_time() -> None:
    cancelled = replace(SESSION, cancelled=True)
    anne = DeliveryKey(SESSION.appointment, MailKind.CANCELLATION, "", ANNE.key, version=1)
    bob = DeliveryKey(SESSION.appointment, MailKind.CANCELLATION, "", BOB.key, version=1)
    retry_at = CHANGED_AT + DELAY * 2
    seen = view(settled=frozenset({anne}), claims={(SESSION.id, BOB.key): {bob: retry_at}})
    plan = plan_notices(CHANGED_AT + DELAY, [cancelled], ROSTER, seen, DELAY, LINK)
    assert not plan.owed and [n.key for n in plan.waiting] == [bob]
    plan = plan_notices(retry_at, [cancelled], ROSTER, seen, DELAY, LINK)
    assert [(n.key, n.retry) for n in plan.owed] == [(bob, True)]


def test_a_second_change_supersedes_an_unsent_notice_of_another_kind() -> None:
    stale = DeliveryKey(SESSION.appointment, MailKind.UPDATE, "", ANNE.key, version=1)
    seen = view(claims={(SESSION.id, ANNE.key): {stale: CHANGED_AT}})
    cancelled = replace(SESSION, cancelled=True)
    plan = plan_notices(CHANGED_AT + DELAY, [cancelled], ROSTER, seen, DELAY, LINK)
    assert plan.superseded == ((stale, CHANGED_AT),)


def test_after_a_sent_notice_the_next_change_owes_the_next_version() -> None:
    moved_at = START + timedelta(days=7)
    told_v1 = Told(Facts(moved_at, moved_at + timedelta(hours=2), LINK), 1, CHANGED_AT)
    moved = replace(
        SESSION,
        start=moved_at,
        end=moved_at + timedelta(hours=2),
        moved_from=START,
        join_url="https://zoom.us/j/2",
    )
    seen = view(told={SESSION.id: {ANNE.key: told_v1}})
    plan = plan_notices(CHANGED_AT + DELAY, [moved], ROSTER, seen, DELAY, LINK)
    assert [(n.key.version, n.changes) for n in plan.owed] == [(2, ("link",))]


def test_read_only_commands_see_an_unrecorded_change_as_seen_now() -> None:
    now = datetime(2023, 2, 25, tzinfo=PARIS)
    known = {"a": ("x", CHANGED_AT), "b": ("y", CHANGED_AT)}
    assert since_as_of(known, {"a": "x", "b": "z", "c": "w"}, now) == {
        "a": CHANGED_AT,
        "b": now,
        "c": ALWAYS,
    }
