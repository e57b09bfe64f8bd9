"""The HTTP face under load: does scraping slow the batch, and how fast does it answer?

A reminder falls due for 10,000 registrants; a real `reminder run` sends it to a relay
answering DATA after 50 ms, with 4 connections. The same batch runs without HTTP load,
then while a second process requests /metrics and /readyz (alternately) at 200 requests
per second for the whole batch, on a fixed schedule (latency counts from each request's
scheduled instant, so a stall is not hidden by the requests it delays).
Targets: the batch's throughput within 5% of the unloaded one; p99 latency under 50 ms.

    .venv/bin/python bench/http_load.py [--registrants N] [--runs 3] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta

import aiohttp
from common import sample_project, slow_sink, wait_for_port
from worker import PARIS, run_worker, wait_for_batch, write_project

from reminder.mail.smtpsink import free_port


async def hammer(base: str, rate: float) -> None:
    """Open-loop load until SIGTERM: request n is sent at t0 + n / rate, whatever came
    before. Prints its figures as JSON."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    latencies: list[float] = []
    errors = 0
    paths = ("/metrics", "/readyz")

    async def one(session: aiohttp.ClientSession, path: str, due: float) -> None:
        nonlocal errors
        try:
            async with session.get(base + path) as response:
                await response.read()
                if response.status not in (200, 503):
                    errors += 1
        except aiohttp.ClientError:
            errors += 1
            return
        latencies.append(time.monotonic() - due)

    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = set()
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(session, paths[n % 2], due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    print(json.dumps({"latencies": latencies, "errors": errors, "seconds": elapsed}))


def batch(registrants: int, rate: float | None) -> tuple[float, dict[str, float] | None]:
    """One batch; its messages per second, and the load's figures when there was load."""
    config = sample_project()
    with slow_sink(0.05) as (port, _):
        start = (datetime.now(PARIS) + timedelta(hours=1, seconds=15)).replace(microsecond=0)
        due = start - timedelta(hours=1)
        http_port = free_port()
        write_project(config, port, start, registrants, http_port=http_port)
        worker = run_worker(config)
        load = None
        try:
            if rate:
                wait_for_port(http_port, within=60)  # the load covers the whole batch
                load = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--hammer",
                        f"http://127.0.0.1:{http_port}",
                        "--rate",
                        str(rate),
                    ],
                    stdout=subprocess.PIPE,
                )
            sent = wait_for_batch(config, registrants, worker)
        finally:
            output = b"{}"
            if load is not None:
                load.send_signal(signal.SIGTERM)
                output, _ = load.communicate(timeout=60)
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    throughput = registrants / (sent[-1] - due).total_seconds()
    if not rate:
        return throughput, None
    data = json.loads(output)
    latencies = sorted(data["latencies"])
    return throughput, {
        "requests": len(latencies),
        "rate": len(latencies) / data["seconds"],
        "errors": data["errors"],
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--hammer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hammer:
        asyncio.run(hammer(args.hammer, args.rate))
        return
    ratios, p99s = [], []
    for run in range(1, args.runs + 1):
        quiet, _ = batch(args.registrants, None)
        loaded, figures = batch(args.registrants, args.rate)
        assert figures is not None
        ratios.append(loaded / quiet)
        p99s.append(figures["p99_ms"])
        print(
            f"run {run}: {args.registrants:,} messages to a 50 ms relay: {quiet:.1f} msg/s "
            f"without HTTP load, {loaded:.1f} msg/s under {figures['rate']:.0f} req/s "
            f"({loaded / quiet:.1%}); {figures['requests']:,} requests, "
            f"{figures['errors']} errors, p50 {figures['p50_ms']:.1f} ms, "
            f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms",
            flush=True,
        )
    print(
        f"median of {args.runs}: throughput under load {statistics.median(ratios):.1%} of "
        f"unloaded ({min(ratios):.1%}–{max(ratios):.1%}); p99 "
        f"{statistics.median(p99s):.1f} ms ({min(p99s):.1f}–{max(p99s):.1f})"
    )


if __name__ == "__main__":
    main()
