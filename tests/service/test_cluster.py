"""Several real `reminder run` processes on one real PostgreSQL ledger, a real SMTP sink,
and the failures a cluster must survive: kill -9, a database restart, a frozen worker."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from reminder.mail.smtpsink import SmtpSink
from tests.support.cluster import (
    Arrivals,
    Worker,
    ledger_counts,
    private_postgres,
    start_worker,
    wait_for,
)
from tests.support.cluster import write_project as write_cluster_project

PARIS = ZoneInfo("Europe/Paris")
CONNECTIONS = 4  # per worker: at most this many transactions in flight


@pytest.fixture
def sink() -> Iterator[tuple[int, Arrivals]]:
    handler = Arrivals(delay=0.01)
    with SmtpSink(handler=handler) as server:
        yield server.port, handler


def due_soon(seconds: float = 1.0) -> datetime:
    """A session whose 1-hour reminder falls due about when the workers start (a worker
    that starts later sends it at its first pass: late, not lost)."""
    return (datetime.now(PARIS) + timedelta(hours=1, seconds=seconds)).replace(microsecond=0)


def stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()


def claims_held_by(url: str, pid: int) -> int:
    """Open claims of the worker process `pid` (its identity is host:pid:start)."""
    with psycopg.connect(url) as db:
        found = db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'claimed' AND claimed_by LIKE %s",
            [f"%:{pid}:%"],
        ).fetchone()
    return int(found[0]) if found else 0


def duplicates(handler: Arrivals) -> Counter[str]:
    seen = Counter(handler.recipients())
    return Counter({who: n - 1 for who, n in seen.items() if n > 1})


def assert_same_message_ids(handler: Arrivals) -> None:
    ids: dict[str, set[str]] = {}
    for arrival in handler.seen:
        for who in arrival.recipients:
            ids.setdefault(who, set()).add(arrival.message_id)
    assert all(len(found) == 1 for found in ids.values()), "a resend changed its Message-ID"


def test_two_workers_share_a_batch_and_survive_kill_9_of_either(
    tmp_path: Path, postgres_url: str, sink: tuple[int, Arrivals]
) -> None:
    port, handler = sink
    total = 1000
    config = write_cluster_project(tmp_path, port, due_soon(), total, lease="2s")
    workers = [start_worker(config, postgres_url, name) for name in ("a", "b")]
    try:
        moment = random.randint(50, 500)  # noqa: S311 - a random moment, not a secret
        wait_for(lambda: handler.count() >= moment, 30, "the batch started")
        victim = random.choice(workers)  # noqa: S311
        victim.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.process.wait(10)
        left = claims_held_by(postgres_url, victim.process.pid)
        wait_for(lambda: ledger_counts(postgres_url).get("sent", 0) == total, 30, "all sent")
        finished = time.monotonic() - killed_at
        survivor = next(w for w in workers if w is not victim)
        # Killed between two steps, a worker leaves nothing to adopt; else it is told.
        assert "adopted" in survivor.text() or not left
    finally:
        stop_all(workers)
    assert set(handler.recipients()) == {f"elu{n}@example.org" for n in range(total)}
    # Only what the killed worker had in flight may arrive twice, with the same Message-ID.
    assert sum(duplicates(handler).values()) <= CONNECTIONS
    assert_same_message_ids(handler)
    # Adopted after the lease (2 s) and a heartbeat, then sent: well within one more pass.
    assert finished < 20


def test_a_database_restart_pauses_the_workers_and_loses_or_doubles_nothing(
    tmp_path: Path, sink: tuple[int, Arrivals]
) -> None:
    port, handler = sink
    handler.delay = 0.02
    total = 300
    with private_postgres() as server:
        config = write_cluster_project(tmp_path, port, due_soon(), total, lease="5s")
        workers = [start_worker(config, server.url, name) for name in ("a", "b")]
        try:
            wait_for(lambda: handler.count() >= 40, 30, "the batch started")
            server.stop()
            time.sleep(1.0)  # the workers find the database gone mid-batch
            server.start()
            wait_for(lambda: ledger_counts(server.url).get("sent", 0) == total, 40, "all sent")
        finally:
            stop_all(workers)
        logs = [worker.text() for worker in workers]
    assert sorted(handler.recipients()) == sorted(f"elu{n}@example.org" for n in range(total))
    assert any("does not answer" in text for text in logs)
    assert any("answers again" in text for text in logs)


def test_a_worker_frozen_past_its_lease_does_not_send_what_another_adopted(
    tmp_path: Path, postgres_url: str, sink: tuple[int, Arrivals]
) -> None:
    port, handler = sink
    handler.delay = 0.02
    total = 400
    config = write_cluster_project(tmp_path, port, due_soon(), total, lease="2s")
    frozen, other = workers = [start_worker(config, postgres_url, name) for name in ("a", "b")]
    try:
        wait_for(lambda: handler.count() >= 40, 30, "the batch started")
        frozen.kill(signal.SIGSTOP)
        wait_for(lambda: "adopted" in other.text(), 20, "the other worker adopted")
        wait_for(lambda: ledger_counts(postgres_url).get("sent", 0) == total, 30, "all sent")
        sent_before = handler.count()
        frozen.kill(signal.SIGCONT)
        wait_for(lambda: "lease had expired" in frozen.text(), 20, "the frozen worker noticed")
        time.sleep(0.5)
    finally:
        stop_all(workers)
    # After SIGCONT, at most the transactions it had in flight complete; nothing new.
    assert handler.count() - sent_before <= CONNECTIONS
    # Its pass ends counting what the ledger owes now (nothing), not what it had planned.
    assert "still owed" not in frozen.text()
    assert sum(duplicates(handler).values()) <= CONNECTIONS
    assert_same_message_ids(handler)


def test_three_workers_hold_one_rate_limit_together(
    tmp_path: Path, postgres_url: str, sink: tuple[int, Arrivals]
) -> None:
    port, handler = sink
    total, per_second = 60, 15
    config = write_cluster_project(
        tmp_path, port, due_soon(), total, lease="5s", smtp=f"max_per_second = {per_second}"
    )
    workers = [start_worker(config, postgres_url, name) for name in ("a", "b", "c")]
    try:
        wait_for(lambda: handler.count() == total, 40, "all sent")
    finally:
        stop_all(workers)
    arrivals = sorted(a.at for a in handler.seen)
    # No one-second window of the server's clock holds more than the limit.
    busiest = max(
        sum(1 for t in arrivals[i:] if t < start + 1.0) for i, start in enumerate(arrivals)
    )
    assert busiest <= per_second
    assert set(handler.recipients()) == {f"elu{n}@example.org" for n in range(total)}
    assert arrivals[-1] - arrivals[0] >= (total - per_second) / per_second - 0.5


def test_a_worker_killed_mid_send_holds_the_shared_rate_back_for_one_lease_at_most(
    tmp_path: Path, postgres_url: str
) -> None:
    # Its unfinished send stays in the shared budget: counted as ended when its lease
    # runs out, not a whole transaction deadline (smtp.timeout, 60 s) after it began.
    handler = Arrivals(delay=0.3)
    total, per_second, lease = 100, 10, 3.0
    with SmtpSink(handler=handler) as server:
        config = write_cluster_project(
            tmp_path, server.port, due_soon(), total, lease=f"{lease:g}s",
            smtp=f"max_per_second = {per_second}",
        )  # fmt: skip
        workers = [start_worker(config, postgres_url, name) for name in ("a", "b", "c")]
        try:
            wait_for(lambda: handler.count() >= 40, 30, "the batch started")
            workers[0].kill(signal.SIGKILL)  # with sends under way: DATA takes 300 ms
            killed = time.monotonic()
            wait_for(lambda: handler.count() == total, 60, "all sent")
        finally:
            stop_all(workers)
    arrivals = sorted(a.at for a in handler.seen)
    after = [t for t in arrivals if t > killed]
    gaps = [b - a for a, b in zip([killed, *after], after, strict=False)]
    assert max(gaps) < lease + 1.0
    # Within a lease of the kill the survivors send at the limit again, as the budget
    # keeps it (a send's window starts when it ends: 10 per 1.3 s with DATA in 300 ms),
    # where the dead worker's send used to hold them all for smtp.timeout (60 s).
    settled = [t for t in after if killed + lease + 1 <= t < killed + lease + 3]
    assert len(settled) >= per_second, (len(settled), max(gaps))
