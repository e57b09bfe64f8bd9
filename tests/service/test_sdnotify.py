"""systemd's notify protocol, received on a real unix datagram socket as systemd would."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from reminder.service.sdnotify import Notifier
from reminder.service.worker import Worker
from tests.support.project import Project, person, until

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd listens on: a unix datagram socket named by NOTIFY_SOCKET."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        yield sock


def received(sock: socket.socket) -> list[dict[str, str]]:
    messages = []
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return messages
        messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))


def test_a_datagram_reaches_the_socket(notify_socket: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    assert notifier.notify(READY="1", STATUS="ready; next wake-up\nsoon")
    assert received(notify_socket) == [{"READY": "1", "STATUS": "ready; next wake-up soon"}]


def test_the_abstract_namespace_is_understood() -> None:
    name = f"reminder-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify(WATCHDOG="1")
        assert received(sock) == [{"WATCHDOG": "1"}]


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).notify(READY="1")
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert not gone.notify(READY="1")  # logged once, never raised


def test_a_listener_that_does_not_read_never_holds_the_sender(
    notify_socket: socket.socket,
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    began = time.monotonic()
    answers = [notifier.notify(WATCHDOG="1") for _ in range(2000)]  # its queue fills up
    assert time.monotonic() - began < 1.0
    assert answers[0] and not answers[-1]


def test_the_watchdog_is_for_this_process_only() -> None:
    mine = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).ping_interval == 10.0
    assert Notifier({**mine, "WATCHDOG_PID": "1"}).ping_interval is None
    assert Notifier({}).ping_interval is None


async def test_the_worker_says_ready_after_its_first_pass_and_pings_the_watchdog(
    project: Project, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the HTTP server: systemd's notifications do not depend on it.
    project.edit('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nenabled = false')
    project.registrants([person(0)])
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    traveller = time_machine.travel(datetime(2023, 2, 20, 9, tzinfo=PARIS), tick=True)
    traveller.start()
    worker = Worker(project.config, poll_seconds=0.05)
    task = asyncio.create_task(worker.run())
    messages: list[dict[str, str]] = []

    def seen(key: str, count: int = 1) -> bool:
        messages.extend(received(notify_socket))
        return sum(key in m for m in messages) >= count

    try:
        await until(lambda: (seen("READY") and seen("WATCHDOG", 3)) or task.done())
        assert worker.http is None
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
        traveller.stop()
    seen("STOPPING")
    ready = next(m for m in messages if "READY" in m)
    assert ready["STATUS"] == "ready; next wake-up 2023-02-22 17:00 CET"
    assert messages[-1]["STOPPING"] == "1"
