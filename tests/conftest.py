"""Fixtures that build real things and clean them up: a project folder, SMTP servers, a ledger."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from reminder.mail.smtpsink import Received, SmtpSink
from reminder.service.snapshot import Snapshot, load_snapshot
from reminder.service.worker import Worker
from reminder.storage.ledger import Ledger

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REMINDER_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("REMINDER_"):
            monkeypatch.delenv(name)


@dataclass
class Project:
    """A copy of the sample project (config, templates, export) in a temporary folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def edit(self, old: str, new: str) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert old in text, f"{old!r} is not in the sample config"
        self.config.write_text(text.replace(old, new, 1), encoding="utf-8")

    def append(self, text: str) -> None:
        with self.config.open("a", encoding="utf-8") as file:
            file.write("\n" + text + "\n")

    def registrants(self, rows: list[dict[str, str]], header: list[str] | None = None) -> None:
        header = header or ["Nom", "Prénom", "Courriel", "Fonction", "Collectivité", "Séances"]
        lines = [";".join(header)]
        lines += [";".join(row.get(column, "") for column in header) for row in rows]
        (self.root / "registrants.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def snapshot(self) -> Snapshot:
        return load_snapshot(self.config)


def person(n: int, sessions: str = "toutes") -> dict[str, str]:
    return {
        "Nom": f"Martin{n}",
        "Prénom": f"Alex{n}",
        "Courriel": f"alex{n}@example.org",
        "Fonction": "Maire",
        "Collectivité": f"Commune {n}",
        "Séances": sessions,
    }


@pytest.fixture
def project(tmp_path: Path) -> Project:
    for name in ("config.toml", "registrants.csv", "suppression.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    created = Project(tmp_path)
    # Any free port: tests (and other checkouts) run side by side on one machine.
    created.edit('listen = "127.0.0.1:8025"', 'listen = "127.0.0.1:0"')
    return created


@dataclass
class FaultyRecorder:
    """An aiosmtpd handler that records, and answers what a test tells it to.

    rcpt_replies: per recipient, replies to give to its next RCPT commands;
    data_replies: replies to give to the next DATA commands, in turn;
    data_delay: seconds to wait before answering each DATA (a slow remote relay).
    """

    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    data_delay: float = 0.0
    stall_first_data: float = 0.0
    messages: list[Received] = field(default_factory=list)
    peers: set[object] = field(default_factory=set)  # one per connection
    tls: list[bool] = field(default_factory=list)  # per message: did it come over TLS?
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: Any,
        session: Any,
        envelope: Any,
        address: str,
        options: list[str],
    ) -> str:
        with self.lock:
            queued = self.rcpt_replies.get(address)
            if queued:
                return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else None
            stall, self.stall_first_data = self.stall_first_data, 0.0
        if reply is not None and not reply.startswith("250"):
            return reply
        received = Received.of(envelope)
        with self.lock:
            self.peers.add(session.peer)
            self.tls.append(session.ssl is not None)
        if stall:
            # The server has the message, then goes silent: the client times out after DATA.
            with self.lock:
                self.messages.append(received)
            await asyncio.sleep(stall)
            return "250 OK"
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self.lock:
            self.messages.append(received)
        return "250 2.0.0 Ok: queued"

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            return [
                message_from_bytes(m.data, policy=policy.default)  # type: ignore[misc]
                for m in self.messages
            ]

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for m in self.messages for r in m.recipients]


@dataclass
class Server:
    sink: SmtpSink
    handler: FaultyRecorder
    ca: trustme.CA | None = None
    ca_file: Path | None = None

    @property
    def port(self) -> int:
        return self.sink.port


@pytest.fixture
def smtp_server() -> Iterator[Server]:
    """A plain aiosmtpd server on 127.0.0.1 with a recording, fault-injecting handler."""
    handler = FaultyRecorder()
    with SmtpSink(handler=handler) as sink:
        yield Server(sink, handler)


@pytest.fixture
def tls_material(tmp_path: Path) -> tuple[trustme.CA, ssl.SSLContext, Path]:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca, context, ca_file


def authenticator(user: str, password: str) -> Callable[..., AuthResult]:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and (data.password == password.encode())
        )
        return AuthResult(success=ok, handled=False)

    return check


@pytest.fixture
def starttls_server(tls_material: tuple[trustme.CA, ssl.SSLContext, Path]) -> Iterator[Server]:
    """STARTTLS required, then AUTH required: like a submission port (587)."""
    ca, context, ca_file = tls_material
    handler = FaultyRecorder()
    with SmtpSink(
        handler=handler,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator("cycle", "s3cret"),
    ) as sink:
        yield Server(sink, handler, ca, ca_file)


POSTGRES = os.environ.get("REMINDER_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")


def _postgres_admin() -> Any:
    """A connection to the test server, or a skip (a failure under CI: no silent SQLite)."""
    import psycopg

    try:
        return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must run for the tests under CI ({POSTGRES}): {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES}: {exc}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh schema of the test database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with _postgres_admin() as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a ledger lives: a SQLite file, or a PostgreSQL schema; every contract test
    runs on both."""
    if request.param == "sqlite":
        return tmp_path / "state" / "ledger.sqlite"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def ledger(ledger_target: str | Path) -> Iterator[Ledger]:
    with Ledger(ledger_target, worker="test") as opened:
        yield opened


class Clock:
    """A clock a test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    """Wait for a condition (not for a wall-clock instant), failing after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def started(worker: Worker, task: asyncio.Task[None], within: float = 20.0) -> None:
    """Until the worker's first pass has run, or its start failed (raised here)."""
    first_pass = asyncio.ensure_future(worker.started.wait())
    try:
        await asyncio.wait({task, first_pass}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        first_pass.cancel()
    if task.done():
        task.result()
    if not worker.started.is_set():
        raise AssertionError("the worker did not start in time")
