"""Fixtures that build real things and clean them up: a project folder, SMTP servers, a ledger."""

from __future__ import annotations

import os
import shutil
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from reminder.mail.smtpsink import SmtpSink
from reminder.storage.ledger import Ledger
from tests.support.project import REPO, Project
from tests.support.smtp import FaultyRecorder, Server, authenticator


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REMINDER_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("REMINDER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    for name in ("config.toml", "registrants.csv", "suppression.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    created = Project(tmp_path)
    # Any free port: tests (and other checkouts) run side by side on one machine.
    created.edit('listen = "127.0.0.1:8025"', 'listen = "127.0.0.1:0"')
    return created


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
