"""Running the worker, in-process and as a process, and reading what it sent."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email import message_from_bytes
from zoneinfo import ZoneInfo

import time_machine

from reminder.core.declines import Declines
from reminder.service.worker import Worker
from reminder.storage.ledger import Ledger
from tests.support.cycle import write_cycle
from tests.support.project import Project, person, started
from tests.support.smtp import Server

PARIS = ZoneInfo("Europe/Paris")


def use_server(project: Project, server: Server, connections: int = 4) -> None:
    project.edit(
        "connections = 4\nmax_per_minute = 30",
        f'host = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nconnections = {connections}',
    )


def two_sessions(project: Project) -> None:
    """March and April 2023 only: six due instants."""
    project.edit("end = 2023-07-31", "end = 2023-04-30")
    project.edit(
        'name = "Second semestre 2023"\nstart = 2023-09-01\nend = 2023-12-31',
        'name = "Second semestre 2023"\nstart = 2023-05-01\nend = 2023-05-02',
    )
    text = project.config.read_text()
    head, _, tail = text.partition("[[sessions]]\ndate = 2023-05-03")
    tail = tail[tail.index("[reminders]") :]
    project.config.write_text(head + tail)


def delivered(server: Server) -> Counter[tuple[str, str]]:
    """(recipient, Message-ID) -> copies received."""
    return Counter(
        (m.recipients[0], str(message_from_bytes(m.data)["Message-ID"]))
        for m in server.handler.messages
    )


@asynccontextmanager
async def running(project: Project, poll: float = 0.05) -> AsyncIterator[Worker]:
    worker = Worker(project.config, poll_seconds=poll)
    task = asyncio.create_task(worker.run())
    await started(worker, task)
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def reach(traveller: time_machine.Coordinates, worker: Worker, instant: datetime) -> None:
    """Move the clock to just before `instant` and let the scheduler see it."""
    traveller.move_to(instant - timedelta(milliseconds=30))
    worker.scheduler.wakeup()


def statuses(project: Project) -> Counter[tuple[str, str]]:
    with Ledger(project.root / "state" / "ledger.sqlite", readonly=True) as ledger:
        return Counter((row.lead, row.state) for row in ledger.rows())


def process_config(project: Project, server: Server, people: int, connections: int = 4) -> None:
    """A session tomorrow at noon whose 2-day reminder is already due: sent at start."""
    tomorrow = datetime.now(PARIS) + timedelta(days=1)
    write_cycle(
        project.root,
        port=server.port,
        start=tomorrow.replace(hour=12, minute=0, second=0, microsecond=0),
        end="13:00",
        registrants=0,
        leads=("2d",),
        connections=connections,
        cycle_id="test-cycle",
        topic="Séance de test",
        reminders='sweep_interval = "1h"',
        smtp="timeout = 10",
    )
    project.registrants([person(n) for n in range(people)])


def start(project: Project, *options: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "reminder", "run", "--config", str(project.config), *options],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(
    process: subprocess.Popen[bytes], how: signal.Signals | None = signal.SIGTERM
) -> tuple[int, str]:
    """Signal the process (unless `how` is None), wait for it, return its status and log."""
    if how is not None and process.poll() is None:
        process.send_signal(how)
    status = process.wait(30)
    assert process.stderr is not None
    with process.stderr:
        return status, process.stderr.read().decode()


def sent_in_ledger(project: Project) -> int:
    path = project.root / "state" / "ledger.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            return int(
                db.execute("SELECT count(*) FROM deliveries WHERE status='sent'").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


def settled_count(server: Server) -> int:
    """The messages received once the server has finished what a killed client sent."""
    count = -1
    while count != len(server.handler.messages):
        count = len(server.handler.messages)
        time.sleep(0.05)  # DATA answered after data_delay: wait for the recording to stop
    return count


async def suppressed(worker: Worker) -> frozenset[str]:
    """The running worker's suppressed addresses, read in its ledger's thread."""
    return await worker.thread.call(worker.ledger.suppressed_addresses)


async def declines(worker: Worker) -> Declines:
    """The running worker's declines, read in its ledger's thread."""
    return await worker.thread.call(worker.ledger.declines)
