"""Real `reminder run` processes sharing one PostgreSQL ledger: shared by tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from reminder.mail.smtpsink import free_port
from tests.support.cycle import write_cycle


def write_project(
    folder: Path, port: int, start: datetime, registrants: int, *, lease: str, smtp: str = ""
) -> Path:
    """A cycle with one session at `start`, one 1-hour reminder, `registrants` recipients."""
    return write_cycle(
        folder,
        port=port,
        start=start,
        registrants=registrants,
        cycle_id="cluster",
        smtp=smtp,
        ledger=f'lease = "{lease}"',
        templates=True,
    )


@dataclass
class Arrival:
    at: float  # time.monotonic() when the server accepted it
    message_id: str
    recipients: list[str]


@dataclass
class Arrivals:
    """An aiosmtpd handler that answers DATA after `delay` and records each arrival."""

    delay: float = 0.0
    seen: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.content if isinstance(envelope.content, bytes) else b""
        header = next(
            (
                line.split(b":", 1)[1].strip().decode()
                # Unfolded: a long Message-ID starts on the line after its name.
                for line in data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").split(b"\r\n")
                if line.lower().startswith(b"message-id:")
            ),
            "",
        )
        with self.lock:
            self.seen.append(Arrival(time.monotonic(), header, list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: queued"

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for a in self.seen for r in a.recipients]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_worker(config: Path, url: str, name: str) -> Worker:
    """`reminder run` with its own state folder (as on another machine) on the shared ledger."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}
    env |= {
        "REMINDER_LEDGER__URL": url,
        "REMINDER_PATHS__STATE": str(config.parent / f"state-{name}"),
        # Workers on one machine each need their own HTTP port.
        "REMINDER_HTTP__LISTEN": f"127.0.0.1:{free_port()}",
    }
    log = config.parent / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reminder", "run", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, log)


def ledger_counts(url: str) -> dict[str, int]:
    """Deliveries per status in the shared ledger (empty while it has no schema)."""
    try:
        with psycopg.connect(url, connect_timeout=3) as db:
            if db.execute("SELECT to_regclass('deliveries')").fetchone() == (None,):
                return {}
            return dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))
    except psycopg.OperationalError:
        return {}


def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(0.05)


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found and not shutil.which("initdb"):
        raise RuntimeError("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    return found[-1].parent if found else Path(str(shutil.which("initdb"))).parent


class PrivatePostgres:
    """A throwaway PostgreSQL server (initdb + pg_ctl) that a test may stop and start."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="reminder-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses root: the server runs as the postgres system user then.
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.user:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.user, str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            cwd=self.folder,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"),
                  "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()
