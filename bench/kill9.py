"""kill -9 at random moments of a 1,000-recipient batch: how many messages go out twice.

Each trial: a real `reminder run` (4 connections) sends a due reminder to 1,000
registrants through an aiosmtpd sink taking 5 ms per DATA; it is killed with SIGKILL
after a random number of messages, then restarted until the batch is done. Counted:
the recipients who received a second copy (target: at most smtp.connections, each
with the Message-ID of its first copy) and those who received nothing (target: 0).

    .venv/bin/python bench/kill9.py [--trials 10] [--registrants 1000] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from common import sample_project
from worker import run_worker, write_project

from reminder.mail.smtpsink import SmtpSink

PARIS = ZoneInfo("Europe/Paris")


class Recorder:
    """Records (recipient, Message-ID) of each accepted message, after a 5 ms pause."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        message_id = str(message_from_bytes(envelope.content)["Message-ID"])
        self.received += [(recipient, message_id) for recipient in envelope.rcpt_tos]
        return "250 2.0.0 Ok: queued"


def sent(config: Path) -> int:
    path = config.parent / "state" / "ledger.sqlite"
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            found = db.execute("SELECT count(*) FROM deliveries WHERE status='sent'").fetchone()
            return int(found[0])
    except sqlite3.OperationalError:
        return 0


def wait(condition: Any, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the batch did not progress")
        time.sleep(0.005)


def trial(registrants: int, chance: random.Random) -> tuple[int, int, int, bool]:
    """(messages at the kill, recipients sent twice, recipients never sent, ids kept)."""
    recorder = Recorder(0.005)
    with SmtpSink(handler=recorder) as sink:
        config = sample_project()
        # The 1h reminder of a session 59 minutes from now: due at once.
        write_project(config, sink.port, datetime.now(PARIS) + timedelta(minutes=59), registrants)
        kill_at = chance.randint(1, registrants - 50)
        first = run_worker(config)
        wait(lambda: len(recorder.received) >= kill_at)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        time.sleep(0.1)  # DATA still being answered by the sink is recorded
        at_kill = len(recorder.received)
        second = run_worker(config)
        wait(lambda: sent(config) == registrants)
        second.send_signal(signal.SIGTERM)
        second.wait(30)
        if first.stderr:
            first.stderr.close()
        if second.stderr:
            second.stderr.close()
    copies = Counter(recipient for recipient, _ in recorder.received)
    ids = Counter(recorder.received)
    twice = sum(1 for n in copies.values() if n > 1)
    missing = registrants - len(copies)
    same_ids = len(ids) == len(copies)
    return at_kill, twice, missing, same_ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--registrants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    chance = random.Random(args.seed)  # kill points, not security
    results = []
    for number in range(1, args.trials + 1):
        at_kill, twice, missing, same_ids = trial(args.registrants, chance)
        results.append(twice)
        print(
            f"trial {number:>2}: killed after {at_kill:>4} messages; sent twice {twice}, "
            f"never sent {missing}, Message-IDs kept: {'yes' if same_ids else 'NO'}",
            flush=True,
        )
    print(f"sent twice per kill: {', '.join(map(str, results))} (max {max(results)}; target <= 4)")


if __name__ == "__main__":
    main()
