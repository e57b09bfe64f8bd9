"""Registrants' declines through the HTTP face while a batch sends: does it slow the batch?

A reminder falls due for 10,000 registrants; a real `reminder run` sends it to a relay
answering DATA after 50 ms, with 4 connections, every mail carrying its signed decline
link. The same batch runs twice: alone, and with 100 registrants declining the session
at once (100 concurrent POSTs to /m/<token>/<session>, their first request building the
token index) once a tenth of the batch has gone out. Targets: the batch's throughput
within 5% of the batch alone; every decline recorded.

    .venv/bin/python bench/declines.py [--registrants N] [--runs 3] [--declines 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from common import sample_project, slow_sink, wait_for_port
from worker import PARIS, sent_times, wait_for_batch, write_project

from reminder.core.unsubscribe import token
from reminder.mail.smtpsink import free_port

SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 - the bench's own
CYCLE = "bench"  # write_cycle's cycle id


def run_worker(config: Path) -> subprocess.Popen[bytes]:
    """`reminder run` with the secret its signed links need, from the environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMINDER_")}
    env["REMINDER_HTTP__SECRET"] = SECRET
    return subprocess.Popen(
        [sys.executable, "-m", "reminder", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def decline_at_once(base: str, session_id: str, people: range) -> list[float]:
    """Every one of `people` declines the session at the same moment; their latencies."""

    async def one(client: aiohttp.ClientSession, n: int) -> float:
        url = f"{base}/m/{token(SECRET, CYCLE, f'elu{n}@example.org')}/{session_id}"
        began = time.monotonic()
        async with client.post(url, data={"choice": "decline"}) as response:
            await response.read()
            if response.status != 200:
                sys.exit(f"a decline was answered {response.status}")
        return time.monotonic() - began

    connector = aiohttp.TCPConnector(limit=len(people))
    async with aiohttp.ClientSession(connector=connector) as client:
        return await asyncio.gather(*(one(client, n) for n in people))


def declines_recorded(config: Path) -> int:
    path = config.parent / "state" / "ledger.sqlite"
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM declines").fetchone()[0])


def batch(registrants: int, declines: int) -> tuple[float, list[float]]:
    """One batch; its messages per second, and the declines' latencies if any."""
    config = sample_project()
    with slow_sink(0.05) as (port, _):
        start = (datetime.now(PARIS) + timedelta(hours=1, seconds=15)).replace(microsecond=0)
        due = start - timedelta(hours=1)
        http_port = free_port()
        write_project(config, port, start, registrants, http_port=http_port)
        text = config.read_text(encoding="utf-8")
        config.write_text(
            text.replace("[http]\n", '[http]\npublic_url = "https://rappels.example.org"\n'),
            encoding="utf-8",
        )
        worker = run_worker(config)
        latencies: list[float] = []
        try:
            if declines:
                wait_for_port(http_port, within=60)
                while len(sent_times(config)) < registrants // 10:
                    if worker.poll() is not None:
                        sys.exit("the worker stopped")
                    time.sleep(0.2)
                # The last registrants of the export: not mailed yet when they decline.
                people = range(registrants - declines, registrants)
                base = f"http://127.0.0.1:{http_port}"
                latencies = asyncio.run(decline_at_once(base, start.date().isoformat(), people))
            sent = wait_for_batch(config, registrants, worker)
            if declines and declines_recorded(config) != declines:
                sys.exit(f"{declines_recorded(config)} declines recorded, not {declines}")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    return registrants / (sent[-1] - due).total_seconds(), sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--declines", type=int, default=100)
    args = parser.parse_args()
    ratios = []
    for run in range(1, args.runs + 1):
        alone, _ = batch(args.registrants, 0)
        beside, latencies = batch(args.registrants, args.declines)
        ratios.append(beside / alone)
        print(
            f"run {run}: {args.registrants:,} messages to a 50 ms relay: {alone:.1f} msg/s "
            f"alone, {beside:.1f} msg/s with {args.declines} declines at once "
            f"({beside / alone:.1%}); declines answered in p50 "
            f"{1000 * latencies[len(latencies) // 2]:.0f} ms, max {1000 * latencies[-1]:.0f} ms",
            flush=True,
        )
    print(
        f"median of {args.runs}: throughput with the declines {statistics.median(ratios):.1%} "
        f"of the batch alone ({min(ratios):.1%}–{max(ratios):.1%})"
    )


if __name__ == "__main__":
    main()
