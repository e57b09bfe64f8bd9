"""The service end to end: in-process under a moved clock, and as a process killed and stopped."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from email import message_from_bytes, policy

import pytest
import time_machine

from reminder.mail import transports
from reminder.mail.transport import Capabilities, Envelope, OnResult, Result, Verdict
from reminder.mail.transports import TransportKind
from reminder.service.worker import Worker
from reminder.storage.ledger import Ledger
from tests.support.project import Project, person, started, until
from tests.support.smtp import Server
from tests.support.worker import (
    PARIS,
    delivered,
    finish,
    process_config,
    reach,
    running,
    sent_in_ledger,
    settled_count,
    start,
    statuses,
    two_sessions,
    use_server,
)

pytestmark = pytest.mark.timeout(90)


async def test_every_registrant_gets_one_message_per_lead_per_session(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(5)])
    instants = [
        datetime(*moment, tzinfo=PARIS)
        for moment in (
            (2023, 2, 22, 17),
            (2023, 2, 28, 17),
            (2023, 3, 1, 16),
            (2023, 3, 29, 17),
            (2023, 4, 4, 17),
            (2023, 4, 5, 16),
        )
    ]
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            for number, instant in enumerate(instants, start=1):
                await reach(traveller, worker, instant)
                await until(lambda n=number: len(smtp_server.handler.messages) == 5 * n)
                await worker.wake("sweep")  # an extra wake-up sends nothing twice
            assert len(smtp_server.handler.messages) == 30
    copies = delivered(smtp_server)
    assert set(copies.values()) == {1}
    assert Counter(recipient for recipient, _ in copies) == {
        f"alex{n}@example.org": 6 for n in range(5)
    }
    assert statuses(project) == {("7d", "sent"): 10, ("1d", "sent"): 10, ("1h", "sent"): 10}


async def test_a_worker_started_after_two_due_instants_sends_only_the_latest(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(datetime(2023, 2, 28, 18, tzinfo=PARIS), tick=True):
        async with running(project):
            await until(lambda: len(smtp_server.handler.messages) == 3)
    subjects = {str(message_from_bytes(m.data)["Subject"]) for m in smtp_server.handler.messages}
    assert len(subjects) == 1
    assert statuses(project) == {("1d", "sent"): 3, ("7d", "superseded"): 3}


async def test_a_late_registrant_gets_only_the_latest_missed_reminder(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(0)])
    with time_machine.travel(
        datetime(2023, 2, 22, 16, 59, 59, 900000, tzinfo=PARIS), tick=True
    ) as traveller:
        async with running(project) as worker:
            await until(lambda: len(smtp_server.handler.messages) == 1)  # 7d, on time
            await reach(traveller, worker, datetime(2023, 2, 28, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 2)  # 1d
            traveller.move_to(datetime(2023, 3, 1, 9, tzinfo=PARIS))
            project.registrants([person(0), person(1)])  # signs up the morning of the session
            await until(lambda: len(smtp_server.handler.messages) == 3)
            late = smtp_server.handler.messages[-1]
            assert late.recipients == ["alex1@example.org"]
            text = (
                message_from_bytes(late.data)
                .get_payload(0)
                .get_payload(0)
                .get_payload(decode=True)
                .decode()
            )
            assert "a lieu aujourd’hui, mercredi 1er mars 2023" in text
    rows = statuses(project)
    assert rows[("7d", "superseded")] == 1 and rows[("1d", "sent")] == 2


async def test_a_live_edit_adds_a_session_and_it_is_served(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(0)])
    with time_machine.travel(datetime(2023, 3, 10, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            assert smtp_server.handler.messages == []
            project.append(
                '[[sessions]]\ndate = 2023-03-15\nextra = true\ntopic = "Séance ajoutée"'
            )
            # Its 7-day reminder (8 March) is already late: it goes out at the reload.
            await until(lambda: len(smtp_server.handler.messages) == 1)
            await until(
                lambda: any(
                    job.id == "due:2023-03-14T17:00:00+01:00" for job in worker.scheduler.get_jobs()
                )
            )
            await reach(traveller, worker, datetime(2023, 3, 14, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 2)
    subjects = [
        str(message_from_bytes(m.data, policy=policy.default)["Subject"])
        for m in smtp_server.handler.messages
    ]
    assert all("Séance ajoutée" in subject for subject in subjects)
    assert statuses(project) == {("7d", "sent"): 1, ("1d", "sent"): 1}


async def test_an_invalid_edit_keeps_the_last_good_config(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(0)])
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 27, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            good = worker.snapshot
            project.edit('timezone = "Europe/Paris"', 'timezone = "Europe/Pariss"')
            await until(lambda: "reload (a file changed) refused" in caplog.text)
            assert "unknown timezone 'Europe/Pariss'" in caplog.text
            assert worker.snapshot is good
            await reach(traveller, worker, datetime(2023, 2, 28, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 1)  # still served
            project.edit('timezone = "Europe/Pariss"', 'timezone = "Europe/Paris"')
            await until(lambda: "reloaded (a file changed)" in caplog.text)


async def test_a_bad_registrant_row_is_reported_and_the_others_served(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    rows = [person(0), person(1)]
    rows[1]["Courriel"] = "not-an-address"
    project.registrants(rows)
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 28, 17, 30, tzinfo=PARIS), tick=True):
        async with running(project):
            await until(lambda: len(smtp_server.handler.messages) == 1)
    assert "row 3, column Courriel: warning: 'not-an-address' is not a valid" in caplog.text


async def test_a_refused_recipient_is_recorded_and_the_batch_goes_on(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(4)])
    smtp_server.handler.rcpt_replies["alex2@example.org"] = ["550 5.1.1 Unknown user"]
    with time_machine.travel(datetime(2023, 2, 28, 17, 30, tzinfo=PARIS), tick=True):
        async with running(project):
            await until(lambda: len(smtp_server.handler.messages) == 3)
    with Ledger(project.root / "state" / "ledger.sqlite", readonly=True) as ledger:
        failed = [row for row in ledger.rows() if row.state == "failed"]
    assert [(row.recipient, row.last_reply) for row in failed] == [
        ("alex2@example.org", "550 5.1.1 Unknown user")
    ]


# --- as a real process ---------------------------------------------------------------------


async def test_kill_9_at_random_moments_resends_at_most_one_message_per_connection(
    project: Project, smtp_server: Server
) -> None:
    smtp_server.handler.data_delay = 0.005
    process_config(project, smtp_server, people=1000)
    chance = random.Random(9)  # noqa: S311 - reproducible kill points, not security
    ends: list[int] = []  # messages received when each killed run was dead
    for _ in range(3):
        target = len(smtp_server.handler.messages) + chance.randint(40, 220)
        process = start(project)
        try:
            await until(lambda t=target: len(smtp_server.handler.messages) >= t, within=60)
        finally:
            finish(process, signal.SIGKILL)
        ends.append(settled_count(smtp_server))
    assert ends[-1] < 1000, "the batch finished before the last kill: make the server slower"
    last = start(project)
    try:
        await until(lambda: sent_in_ledger(project) == 1000, within=60)
    finally:
        status, log = finish(last)
    assert status == 0
    assert "claimed by a previous run and not confirmed: at most 4 of them" in log
    assert "owed now: " in log
    received = [
        (m.recipients[0], str(message_from_bytes(m.data)["Message-ID"]))
        for m in smtp_server.handler.messages
    ]
    assert {recipient for recipient, _ in received} == {f"alex{n}@example.org" for n in range(1000)}
    ids = {recipient: {mid for r, mid in received if r == recipient} for recipient, _ in received}
    assert all(len(found) == 1 for found in ids.values()), "a resend carried a new Message-ID"
    copies = Counter(recipient for recipient, _ in received)
    first_run: dict[str, int] = {}
    for index, (recipient, _) in enumerate(received):
        first_run.setdefault(recipient, sum(index >= end for end in ends))
    per_kill = Counter(first_run[r] for r, n in copies.items() if n > 1)
    # A message is sent again only if it was in a transaction when its run died:
    # at most one per connection (4) per kill.
    assert all(per_kill[kill] <= 4 for kill in range(len(ends))), per_kill


async def test_sigterm_drains_in_flight_messages_and_exits_0(
    project: Project, smtp_server: Server
) -> None:
    smtp_server.handler.data_delay = 0.3
    process_config(project, smtp_server, people=20)
    worker = start(project, "--log-format", "json")
    await until(lambda: len(smtp_server.handler.messages) >= 2, within=30)
    status, log = finish(worker)
    assert status == 0
    messages = [json.loads(line)["message"] for line in log.splitlines()]  # JSON lines
    assert "stopping: finishing the messages in flight" in messages
    received = len(smtp_server.handler.messages)
    assert received < 20
    # Counts that add up: what went out, and what the next start owes.
    assert messages[-1] == f"stopped: sent {received} since start; left for the next start: " + str(
        20 - received
    )
    assert sent_in_ledger(project) == received  # every accepted message was recorded
    again = start(project)
    try:
        await until(lambda: sent_in_ledger(project) == 20, within=30)
    finally:
        status, _ = finish(again)
    assert status == 0
    assert set(delivered(smtp_server).values()) == {1}


async def test_a_second_worker_on_the_same_state_folder_is_refused(
    project: Project, smtp_server: Server
) -> None:
    process_config(project, smtp_server, people=1)
    first = start(project)
    try:
        await until(lambda: sent_in_ledger(project) == 1, within=30)
        status, error = finish(start(project), how=None)
        assert status == 1
        assert "another worker already serves" in error
        assert f"pid {first.pid} on " in error
    finally:
        status, _ = finish(first)
    assert status == 0


def test_the_outbox_is_the_default_and_mails_nobody(project: Project) -> None:
    from reminder.mail.outbox import Outbox
    from reminder.mail.transports import make_transport

    transport = make_transport(project.snapshot().config)
    assert isinstance(transport, Outbox)
    assert transport.folder == project.root / "state" / "outbox"


async def test_an_address_suppressed_in_the_ledger_by_another_command_is_not_mailed(
    project: Project, smtp_server: Server
) -> None:
    use_server(project, smtp_server)
    two_sessions(project)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            # Another process (a CLI command, the HTTP endpoint) writes to the same ledger.
            with Ledger(project.root / "state" / "ledger.sqlite") as other:
                other.suppress(
                    "Alex1@example.org",
                    reason="asked to stop",
                    source="staff",
                    at=datetime.now(PARIS),
                )
            await reach(traveller, worker, datetime(2023, 2, 22, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 2)
            await worker.wake("sweep")
    assert {m.recipients[0] for m in smtp_server.handler.messages} == {
        "alex0@example.org",
        "alex2@example.org",
    }


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_a_mailbox_that_does_not_exist_is_never_mailed_again_in_the_cycle(
    project: Project, smtp_server: Server, stage: str
) -> None:
    use_server(project, smtp_server, connections=1)
    two_sessions(project)
    project.registrants([person(0)])
    refusal = "550 5.1.1 <alex0@example.org>: Recipient address rejected: User unknown"
    if stage == "rcpt":
        smtp_server.handler.rcpt_replies["alex0@example.org"] = [refusal]
    else:
        smtp_server.handler.data_replies.append(refusal)
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            await reach(traveller, worker, datetime(2023, 2, 22, 17, tzinfo=PARIS))
            await until(lambda: statuses(project) == {("7d", "failed"): 1})
            for instant in ((2023, 2, 28, 17), (2023, 3, 29, 17)):
                await reach(traveller, worker, datetime(*instant, tzinfo=PARIS))
                await worker.wake("sweep")
    assert statuses(project) == {("7d", "failed"): 1}  # nothing more was even attempted
    with Ledger(project.root / "state" / "ledger.sqlite", readonly=True) as ledger:
        [suppression] = ledger.suppressions()
    assert (suppression.address, suppression.source, suppression.reply) == (
        "alex0@example.org",
        "bounce",
        refusal,
    )


async def test_a_policy_refusal_is_reported_but_not_suppressed(
    project: Project, smtp_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    use_server(project, smtp_server, connections=1)
    two_sessions(project)
    project.registrants([person(0)])
    smtp_server.handler.rcpt_replies["alex0@example.org"] = ["550 5.7.1 Message refused as spam"]
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True) as traveller:
        async with running(project) as worker:
            await reach(traveller, worker, datetime(2023, 2, 22, 17, tzinfo=PARIS))
            await until(lambda: statuses(project) == {("7d", "failed"): 1})
            await reach(traveller, worker, datetime(2023, 2, 28, 17, tzinfo=PARIS))
            await until(lambda: len(smtp_server.handler.messages) == 1)
    assert "refused by the receiving server's policy, not suppressed" in caplog.text
    with Ledger(project.root / "state" / "ledger.sqlite", readonly=True) as ledger:
        assert ledger.suppressions() == []


async def test_the_start_banner_counts_the_ledgers_suppressions(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    # Ops read "N served" at start: it must be who is mailed, as /metrics and check say.
    project.registrants([person(n) for n in range(3)])
    with Ledger(project.root / "state" / "ledger.sqlite") as ledger:
        ledger.suppress(
            "alex1@example.org", reason="asked to stop", source="staff", at=datetime.now(PARIS)
        )
    caplog.set_level(logging.INFO, logger="reminder")
    with time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True):
        async with running(project):
            pass
    assert "registrants.csv: 2 served, 1 suppressed, 0 problems" in caplog.text


async def test_the_worker_declares_its_state_before_it_runs(project: Project) -> None:
    worker = Worker(project.config, helpers=0)
    assert not worker.started.is_set()
    assert worker.snapshot.config.cycle.id == "irev-elus-2023"
    assert worker.scheduler is not None and worker.helpers == 0
    with pytest.raises(RuntimeError, match="not running"):
        _ = worker.ledger
    task = asyncio.create_task(worker.run())
    await started(worker, task)
    assert worker.dispatcher.helpers == 0  # as given, whatever the clock
    worker.stop()
    await asyncio.wait_for(task, 30)


class MailApi:
    """A transport as an HTTP mail API would be one: a class of its own, registered by
    name with its capabilities, which the worker never names."""

    description = "a mail API (test)"
    capabilities = Capabilities(rate_limits=((100, 1.0),), in_flight=8)

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    async def deliver(
        self,
        envelopes: AsyncIterator[Envelope],
        on_result: OnResult,
        stopping: asyncio.Event | None = None,
    ) -> None:
        async for envelope in envelopes:
            self.sent.append(envelope)
            recorded = on_result(Result(envelope, Verdict.SENT, "202 Accepted"))
            if recorded is not None:
                await recorded

    async def close(self) -> None:
        pass


async def test_a_transport_registered_by_name_serves_as_smtp_does(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = MailApi()
    chosen = TransportKind("api", lambda config: True, lambda config: None, lambda *_: api)
    monkeypatch.setattr(transports, "TRANSPORTS", {"api": chosen, **transports.TRANSPORTS})
    two_sessions(project)
    project.registrants([person(n) for n in range(3)])
    with time_machine.travel(datetime(2023, 2, 22, 17, 0, 10, tzinfo=PARIS), tick=True):
        async with running(project) as worker:
            await until(lambda: len(api.sent) == 3)
            assert worker.transport is api
            # Under its rate limit no helper process composes ahead of the pace it sets.
            assert worker.dispatcher.helpers == 0
    assert {e.sender for e in api.sent} == {"contact@irev.fr"}  # [sender], read by the composer
    assert statuses(project) == Counter({("7d", "sent"): 3})
