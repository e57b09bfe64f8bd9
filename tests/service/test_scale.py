"""What keeps a large batch and a short command fast: chunked claims, lazy imports."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reminder.core import plan
from reminder.core.errors import LedgerError, LedgerUnreachable
from reminder.core.mailing import DeliveryKey, DeliveryState
from reminder.core.plan import Delivery
from reminder.core.planned import Tally
from reminder.mail.messages import Composer
from reminder.mail.outbox import Outbox
from reminder.mail.smtp import SmtpTransport
from reminder.mail.smtpsink import SmtpSink
from reminder.service import delivery
from reminder.service.delivery import CLAIM_CHUNK, SHARED_CLAIM_STEP
from reminder.service.dispatcher import Dispatcher
from reminder.service.snapshot import Snapshot
from reminder.storage.ledger import Claim, Ledger, Outcome, Row
from reminder.storage.thread import LedgerThread
from tests.support.project import Clock, Project, person
from tests.support.smtp import FaultyRecorder, Server
from tests.support.worker import use_server

# What `reminder --help` must not pay for: the service, the mail composer, the SMTP client
# and server, the configuration's validation library, the simulator.
HEAVY = [
    "reminder.service.worker",
    "reminder.service.delivery",
    "reminder.service.dispatcher",
    "reminder.mail.messages",
    "reminder.service.simulate",
    "reminder.mail.smtpsink",
    "reminder.inputs.config",
    "aiohttp",
    "aiosmtplib",
    "aiosmtpd",
    "apscheduler",
    "icalendar",
    "jinja2",
    "pydantic",
    "asyncio",
]


def test_help_imports_none_of_the_service() -> None:
    probe = (
        "import json, sys\n"
        "from reminder.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "usage: reminder" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@dataclass
class Watching(FaultyRecorder):
    """Records how many deliveries the ledger held when the first message arrived."""

    ledger_file: Path = Path()
    rows_at_first: list[int] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            if not self.rows_at_first:
                with sqlite3.connect(self.ledger_file) as db:
                    self.rows_at_first.append(
                        db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
                    )
        return await super().handle_DATA(server, session, envelope)


async def one_pass(snapshot: Snapshot, ledger_target: str | Path) -> tuple[Tally, list[Row]]:
    """One dispatcher pass at the first slot's instant on a ledger at `ledger_target`; what
    it did and the ledger's rows after it."""
    with Ledger(ledger_target, worker="test") as ledger:
        transport = SmtpTransport(snapshot.config.smtp)
        try:
            clock = Clock(snapshot.slots[0].due_at)
            tally = await Dispatcher(ledger, transport, clock).run(snapshot)
        finally:
            await transport.close()
        return tally, ledger.rows()


async def test_a_large_batch_is_claimed_a_chunk_at_a_time_and_sent_once(project: Project) -> None:
    people = 3 * CLAIM_CHUNK
    project.registrants([person(n) for n in range(people)])
    ledger_file = project.root / "state" / "ledger.sqlite"
    handler = Watching(ledger_file=ledger_file)
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        tally, _ = await one_pass(project.snapshot(), ledger_file)
    # The first message left before the batch was claimed in full...
    assert 0 < handler.rows_at_first[0] < people
    # ...and everyone still got exactly one.
    assert tally.sent == people
    assert sorted(handler.recipients()) == sorted(f"alex{n}@example.org" for n in range(people))


@dataclass
class Settled(FaultyRecorder):
    """Records, as each message arrives, how many the ledger already holds as sent."""

    ledger_file: Path = Path()
    sent_before: list[int] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with sqlite3.connect(self.ledger_file) as db:
            sent = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()
        with self.lock:
            self.sent_before.append(sent[0])
            first = len(self.sent_before) == 1
        if first:
            # A ledger slow to commit: the first outcome waits 0.3 s for the write lock,
            # time enough for a connection that did not wait to send several more.
            held = threading.Event()
            threading.Thread(target=self._hold_the_write_lock, args=(held,)).start()
            held.wait()
        return await super().handle_DATA(server, session, envelope)

    def _hold_the_write_lock(self, held: threading.Event) -> None:
        db = sqlite3.connect(self.ledger_file, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(0.3)
        db.execute("ROLLBACK")
        db.close()


async def test_each_outcome_is_committed_before_its_connection_sends_again(
    project: Project,
) -> None:
    """Outcomes are committed off the event loop; a connection still waits for its own."""
    people = 40
    project.registrants([person(n) for n in range(people)])
    ledger_file = project.root / "state" / "ledger.sqlite"
    handler = Settled(ledger_file=ledger_file)
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler), connections=1)
        tally, _ = await one_pass(project.snapshot(), ledger_file)
    assert tally.sent == people
    # One connection: when message n arrives, the n before it are recorded as sent.
    assert handler.sent_before == list(range(people))


async def test_a_next_message_is_never_accepted_when_the_outcome_before_it_cannot_be_recorded(
    project: Project, smtp_server: Server, monkeypatch: Any
) -> None:
    project.registrants([person(n) for n in range(3)])
    use_server(project, smtp_server, connections=1)
    snapshot = project.snapshot()
    record = Ledger.record

    def refused(ledger: Ledger, outcomes: Sequence[Outcome], now: datetime) -> None:
        if any(o.state == DeliveryState.SENT for o in outcomes):
            time.sleep(0.2)
            raise LedgerError("the disk is full")
        record(ledger, outcomes, now)

    monkeypatch.setattr(Ledger, "record", refused)
    thread: LedgerThread[Ledger] = LedgerThread()
    await thread.open(lambda: Ledger(project.root / "state" / "ledger.sqlite", worker="test"))
    transport = SmtpTransport(snapshot.config.smtp)
    try:
        with pytest.raises(LedgerError, match="disk is full"):
            await Dispatcher(thread, transport, Clock(snapshot.slots[0].due_at)).run(snapshot)
    finally:
        await transport.close()
        await thread.close(Ledger.close)
    # The first was accepted (its outcome could not be recorded: resent after a restart,
    # with its Message-ID); the connection sends nothing more.
    assert len(smtp_server.handler.recipients()) == 1


class Counted(tuple[Any, ...]):
    """A session's attendees that count how many the planner has read."""

    read = 0

    def __iter__(self) -> Any:
        for item in super().__iter__():
            Counted.read += 1
            yield item


@dataclass
class AtFirstMessage(FaultyRecorder):
    """Records what `count()` said (how far the planner had got) when the first message
    arrived."""

    count: Callable[[], int] = lambda: 0
    at_first: list[int] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            if not self.at_first:
                self.at_first.append(self.count())
        return await super().handle_DATA(server, session, envelope)


async def test_the_first_message_leaves_before_the_batch_is_planned_in_full(
    project: Project, monkeypatch: Any
) -> None:
    people = 4 * CLAIM_CHUNK
    project.registrants([person(n) for n in range(people)])
    ledger_file = project.root / "state" / "ledger.sqlite"
    handler = AtFirstMessage(count=lambda: Counted.read)
    ids: list[DeliveryKey] = []

    marked = Composer.message_id

    def counted_id(composer: Composer, key: DeliveryKey) -> str:
        ids.append(key)
        return marked(composer, key)

    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        snapshot = project.snapshot()
        monkeypatch.setattr(Composer, "message_id", counted_id)  # past the samples' renders
        session = snapshot.slots[0].session
        attendees = Counted(snapshot.roster.attending(session))
        snapshot.roster._by_session[session.id] = attendees
        Counted.read = 0
        tally, _ = await one_pass(snapshot, ledger_file)
    # The planner had read only the first chunks, not the whole batch, when the first
    # message arrived (the sessions' versions read only those with their own link).
    assert 0 < handler.at_first[0] <= 2 * CLAIM_CHUNK
    assert tally.sent == people
    # One Message-ID built per delivery, at its claim; composing reuses it.
    assert len(ids) == len(set(ids)) == people


@dataclass(frozen=True)
class CountedDelivery(Delivery):
    """A planned delivery that counts how many the planner has made."""

    planned = 0

    def __post_init__(self) -> None:
        CountedDelivery.planned += 1


async def test_on_a_shared_ledger_too_the_first_claims_come_before_the_batch_is_planned(
    project: Project, ledger_target: str | Path, monkeypatch: Any
) -> None:
    # A worker on PostgreSQL starts from a random place of the batch: it must not plan
    # the whole batch to find it (at 1,000,000 that took 4 s before the first message).
    people = 4 * CLAIM_CHUNK
    project.registrants([person(n) for n in range(people)])
    handler = AtFirstMessage(count=lambda: CountedDelivery.planned)
    monkeypatch.setattr(plan, "Delivery", CountedDelivery)
    CountedDelivery.planned = 0
    # Each claim's size, as the ledger is asked for it; the shared step bounded low
    # enough for this batch to reach the bound.
    monkeypatch.setattr(delivery, "SHARED_CLAIM_MOST", 100)
    steps: list[int] = []
    claim = Ledger.claim

    def sized(
        ledger: Ledger, claims: Sequence[Claim], now: datetime, **options: Any
    ) -> list[Claim]:
        steps.append(len(claims))
        return claim(ledger, claims, now, **options)

    monkeypatch.setattr(Ledger, "claim", sized)
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        tally, rows = await one_pass(project.snapshot(), ledger_target)
    assert 0 < handler.at_first[0] <= 2 * CLAIM_CHUNK
    assert tally.sent == people
    assert sorted(handler.recipients()) == sorted(f"alex{n}@example.org" for n in range(people))
    assert len(rows) == people
    if isinstance(ledger_target, Path):
        assert set(steps) == {CLAIM_CHUNK}  # a ledger of its own: one chunk per claim
    else:
        # Small at first, then as the pace allows, never past the bound.
        assert steps[0] == SHARED_CLAIM_STEP
        assert all(SHARED_CLAIM_STEP <= step <= 100 for step in steps[:-1])


@dataclass
class Timeline(FaultyRecorder):
    """Each message's arrival, in one list with what the test adds from elsewhere."""

    events: list[str] = field(default_factory=list)
    stop_after: int = 0  # messages, after which `stopping` is set (0: never)
    stopping: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.events.append("message")
            arrived = self.events.count("message")
        if arrived == self.stop_after and self.loop and self.stopping:
            self.loop.call_soon_threadsafe(self.stopping.set)
        return await super().handle_DATA(server, session, envelope)


def timed_claims(monkeypatch: Any, handler: Timeline) -> None:
    """Each claim of the ledger goes on the handler's timeline as it starts."""
    claim = Ledger.claim

    def noted(
        ledger: Ledger, claims: Sequence[Claim], now: datetime, **options: Any
    ) -> list[Claim]:
        with handler.lock:
            handler.events.append("claim")
        return claim(ledger, claims, now, **options)

    monkeypatch.setattr(Ledger, "claim", noted)


async def test_the_next_step_is_claimed_while_this_one_is_sent(
    project: Project, monkeypatch: Any
) -> None:
    # A claim is a commit (20-40 ms for a step of 1,024 on PostgreSQL): made only when
    # the connections had taken the whole step before, it left them idle meanwhile.
    people = 3 * CLAIM_CHUNK
    project.registrants([person(n) for n in range(people)])
    handler = Timeline()
    timed_claims(monkeypatch, handler)
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        tally, _ = await one_pass(project.snapshot(), project.root / "state" / "ledger.sqlite")
    assert tally.sent == people
    claims = [n for n, event in enumerate(handler.events) if event == "claim"]
    assert len(claims) == 3
    # The second step was claimed as the first began to go out, not once it had gone.
    assert handler.events[: claims[1]].count("message") < CLAIM_CHUNK // 4


async def test_a_step_claimed_ahead_of_a_stop_is_handed_back_at_once(
    project: Project, monkeypatch: Any
) -> None:
    people = 3 * CLAIM_CHUNK
    project.registrants([person(n) for n in range(people)])
    stopping = asyncio.Event()
    handler = Timeline(stop_after=10, stopping=stopping, loop=asyncio.get_running_loop())
    timed_claims(monkeypatch, handler)
    ledger_file = project.root / "state" / "ledger.sqlite"
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        snapshot = project.snapshot()
        with Ledger(ledger_file, worker="test") as ledger:
            transport = SmtpTransport(snapshot.config.smtp)
            due = snapshot.slots[0].due_at
            try:
                tally = await Dispatcher(ledger, transport, Clock(due)).run(snapshot, stopping)
            finally:
                await transport.close()
    assert handler.events.count("claim") == 2  # the step being sent, and the next
    assert 10 <= tally.sent < CLAIM_CHUNK
    with sqlite3.connect(ledger_file) as db:
        held = db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'claimed' AND claimed_by IS NOT NULL"
        ).fetchone()[0]
        released = db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'claimed' AND claimed_by IS NULL"
        ).fetchone()[0]
    # Nothing stays held by the stopped pass: what it did not send is due again at once,
    # the step claimed ahead included, for the next pass or another worker.
    assert held == 0
    assert released == 2 * CLAIM_CHUNK - tally.sent


class LosesAnAnswer(Ledger):
    """A ledger whose first claim is committed and its answer then lost, as when the
    connection drops between the commit and its reply (a database restart)."""

    lost = 0

    def claim(self, claims: Sequence[Claim], now: datetime, **options: Any) -> list[Claim]:
        won = super().claim(claims, now, **options)
        if not LosesAnAnswer.lost:
            LosesAnAnswer.lost = len(won)
            raise LedgerUnreachable("the ledger cannot be reached", cause="connection lost")
        return won


async def test_claims_whose_answer_was_lost_are_sent_in_the_same_pass(
    project: Project, monkeypatch: Any
) -> None:
    # The try that follows finds the rows already claimed by this worker: they were
    # held, unsent, for the claim's lease (10 minutes), and failed if the session began.
    monkeypatch.setattr("reminder.storage.thread.RETRY_EVERY", 0.01)
    people = 2 * CLAIM_CHUNK
    project.registrants([person(n) for n in range(people)])
    handler = FaultyRecorder()
    LosesAnAnswer.lost = 0
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        snapshot = project.snapshot()
        thread: LedgerThread[Ledger] = LedgerThread(patience=10)
        ledger_file = project.root / "state" / "ledger.sqlite"
        await thread.open(lambda: LosesAnAnswer(ledger_file, worker="test"))
        transport = SmtpTransport(snapshot.config.smtp)
        try:
            tally = await Dispatcher(thread, transport, Clock(snapshot.slots[0].due_at)).run(
                snapshot
            )
        finally:
            await transport.close()
            await thread.close(Ledger.close)
    assert LosesAnAnswer.lost == CLAIM_CHUNK
    assert tally.sent == people
    assert sorted(handler.recipients()) == sorted(f"alex{n}@example.org" for n in range(people))


def put_back(backup: Path, ledger_file: Path) -> None:
    """The ledger as the backup has it, without the write-ahead log written since."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_file}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, ledger_file)


async def test_a_delivery_whose_claim_was_lost_is_sent_again_with_the_same_message_id(
    project: Project,
) -> None:
    # A power cut can lose the last commits (synchronous = NORMAL), a ledger can be put
    # back from a backup: the claims recorded since are gone, and with them the recorded
    # Message-IDs. The resend must still carry the same one, so that receivers that
    # honour Message-IDs drop it (the outbox, named after them, keeps one file each).
    project.registrants([person(n) for n in range(3)])
    snapshot = project.snapshot()
    state = project.root / "state"
    ledger_file = state / "ledger.sqlite"
    Ledger(ledger_file, worker="test").close()
    shutil.copy(ledger_file, state / "backup.sqlite")  # taken before the send
    outbox = Outbox(project.root / "outbox", durable=False)
    due = snapshot.slots[0].due_at
    with Ledger(ledger_file, worker="test") as ledger:
        assert (await Dispatcher(ledger, outbox, Clock(due)).run(snapshot)).sent == 3
    first = sorted(p.name for p in (project.root / "outbox" / "new").iterdir())
    put_back(state / "backup.sqlite", ledger_file)
    with Ledger(ledger_file, worker="test") as ledger:
        later = Clock(due + timedelta(minutes=1))
        assert (await Dispatcher(ledger, outbox, later).run(snapshot)).sent == 3
    assert sorted(p.name for p in (project.root / "outbox" / "new").iterdir()) == first


async def test_a_later_reminder_does_not_wait_on_reading_what_everybody_was_told(
    project: Project, monkeypatch: Any
) -> None:
    # At 1,000,000 registrants, reading who was told what takes seconds: the pass at a
    # second reminder's instant reuses the notice plan that owed nothing, unless another
    # process has written to the ledger since.
    people = 30
    project.registrants([person(n) for n in range(people)])
    ledger_file = project.root / "state" / "ledger.sqlite"
    handler = FaultyRecorder()
    with SmtpSink(handler=handler) as sink:
        use_server(project, Server(sink, handler))
        snapshot = project.snapshot()
        first, second, third = (s for s in snapshot.slots if s.session is snapshot.slots[0].session)
        with Ledger(ledger_file, worker="test") as ledger:
            reads: list[object] = []
            told = ledger.notice_view
            monkeypatch.setattr(ledger, "notice_view", lambda *a: reads.append(a) or told(*a))
            clock = Clock(first.due_at)
            transport = SmtpTransport(snapshot.config.smtp)
            dispatcher = Dispatcher(ledger, transport, clock)
            try:
                assert (await dispatcher.run(snapshot)).sent == people
                clock.now = second.due_at
                assert (await dispatcher.run(snapshot)).sent == people
                assert len(reads) == 1  # the plan of the first pass, still true
                with Ledger(ledger_file, worker="staff") as other:
                    at = clock.now
                    other.suppress("alex0@example.org", reason="asked", source="staff", at=at)
                clock.now = third.due_at
                assert (await dispatcher.run(snapshot)).sent == people - 1
                assert len(reads) == 2  # another process wrote: read again
            finally:
                await transport.close()
    assert len(handler.messages) == 3 * people - 1
