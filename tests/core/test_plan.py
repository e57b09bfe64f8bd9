"""What is due at `now`: pure functions, tested with explicit instants."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from reminder.core.model import Lead, Registrant, Roster, Session
from reminder.core.plan import (
    Batch,
    LedgerView,
    Slot,
    due_batch,
    due_deliveries,
    next_wakeups,
    reminder_slots,
)

PARIS = ZoneInfo("Europe/Paris")
MARCH = Session(
    "2023-03-01",
    datetime(2023, 3, 1, 17, tzinfo=PARIS),
    datetime(2023, 3, 1, 19, tzinfo=PARIS),
    "S1",
)
APRIL = Session(
    "2023-04-05",
    datetime(2023, 4, 5, 17, tzinfo=PARIS),
    datetime(2023, 4, 5, 19, tzinfo=PARIS),
    "S1",
)
LEADS = [Lead.parse(t) for t in ("7d", "1d", "1h")]
ANNE = Registrant("anne@example.org")
LUC = Registrant("luc@example.org", sessions=frozenset({"2023-04-05"}))
ROSTER = Roster("test.csv", (ANNE, LUC))
SLOTS = reminder_slots([MARCH, APRIL], LEADS)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def slot(session: Session, lead: str) -> Slot:
    return next(s for s in SLOTS if s.session == session and str(s.lead) == lead)


def settled(*pairs: tuple[Slot, str]) -> LedgerView:
    found: dict[tuple[str, str], frozenset[str]] = {}
    for s, who in pairs:
        key = (s.session.appointment, str(s.lead))
        found[key] = found.get(key, frozenset()) | {who}
    return LedgerView(found)


def test_slots_fall_due_in_order_with_calendar_days_and_elapsed_hours() -> None:
    assert [(s.session.id, str(s.lead), s.due_at.isoformat()) for s in SLOTS[:3]] == [
        ("2023-03-01", "7d", "2023-02-22T17:00:00+01:00"),
        ("2023-03-01", "1d", "2023-02-28T17:00:00+01:00"),
        ("2023-03-01", "1h", "2023-03-01T16:00:00+01:00"),
    ]


def test_nothing_is_due_before_the_first_instant() -> None:
    assert not due_batch(at(2023, 2, 22, 16, 59), SLOTS, ROSTER, LedgerView())


def test_on_time_reminder_goes_to_each_attendee_once() -> None:
    batch = due_batch(at(2023, 2, 22, 17), SLOTS, ROSTER, LedgerView())
    assert [(d.registrant.email, str(d.slot.lead), d.late) for d in batch.sends] == [
        ("anne@example.org", "7d", False)
    ]
    assert batch.superseded == ()


def test_what_the_ledger_settled_is_not_owed_again() -> None:
    view = settled((slot(MARCH, "7d"), "anne@example.org"))
    assert not due_batch(at(2023, 2, 23, 9), SLOTS, ROSTER, view)


def test_after_downtime_only_the_latest_goes_out_and_older_are_superseded() -> None:
    batch = due_batch(at(2023, 3, 1, 16, 20), SLOTS, ROSTER, LedgerView())
    [delivery] = batch.sends
    assert (str(delivery.slot.lead), delivery.late) == ("1h", True)
    assert sorted(key.lead for key, _ in batch.superseded) == ["1d", "7d"]


def test_a_late_registrant_gets_the_latest_missed_reminder_only() -> None:
    view = settled((slot(MARCH, "7d"), "anne@example.org"), (slot(MARCH, "1d"), "anne@example.org"))
    newcomer = Registrant("zoe@example.org")
    roster = Roster("test.csv", (ANNE, newcomer))
    batch = due_batch(at(2023, 3, 1, 10), SLOTS, roster, view)
    assert [(d.registrant.email, str(d.slot.lead)) for d in batch.sends] == [
        ("zoe@example.org", "1d")
    ]
    assert [(k.recipient, k.lead) for k, _ in batch.superseded] == [("zoe@example.org", "7d")]


def test_nothing_goes_out_once_the_session_has_started() -> None:
    assert not due_batch(at(2023, 3, 1, 17), SLOTS, ROSTER, LedgerView())


def test_a_cutoff_stops_late_reminders_earlier() -> None:
    cutoff = timedelta(minutes=30)
    assert due_batch(at(2023, 3, 1, 16, 29), SLOTS, ROSTER, LedgerView(), cutoff)
    assert not due_batch(at(2023, 3, 1, 16, 31), SLOTS, ROSTER, LedgerView(), cutoff)


def test_an_unconfirmed_claim_is_retried_once_its_backoff_passed() -> None:
    march_1d = slot(MARCH, "1d")
    view = LedgerView(
        claims={(MARCH.appointment, "1d"): {"anne@example.org": at(2023, 2, 28, 17, 5)}}
    )
    assert not due_batch(at(2023, 2, 28, 17, 1), SLOTS, ROSTER, view)
    [retry] = due_batch(at(2023, 2, 28, 17, 6), SLOTS, ROSTER, view).sends
    assert retry.retry and retry.slot == march_1d


def test_a_cancelled_session_has_no_reminders() -> None:
    cancelled = Session("2023-03-01", MARCH.start, MARCH.end, "S1", cancelled=True)
    assert reminder_slots([cancelled], LEADS) == []


def test_next_wakeups_are_the_future_due_instants_and_retries() -> None:
    view = LedgerView(
        claims={(MARCH.appointment, "1d"): {"anne@example.org": at(2023, 2, 28, 17, 5)}}
    )
    upcoming = next_wakeups(at(2023, 2, 28, 17, 1), SLOTS, view)
    assert upcoming[:2] == [at(2023, 2, 28, 17, 5), at(2023, 3, 1, 16)]
    assert upcoming[-1] == at(2023, 4, 5, 16)


def test_an_address_suppressed_in_the_ledger_is_owed_nothing() -> None:
    batch = due_batch(
        at(2023, 2, 22, 17), SLOTS, ROSTER, LedgerView(), suppressed=frozenset({ANNE.key})
    )
    assert not batch


def test_due_deliveries_come_in_chunks_each_attendee_once_with_what_it_supersedes() -> None:
    people = tuple(Registrant(f"p{n}@example.org") for n in range(5))
    roster = Roster("test.csv", people)
    chunks = list(due_deliveries(at(2023, 2, 28, 17), SLOTS, roster, LedgerView(), chunk=2))
    assert [len(c.sends) for c in chunks] == [2, 2, 1]
    assert [d.registrant for c in chunks for d in c.sends] == list(people)
    # Each chunk carries the older reminders its own sends replace, and no other.
    for c in chunks:
        assert {k.recipient for k, _ in c.superseded} == {d.registrant.key for d in c.sends}
    assert due_batch(at(2023, 2, 28, 17), SLOTS, roster, LedgerView()) == Batch(
        tuple(d for c in chunks for d in c.sends), tuple(s for c in chunks for s in c.superseded)
    )


def test_a_turn_starts_each_session_from_its_own_place_and_still_owes_everyone_once() -> None:
    people = tuple(Registrant(f"p{n}@example.org") for n in range(10))
    roster = Roster("test.csv", people)
    now = at(2023, 2, 28, 17)  # March's 1-day reminder, the 7-day one superseded
    chunks = list(due_deliveries(now, SLOTS, roster, LedgerView(), chunk=4, turn=0.75))
    order = [d.registrant for c in chunks for d in c.sends]
    # From 3/4 of the list round to its start: nobody twice, nobody left out.
    assert order == [*people[7:], *people[:7]]
    assert [len(c.sends) for c in chunks] == [4, 4, 2]
    for c in chunks:
        assert {k.recipient for k, _ in c.superseded} == {d.registrant.key for d in c.sends}
    # Turn 0 is the export's order.
    assert [
        d.registrant
        for c in due_deliveries(now, SLOTS, roster, LedgerView(), turn=0.0)
        for d in c.sends
    ] == list(people)


def test_a_registrant_folds_its_address_once() -> None:
    anne = Registrant("Anne.Martin@Example.org")
    assert anne.key == "anne.martin@example.org"
    assert anne == Registrant("Anne.Martin@Example.org")
    assert not hasattr(anne, "__dict__")  # slotted: a million of them stay small
    luc = Registrant("luc@example.org")
    assert luc.key is luc.email  # already folded: the same string, not a copy
