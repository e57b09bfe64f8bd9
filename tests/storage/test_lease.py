"""A worker whose lease lapsed (frozen, cut off) sends nothing it claimed before the lapse."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from reminder.mail.smtp import SmtpTransport
from reminder.mail.smtpsink import SmtpSink
from reminder.service.dispatcher import Dispatcher
from reminder.storage.cluster import Presence
from reminder.storage.ledger import Ledger
from tests.support.project import Clock, Project, person
from tests.support.smtp import FaultyRecorder, Server
from tests.support.worker import use_server


def test_a_renewal_after_a_lapse_starts_a_new_term(project: Project) -> None:
    ticks = [0.0]
    snapshot = project.snapshot()
    clock = Clock(snapshot.slots[0].due_at)
    with Ledger(project.root / "state" / "ledger.sqlite", worker="a") as ledger:
        presence = Presence(ledger, clock, timedelta(seconds=6), monotonic=lambda: ticks[0])
        presence.join()
        ticks[0] = 2.0
        presence.beat()
        assert (presence.held(), presence.term) == (True, 0)  # renewed in time: same term
        ticks[0] = 60.0  # frozen well past the lease
        assert not presence.held()
        presence.beat()
        assert (presence.held(), presence.term) == (True, 1)


async def test_a_pass_stops_sending_when_the_lease_lapsed_and_was_renewed(
    project: Project,
) -> None:
    people = 40
    project.registrants([person(n) for n in range(people)])
    ledger_file = project.root / "state" / "ledger.sqlite"
    handler = FaultyRecorder()
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        snapshot = project.snapshot()
        connections = snapshot.config.smtp.connections

        def term() -> int | None:
            # The lease lapses (and is renewed) once five messages have arrived.
            return int(len(handler.messages) >= 5)

        with Ledger(ledger_file, worker="a") as ledger:
            transport = SmtpTransport(snapshot.config.smtp)
            clock = Clock(snapshot.slots[0].due_at)
            try:
                tally = await Dispatcher(ledger, transport, clock, lease=term).run(snapshot)
            finally:
                await transport.close()
    # Only what was already in a transaction when the term changed went out.
    assert 5 <= len(handler.messages) <= 5 + connections
    assert tally.sent == len(handler.messages)
    assert tally.left == people - tally.sent
    # What this pass claimed and did not send is free for whoever holds a lease now.
    with sqlite3.connect(ledger_file) as db:
        held = db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'claimed' AND claimed_by IS NOT NULL"
        ).fetchone()[0]
    assert held == 0
