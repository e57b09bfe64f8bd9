"""The status page and `reminder status` count the same reminders the same way."""

from datetime import timedelta

from reminder.commands.printing import status_data
from reminder.core.plan import progress
from reminder.service.status_page import status_page
from reminder.storage.ledger import Claim, Ledger
from tests.support.project import Project


def test_claims_waiting_on_a_fault_are_not_also_counted_as_owed(project: Project) -> None:
    snapshot = project.snapshot()
    slot = snapshot.slots[0]
    attendees = snapshot.roster.attending(slot.session)
    now = slot.due_at + timedelta(minutes=1)
    keys = [slot.delivery_key(r.key) for r in attendees[:2]]
    with Ledger(snapshot.state_dir / "ledger.sqlite") as ledger:
        ledger.claim(
            [
                Claim(k, f"<{n}@irev.fr>", slot.due_at, slot.session.start)
                for n, k in enumerate(keys)
            ],
            now,
        )
        ledger.hold(keys, "smtp.password is wrong", now)
        page = status_page(snapshot, ledger, now, (), ())
        data = status_data(snapshot, now, (), ledger.counts(), None, ledger.faults())
    [line] = [line for line in page.sessions[0].leads if line.lead == str(slot.lead)]
    assert line.owed == len(attendees) - 2
    [row] = [
        r
        for r in data["reminders"]
        if r["session"] == slot.session.id and r["lead"] == str(slot.lead)
    ]
    assert row["pending"] == line.owed
    assert progress(slot, 3, {"waiting": 2, "sent": 1}, now, timedelta(0)).pending == 0
