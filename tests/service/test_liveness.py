"""Invariant 13, measured: the worker's loop answers whatever is down (a database, the
export, the relay), readiness names the fault, and the watchdog is fed only while the
worker makes progress. The loop runs in asyncio's debug mode, which logs any callback
that holds it longer than its threshold."""

from __future__ import annotations

import asyncio
import http.client
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from reminder.core.plan import deadline
from reminder.mail.smtpsink import free_port
from reminder.service.snapshot import load_snapshot
from reminder.service.worker import Worker
from reminder.storage.cluster import Membership
from reminder.storage.deliveries import _WORKERS_LOCK as WORKERS_LOCK
from reminder.storage.ledger import Claim, Ledger
from tests.support.cluster import private_postgres
from tests.support.cycle import write_cycle
from tests.support.project import started, until
from tests.support.smtp import Server

PARIS = ZoneInfo("Europe/Paris")
SLOW_CALLBACK = 0.25  # seconds: asyncio logs a callback that holds the loop longer


class Prober(threading.Thread):
    """Asks /healthz ten times a second from another thread, as a load balancer would,
    and keeps the longest answer (a second when none came)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.longest = 0.0
        self.asked = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            began = time.monotonic()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                connection.request("GET", "/healthz")
                ok = connection.getresponse().status == 200
                connection.close()
            except OSError:
                ok = False
            self.asked += 1
            self.longest = max(self.longest, time.monotonic() - began if ok else 1.0)


@pytest.fixture
async def debug_loop(
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Callable[[], list[str]]]:
    """The running loop in debug mode; yields what tells the slow callbacks it logged."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK
    caplog.set_level(logging.WARNING, logger="asyncio")

    def slow() -> list[str]:
        """The worker's slow callbacks (the test's own steps, which set up servers with
        blocking calls, are not the worker's)."""
        said = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
        return [text for text in said if " took " in text and "coro=<test_" not in text]

    yield slow
    loop.set_debug(False)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's notify socket, with a watchdog asking for a ping every 50 ms."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", sock.getsockname())
        monkeypatch.setenv("WATCHDOG_USEC", "100000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


def pings(sock: socket.socket) -> int:
    """WATCHDOG=1 datagrams received since the last call."""
    count = 0
    while True:
        try:
            count += b"WATCHDOG=1" in sock.recv(4096)
        except BlockingIOError:
            return count


def due_in(seconds: float) -> datetime:
    """A session whose 1-hour reminder falls due `seconds` from now."""
    return (datetime.now(PARIS) + timedelta(hours=1, seconds=seconds)).replace(microsecond=0)


async def readyz(port: int) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /readyz HTTP/1.0\r\n\r\n")
    answer = (await reader.read()).decode()
    writer.close()
    return int(answer.split()[1]), answer


async def test_a_database_outage_is_named_by_readyz_and_sending_resumes_at_its_return(
    tmp_path: Path,
    smtp_server: Server,
    notify_socket: socket.socket,
    debug_loop: Callable[[], list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    with private_postgres() as database:
        config = write_cycle(
            tmp_path,
            port=smtp_server.port,
            start=due_in(4),
            registrants=20,
            http_port=port,
            cycle_id="outage",
            ledger=f'url = "{database.url}"\nlease = "3s"',
            templates=True,
        )
        worker = await asyncio.to_thread(Worker, config, poll_seconds=0.2)
        task = asyncio.create_task(worker.run())
        prober = Prober(port)
        try:
            await started(worker, task)
            caplog.clear()  # the start's steps come before the HTTP face: nobody waits on them
            prober.start()
            await until(lambda: pings(notify_socket) > 0)
            await asyncio.to_thread(database.stop)  # before the reminder falls due
            stopped_at = time.monotonic()
            status, body = await readyz(port)
            while "ledger unreachable since" not in body or "connection refused" not in body:
                assert time.monotonic() - stopped_at < 5, body
                await asyncio.sleep(0.1)
                status, body = await readyz(port)
            assert status == 503
            await asyncio.sleep(4)  # the reminder falls due during the outage
            assert smtp_server.handler.messages == []
            assert pings(notify_socket) > 0  # a database away is no reason to restart
            await asyncio.to_thread(database.start)
            back = time.monotonic()
            await until(lambda: len(smtp_server.handler.messages) == 20, within=10)
            resumed = time.monotonic() - back
            while (await readyz(port))[0] != 200:
                assert time.monotonic() - back < 5, await readyz(port)
                await asyncio.sleep(0.1)
        finally:
            prober.done.set()
            worker.stop()
            await asyncio.wait_for(task, 30)
    assert resumed < 3  # within a few retries of its return, not at the next heartbeat
    assert prober.asked > 50 and prober.longest < 1.0
    assert debug_loop() == []


async def test_the_loop_answers_through_a_fifo_export_a_silent_relay_and_a_hung_ledger(
    tmp_path: Path,
    notify_socket: socket.socket,
    debug_loop: Callable[[], list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never greets
    config = write_cycle(
        tmp_path,
        port=silent.getsockname()[1],
        start=due_in(1),
        registrants=5,
        http_port=port,
        cycle_id="silence",
        # One try per pass: four tries with their back-off made the first pass last from
        # 6 to 20 s, by chance, and the test wait for it in vain on a loaded machine.
        smtp="timeout = 2\nattempts = 1",
        templates=True,
    )
    caplog.set_level(logging.INFO, logger="reminder")
    worker = await asyncio.to_thread(Worker, config, poll_seconds=0.1)
    task = asyncio.create_task(worker.run())
    prober = Prober(port)
    export = tmp_path / "registrants.csv"
    try:
        await started(worker, task)
        caplog.clear()  # the start's steps come before the HTTP face: nobody waits on them
        prober.start()
        await asyncio.sleep(2.5)  # the relay's greeting never comes: a timeout, a retry
        export.unlink()
        os.mkfifo(export)  # nobody ever writes: reading it would wait forever
        await until(lambda: "named pipe (FIFO)" in caplog.text, within=5)
        assert len(worker.snapshot.roster.registrants) == 5  # the last good list serves on
        # A ledger call that hangs (a frozen database server, a hung disk): not ready,
        # and the watchdog no longer fed, so that systemd restarts what is stuck.
        worker.monitor.stuck_after = 0.5
        pings(notify_socket)
        hung = asyncio.create_task(worker.thread.call(time.sleep, 1.5))
        await asyncio.sleep(0.7)
        pings(notify_socket)
        assert "has not answered" in (await readyz(port))[1]
        await asyncio.sleep(0.5)
        assert pings(notify_socket) == 0
        await hung
        await until(lambda: pings(notify_socket) > 0, within=2)
    finally:
        prober.done.set()
        worker.stop()
        await asyncio.wait_for(task, 30)
        silent.close()
    assert prober.asked > 30 and prober.longest < 1.0
    assert debug_loop() == []
    assert worker.transport.failed_attempts > 0  # it did try the silent relay


async def test_an_adoption_that_waited_on_another_worker_s_lock_is_told_and_sent(
    tmp_path: Path, smtp_server: Server, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A heartbeat gave up waiting after a third of the lease, yet its adoption, already
    # under way, went on in the ledger's thread: the claims were taken, and neither the
    # log nor a pass heard of it (a worker frozen while it held the workers' lock, seen
    # as a flaky cluster test).
    config = write_cycle(
        tmp_path,
        port=smtp_server.port,
        start=due_in(-5),  # the 1-hour reminder fell due 5 s ago
        registrants=1,
        cycle_id="adoption",
        ledger=f'url = "{postgres_url}"\nlease = "2s"',
        templates=True,
    )
    snapshot = load_snapshot(config)
    slot = snapshot.slots[0]
    now = datetime.now(UTC)
    with Ledger(postgres_url, worker="dead") as dead:
        Membership(dead).join("elsewhere", 1, now, timedelta(seconds=3))
        claim = Claim(
            slot.delivery_key("elu0@example.org"),
            "<claimed-by-a-dead-worker@irev.fr>",
            slot.due_at,
            deadline(slot.session, snapshot.cutoff),
        )
        assert dead.claim([claim], now)
    caplog.set_level(logging.INFO, logger="reminder")
    worker = await asyncio.to_thread(Worker, config, poll_seconds=0.2)
    task = asyncio.create_task(worker.run())
    release = threading.Event()

    def hold_the_workers_lock() -> None:
        with psycopg.connect(postgres_url) as other, other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WORKERS_LOCK,))
            release.wait(10)

    holder = threading.Thread(target=hold_the_workers_lock)
    try:
        await started(worker, task)
        assert smtp_server.handler.messages == []  # the dead worker's lease still runs
        # Once its lease has ended, the next heartbeat finds the lock held (by a frozen
        # worker's transaction, until the server ends it) and waits past its deadline.
        await asyncio.sleep(3.05 - (datetime.now(UTC) - now).total_seconds())
        holder.start()
        await asyncio.sleep(2)
        release.set()
        await until(lambda: len(smtp_server.handler.messages) == 1, within=5)
    finally:
        release.set()
        holder.join()
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert "adopted 1 deliveries of a worker whose lease expired" in caplog.text
