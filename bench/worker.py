"""The service under load and at rest, as a real `reminder run` process.

1. A reminder due for 10,000 registrants, against Postfix's smtp-sink, then for 2,000
   against a relay answering DATA after 50 ms: how long after its due instant the
   first message is accepted (the ledger's first sent_at, stamped after the server's
   250), and the rate of the whole batch, composing included.
   Targets: first message within 1 s; the batch at the transport benchmark's rate.
2. An idle worker (nothing due for days) over 60 s: resident memory and CPU time.
   Targets: under 80 MB, close to 0% CPU.

    .venv/bin/python bench/worker.py [--registrants N] [--relay-registrants N]
                                     [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common import postfix_sink, sample_project, slow_sink

from tests.support.cycle import write_cycle

PARIS = ZoneInfo("Europe/Paris")


def write_project(
    config: Path,
    port: int,
    start: datetime,
    registrants: int,
    *,
    http_port: int = 0,
    connections: int = 4,
) -> None:
    write_cycle(
        config.parent,
        port=port,
        start=start,
        registrants=registrants,
        http_port=http_port,
        connections=connections,
    )


def run_worker(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "reminder", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def sent_times(config: Path) -> list[datetime]:
    path = config.parent / "state" / "ledger.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        try:
            rows = db.execute("SELECT sent_at FROM deliveries WHERE status = 'sent'").fetchall()
        except sqlite3.OperationalError:
            return []
    return sorted(datetime.fromisoformat(r[0]) for r in rows)


def wait_for_batch(
    config: Path, registrants: int, worker: subprocess.Popen[bytes], within: float = 900
) -> list[datetime]:
    """The sent_at of every message, once the whole batch is in the ledger."""
    deadline = time.monotonic() + within
    while len(sent := sent_times(config)) < registrants:
        if time.monotonic() > deadline or worker.poll() is not None:
            sys.exit(f"the batch did not complete ({len(sent)} sent)")
        time.sleep(0.5)
    return sent


def load(registrants: int, relay: bool = False) -> None:
    config = sample_project()
    with slow_sink(0.05) if relay else postfix_sink() as sink:
        port = sink[0] if isinstance(sink, tuple) else sink
        start = (datetime.now(PARIS) + timedelta(hours=1, seconds=25)).replace(microsecond=0)
        due = start - timedelta(hours=1)
        write_project(config, port, start, registrants)
        worker = run_worker(config)
        try:
            sent = wait_for_batch(config, registrants, worker)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    first, last = sent[0], sent[-1]
    sink_name = "a relay answering DATA after 50 ms" if relay else "Postfix smtp-sink"
    print(
        f"{sink_name}, 4 connections, due for {registrants:,} registrants at "
        f"{due:%H:%M:%S}: first message accepted "
        f"{(first - due).total_seconds():.3f} s after the due instant; the batch took "
        f"{(last - first).total_seconds():.1f} s, {registrants / (last - due).total_seconds():.0f}"
        " messages/s from the due instant to the last"
    )


def idle(seconds: float) -> None:
    config = sample_project()
    with postfix_sink() as port:
        write_project(config, port, datetime.now(PARIS) + timedelta(days=20), 1000)
        worker = run_worker(config)
        try:
            time.sleep(5)  # start-up, then nothing is due for days
            ticks = os.sysconf("SC_CLK_TCK")

            def cpu() -> float:
                fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks

            before, started = cpu(), time.monotonic()
            peak = 0
            while time.monotonic() - started < seconds:
                status = Path(f"/proc/{worker.pid}/status").read_text()
                rss = int(
                    next(
                        line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")
                    )
                )
                peak = max(peak, rss)
                time.sleep(1)
            used = cpu() - before
            elapsed = time.monotonic() - started
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    print(
        f"idle worker over {elapsed:.0f} s (1,000 registrants loaded): peak RSS "
        f"{peak / 1024:.1f} MB, CPU {used:.2f} s = {used / elapsed:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=10_000)
    parser.add_argument("--relay-registrants", type=int, default=2_000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    args = parser.parse_args()
    load(args.registrants)
    load(args.relay_registrants, relay=True)
    idle(args.idle_seconds)


if __name__ == "__main__":
    main()
