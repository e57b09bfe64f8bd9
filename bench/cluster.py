"""Several `reminder run` workers on one PostgreSQL ledger (the test server by default).

1. Scaling: one worker on a SQLite ledger of its own, then one, two and three workers on
   PostgreSQL (4 connections each), in turn, send one batch through a relay answering
   DATA after 50 ms, then through Postfix's smtp-sink; throughput from the first to the
   last sent_at of the ledger, one PostgreSQL worker against the SQLite one, and two and
   three against one.
2. kill -9: two workers, 1,000 recipients, one killed at a random moment (N trials):
   lost (must be 0), duplicates (at most the killed worker's in-flight transactions),
   and the time from the kill to the adoption of its claims.

    .venv/bin/python bench/cluster.py [--url URL] [--registrants N] [--trials N]
                                      [--lease 10s] [--runs R]
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from common import postfix_sink, postgres_schema

from reminder.mail.smtpsink import SmtpSink
from tests.support.cluster import (
    Arrivals,
    Worker,
    ledger_counts,
    start_worker,
    wait_for,
    write_project,
)

PARIS = ZoneInfo("Europe/Paris")


def due_soon() -> datetime:
    return (datetime.now(PARIS) + timedelta(hours=1, seconds=6)).replace(microsecond=0)


def sent_span(url: str) -> float:
    with psycopg.connect(url) as db:
        first, last = db.execute(
            "SELECT min(sent_at), max(sent_at) FROM deliveries WHERE status = 'sent'"
        ).fetchone()
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()


def one_sqlite_batch(port: int, registrants: int) -> float:
    """Messages per second for one worker on a SQLite ledger of its own, for comparison."""
    folder = Path(tempfile.mkdtemp(prefix="reminder-cluster-"))
    config = write_project(folder, port, due_soon(), registrants, lease="30s")
    worker = start_worker(config, "", "solo")  # no ledger URL: the state folder's SQLite
    path = folder / "state-solo" / "ledger.sqlite"
    try:
        wait_for(lambda: sqlite_sent(path) == registrants, 600, "batch")
    finally:
        worker.stop()
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        first, last = db.execute(
            "SELECT min(sent_at), max(sent_at) FROM deliveries WHERE status = 'sent'"
        ).fetchone()
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return registrants / span


def sqlite_sent(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            found = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            return int(found.fetchone()[0])
    except sqlite3.OperationalError:  # the worker is still creating it
        return 0


def one_batch(base: str, port: int, workers: int, registrants: int) -> float:
    """Messages per second for `workers` workers sending one batch."""
    folder = Path(tempfile.mkdtemp(prefix="reminder-cluster-"))
    with postgres_schema(base) as url:
        config = write_project(folder, port, due_soon(), registrants, lease="30s")
        running = [start_worker(config, url, f"w{n}") for n in range(workers)]
        try:
            wait_for(lambda: ledger_counts(url).get("sent", 0) == registrants, 600, "batch")
        finally:
            for worker in running:
                worker.stop()
        return registrants / sent_span(url)


def scaling(base: str, registrants: int, runs: int) -> None:
    for name, sink in (("a relay answering DATA after 50 ms", "relay"), ("smtp-sink", "fast")):
        # One worker on SQLite, then one, two and three on PostgreSQL, in turn each run.
        rates: dict[str, list[float]] = {"sqlite": [], "1": [], "2": [], "3": []}
        size = registrants if sink == "relay" else registrants * 3
        for _ in range(runs):
            for what in rates:
                with ExitStack() as stack:
                    if sink == "relay":
                        port = stack.enter_context(SmtpSink(handler=Arrivals(delay=0.05))).port
                    else:
                        port = stack.enter_context(postfix_sink())
                    if what == "sqlite":
                        rates[what].append(one_sqlite_batch(port, size))
                    else:
                        rates[what].append(one_batch(base, port, int(what), size))
        alone = statistics.median(rates["sqlite"])
        one = statistics.median(rates["1"])
        for what, values in rates.items():
            median = statistics.median(values)
            who = "1 worker on SQLite" if what == "sqlite" else f"{what} worker(s) on PostgreSQL"
            line = (
                f"{name}, {size:,} messages, {who} x 4 connections: median {median:.0f} "
                f"messages/s ({min(values):.0f}-{max(values):.0f}, {runs} runs)"
            )
            if what == "1":
                line += f", {median / alone:.0%} of one on SQLite"
            elif what != "sqlite":
                line += f", {median / one:.2f}x one on PostgreSQL"
            print(line, flush=True)


def worker_id(url: str, worker: Worker) -> str | None:
    with psycopg.connect(url) as db:
        found = db.execute("SELECT id FROM workers WHERE pid = %s", [worker.process.pid]).fetchone()
    return str(found[0]) if found else None


def still_claimed_by(url: str, claimer: str) -> int:
    with psycopg.connect(url) as db:
        return int(
            db.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'claimed' AND claimed_by = %s",
                [claimer],
            ).fetchone()[0]
        )


def kill_trials(base: str, trials: int, lease: str) -> None:
    lost, doubled, adoption = [], [], []
    total = 1000
    for _ in range(trials):
        folder = Path(tempfile.mkdtemp(prefix="reminder-kill-"))
        handler = Arrivals(delay=0.01)
        with SmtpSink(handler=handler) as server, postgres_schema(base) as url:
            config = write_project(folder, server.port, due_soon(), total, lease=lease)
            workers = [start_worker(config, url, name) for name in ("a", "b")]
            try:
                moment = random.randint(50, 700)
                wait_for(lambda h=handler, m=moment: h.count() >= m, 60, "batch started")
                victim = random.choice(workers)
                claimer = worker_id(url, victim)
                victim.kill(signal.SIGKILL)
                killed = time.monotonic()
                if claimer is not None:
                    wait_for(lambda c=claimer: still_claimed_by(url, c) == 0, 120, "adoption")
                    adoption.append(time.monotonic() - killed)
                wait_for(lambda: ledger_counts(url).get("sent", 0) == total, 120, "all sent")
            finally:
                for worker in workers:
                    worker.stop()
        seen = Counter(handler.recipients())
        lost.append(total - len(seen))
        doubled.append(sum(n - 1 for n in seen.values()))
    print(
        f"kill -9 of one of two workers, {total} recipients, {trials} trials: lost "
        f"{sum(lost)}, duplicates per trial {doubled} (at most 4 = its connections), "
        f"death to adoption with lease {lease}: median {statistics.median(adoption):.1f} s "
        f"({min(adoption):.1f}-{max(adoption):.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--registrants", type=int, default=1200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--lease", default="10s")
    parser.add_argument("--only", choices=["scaling", "kill"], default=None)
    args = parser.parse_args()
    if args.only in (None, "scaling"):
        scaling(args.url, args.registrants, args.runs)
    if args.only in (None, "kill"):
        kill_trials(args.url, args.trials, args.lease)


if __name__ == "__main__":
    main()
