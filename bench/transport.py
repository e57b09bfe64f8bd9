"""Sending 10,000 composed reminders: smtplib versus our pooled transport, with and
without the ledger.

(a) smtplib, a new connection per message; (b) smtplib, one reused connection;
(c) our SmtpTransport with a pool of N connections: alone (results reported to
nowhere); with a ledger that writes nothing, each claim and outcome still handed to the
ledger's thread and answered (the hand-off's own cost); then with each delivery claimed
in and settled to a real ledger as the worker does it (the ledger in its own thread,
claims in the worker's steps, one step ahead of sending, each outcome made durable,
with those queued beside it, before its connection's next transaction): a SQLite file,
then a fresh schema of a PostgreSQL database; each in turn, `--runs` times, side by
side. Against (i) Postfix's smtp-sink, a fast C sink, and (ii) an
aiosmtpd sink that waits 50 ms before answering each DATA, like a remote relay (ideal
rate: N / 50 ms). Targets: (c) >= 90% of the ideal on (ii); (c) >= the best of (a) and
(b) on (i); on (i), (c) with either ledger >= 90% of (c) alone.

    .venv/bin/python bench/transport.py [--messages N] [--connections N ...] [--quick]
                                        [--runs R] [--ledger URL] [--sink fast|relay]

--ledger is the PostgreSQL database (default: the test server's; '' for none).
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import compose_many, postfix_sink, postgres_schema, slow_sink

from reminder.core.mailing import DeliveryKey, DeliveryState, MailKind
from reminder.core.planned import Tally
from reminder.inputs.config import Smtp
from reminder.mail.messages import Composed
from reminder.mail.smtp import SmtpTransport
from reminder.mail.transport import Envelope, Result, Verdict, each
from reminder.service.delivery import claim_step
from reminder.storage.ledger import Claim, Ledger, Outcome
from reminder.storage.thread import LedgerThread


def smtplib_new_each(port: int, messages: list[Composed]) -> None:
    for m in messages:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as client:
            client.sendmail(m.sender, [m.recipient], m.data)


def smtplib_reused(port: int, messages: list[Composed]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as client:
        for m in messages:
            client.sendmail(m.sender, [m.recipient], m.data)


def ours(connections: int, ledger: str | Path | None) -> Callable[[int, list[Composed]], None]:
    """Our transport; with `ledger` (a SQLite file or a PostgreSQL URL), claiming and
    settling every delivery in it as the worker does."""

    def send(port: int, messages: list[Composed]) -> None:
        if ledger is None:
            asyncio.run(_transport_alone(port, messages, connections))
        else:
            asyncio.run(_ours(port, messages, connections, ledger))

    return send


def _pool(port: int, connections: int) -> SmtpTransport:
    return SmtpTransport(
        Smtp(host="127.0.0.1", port=port, security="none", connections=connections)
    )


async def _transport_alone(port: int, messages: list[Composed], connections: int) -> None:
    transport = _pool(port, connections)
    results: list[Result] = []
    envelopes = [
        Envelope(n, m.sender, m.recipient, m.message_id, m.data) for n, m in enumerate(messages)
    ]
    await transport.deliver(each(envelopes), results.append)
    await transport.close()
    assert sum(r.verdict is Verdict.SENT for r in results) == len(messages)


async def _ours(port: int, messages: list[Composed], connections: int, target: str | Path) -> None:
    """As the worker's pass does: the ledger opened in its own thread, the deliveries
    claimed there in the worker's steps as sending reaches them (`claim_step`), each
    outcome made durable (group commit) before its connection's next transaction."""
    now = datetime.now(UTC)
    thread: LedgerThread[Any] = LedgerThread()
    ledger = await thread.open(
        lambda: HandOffOnly() if target == HAND_OFF else Ledger(target, worker="bench")
    )
    by_key = {}
    claims = []
    for m in messages:
        claim = Claim(
            DeliveryKey("2023-03-01T17:00+01:00", MailKind.REMINDER, "1d", m.recipient),
            m.message_id,
            now,
            now + timedelta(days=1),
        )
        claims.append(claim)
        by_key[claim.key] = m
    steps = claim_step(ledger.shared, timedelta(seconds=30))
    tally = Tally()

    async def step(at: int, handed: int) -> tuple[int, list[Claim]]:
        size = steps.next(time.monotonic(), handed)
        return at + size, await thread.call(ledger.claim, claims[at : at + size], now)

    async def claimed() -> AsyncIterator[Envelope]:
        # The durable claim before any of these SMTP transactions, one step ahead of
        # sending, as the worker's pass claims.
        ahead = asyncio.ensure_future(step(0, 0))
        handed = 0
        while True:
            at, won = await ahead
            if not won:
                return
            ahead = asyncio.ensure_future(step(at, handed))
            handed = len(won)
            for claim in won:
                m = by_key[claim.key]
                yield Envelope(claim, m.sender, m.recipient, m.message_id, m.data)

    async def settle(result: Result) -> None:
        claim: Claim = result.envelope.token
        status = DeliveryState.SENT if result.verdict is Verdict.SENT else DeliveryState.FAILED
        tally.sent += result.verdict is Verdict.SENT
        await thread.record(Outcome(claim.key, status, result.reply, datetime.now(UTC)))

    transport = _pool(port, connections)
    await transport.deliver(claimed(), settle)
    await transport.close()
    counts = await thread.call(ledger.counts)
    await thread.close(type(ledger).close)
    sent = sum(counts.get(("2023-03-01T17:00+01:00", "reminder", "1d"), {}).values())
    assert tally.sent == len(messages) == (sent if target != HAND_OFF else tally.sent)


HAND_OFF = "hand-off"


class HandOffOnly:
    """A ledger that writes nothing: every claim won, every outcome dropped, each call
    still handed to the ledger's thread and answered back as the worker's are. What (c)
    loses with it is the hand-off's own cost, not the database's."""

    shared = False

    def claim(self, claims: list[Claim], now: datetime) -> list[Claim]:
        return claims

    def record(self, outcomes: list[Outcome], now: datetime) -> None:
        pass

    def counts(self) -> dict[tuple[str, str, str], dict[str, int]]:
        return {}

    def close(self) -> None:
        pass


def measure(
    name: str, send: Callable[[int, list[Composed]], None], port: int, messages: list[Composed]
) -> float:
    started = time.perf_counter()
    send(port, messages)
    rate = len(messages) / (time.perf_counter() - started)
    print(f"  {name:<56} {rate:8.0f} messages/s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--runs", type=int, default=3, help="runs of each (c), interleaved")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="on the slow sink, time (a) and (b) on 500 messages and (c) on 2,000 only",
    )
    parser.add_argument(
        "--ledger",
        default="postgresql://root@127.0.0.1:5432/test",
        help="a PostgreSQL database for (c) with the shared ledger ('' for none)",
    )
    parser.add_argument(
        "--sink", choices=["fast", "relay"], help="only (i), the fast sink, or (ii), the relay"
    )
    args = parser.parse_args()
    _, messages = compose_many(args.messages)
    print(
        f"{len(messages):,} composed reminders, {sum(len(m.data) for m in messages) / 1e6:.0f} MB"
    )
    if args.sink != "relay":
        fast_sink(args, messages)
    if args.sink != "fast":
        relay(args, messages)


def fast_sink(args: argparse.Namespace, messages: list[Composed]) -> None:
    with postfix_sink() as port:
        print("(i) Postfix smtp-sink:")
        fast = [
            measure("(a) smtplib, new connection per message", smtplib_new_each, port, messages),
            measure("(b) smtplib, one reused connection", smtplib_reused, port, messages),
        ]
        for n in args.connections:
            rates = side_by_side(n, port, messages, args.runs, args.ledger)
            print(f"      the best of (a) and (b): {max(fast):,.0f}/s")
            for label, values in rates.items():
                print(f"      {label}: {statistics.median(values) / max(fast):.0%} of it")


def relay(args: argparse.Namespace, messages: list[Composed]) -> None:
    with slow_sink(0.05) as (port, _):
        print("(ii) sink answering each DATA after 50 ms:")
        few = messages[:500] if args.quick else messages
        measure(
            f"(a) smtplib, new connection per message{' (500)' if args.quick else ''}",
            smtplib_new_each,
            port,
            few,
        )
        measure(
            f"(b) smtplib, one reused connection{' (500)' if args.quick else ''}",
            smtplib_reused,
            port,
            few,
        )
        some = messages[:2000] if args.quick else messages
        for n in args.connections:
            rates = side_by_side(n, port, some, 1, args.ledger)
            for label, values in rates.items():
                print(f"      {label}: {values[0] / (n / 0.05):.0%} of the ideal {n / 0.05:.0f}/s")


def side_by_side(
    connections: int, port: int, messages: list[Composed], runs: int, url: str
) -> dict[str, list[float]]:
    """(c) without the ledger, with a SQLite one and with a PostgreSQL one (a fresh file
    and schema each run), `runs` times in turn; prints each median and its share of the
    transport alone; returns the rates by variant."""
    variants: list[tuple[str, Callable[[], AbstractContextManager[str | Path | None]]]] = [
        ("without the ledger", lambda: nullcontext(None)),
        ("with a ledger that writes nothing", lambda: nullcontext(HAND_OFF)),
        ("with the SQLite ledger", lambda: nullcontext(Path(tempfile.mkdtemp()) / "l.sqlite")),
    ]
    if url:
        variants.append(("with the PostgreSQL ledger", lambda: postgres_schema(url)))
    rates: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(runs):
        for label, target in variants:
            with target() as ledger:
                rates[label].append(
                    measure(
                        f"(c) ours, pool of {connections}, {label}",
                        ours(connections, ledger),
                        port,
                        messages,
                    )
                )
    alone = statistics.median(rates["without the ledger"])
    for label, values in rates.items():
        median = statistics.median(values)
        print(
            f"    (c) pool of {connections}, {label}: median {median:,.0f} messages/s "
            f"({min(values):,.0f}-{max(values):,.0f}, {len(values)} runs), "
            f"{median / alone:.0%} of the transport alone"
        )
    return rates


if __name__ == "__main__":
    main()
