"""Shared by the benchmarks: the sample project, composed messages, and SMTP sinks."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reminder.core.mailing import DeliveryState  # noqa: E402
from reminder.core.model import Registrant  # noqa: E402
from reminder.core.notices import Told, facts_for  # noqa: E402
from reminder.core.plan import Slot  # noqa: E402
from reminder.mail.messages import Composed  # noqa: E402
from reminder.mail.smtpsink import SmtpSink, free_port  # noqa: E402
from reminder.service.snapshot import Snapshot, load_snapshot  # noqa: E402
from reminder.storage.ledger import Claim, Ledger, Outcome  # noqa: E402


def sample_project() -> Path:
    """A throwaway copy of the sample project; returns its config path."""
    folder = Path(tempfile.mkdtemp(prefix="reminder-bench-"))
    for name in ("config.toml", "registrants.csv", "suppression.txt"):
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "templates", folder / "templates")
    return folder / "config.toml"


def registrant(n: int) -> Registrant:
    return Registrant(f"elu{n}@example.org", f"Prénom{n}", f"Nom{n}", "Maire", f"Commune {n}")


def record_told(
    ledger: Ledger, slot: Slot, people: Sequence[Registrant], link: str, at: datetime
) -> None:
    """Record `slot`'s reminder as sent to each of `people` at `at`, with what it told
    them (the facts change notices are derived from)."""
    for first in range(0, len(people), 50_000):
        claims = [
            Claim(
                slot.delivery_key(p.key),
                f"<{slot.lead}.{n}@bench>",
                slot.due_at,
                slot.session.start,
                slot.session.id,
                Told(facts_for(slot.session, p, link, attending=True), 0, at),
            )
            for n, p in enumerate(people[first : first + 50_000], first)
        ]
        ledger.claim(claims, at)
        ledger.record([Outcome(c.key, DeliveryState.SENT, "250", at) for c in claims], at)


def compose_many(count: int) -> tuple[Snapshot, list[Composed]]:
    snapshot = load_snapshot(sample_project())
    slot = snapshot.slots[1]
    return snapshot, [
        snapshot.composer.compose(slot, registrant(n), slot.due_at) for n in range(count)
    ]


@contextmanager
def postfix_sink() -> Iterator[int]:
    """Postfix's smtp-sink: a fast C sink that accepts and discards."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        sys.exit("smtp-sink not found: install Debian's postfix package (apt-get install postfix)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-u", "nobody", "-m", "512", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


class SlowRelay:
    """An aiosmtpd handler that waits before answering each DATA, like a remote relay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        self.count += 1
        return "250 2.0.0 Ok: queued"


@contextmanager
def slow_sink(delay: float = 0.05) -> Iterator[tuple[int, SlowRelay]]:
    handler = SlowRelay(delay)
    with SmtpSink(handler=handler) as sink:
        yield sink.port, handler


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL to a fresh schema of the PostgreSQL database `base`, dropped afterwards."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
        try:
            yield f"{base}?options=-csearch_path%3D{name}"
        finally:
            admin.execute(f"DROP SCHEMA {name} CASCADE")


def vacuum(url: str) -> None:
    """What autovacuum does on a production server some minutes after a batch (the
    test server runs without it): dead row versions gone, visibility map and
    statistics current, so that index-only scans read no table page."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")


def wait_for_port(port: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def summary(label: str, values: list[float], unit: str) -> str:
    values = sorted(values)
    mean = sum(values) / len(values)
    return (
        f"{label}: mean {mean:.3f} {unit}, best {values[0]:.3f}, worst {values[-1]:.3f} "
        f"({len(values)} runs)"
    )


__all__ = [
    "compose_many",
    "postfix_sink",
    "postgres_schema",
    "record_told",
    "registrant",
    "sample_project",
    "slow_sink",
    "summary",
    "vacuum",
    "wait_for_port",
]
