"""Sending 10,000 composed reminders: smtplib versus our pooled transport, ledger included.

(a) smtplib, a new connection per message; (b) smtplib, one reused connection;
(c) our SmtpTransport with a pool of N connections, each delivery claimed in and
settled to a real SQLite ledger as the worker does, one commit per outcome. Against
(i) Postfix's smtp-sink,
a fast C sink, and (ii) an aiosmtpd sink that waits 50 ms before answering each
DATA, like a remote relay (ideal rate: N / 50 ms). Targets: (c) >= 90% of the ideal
on (ii); (c) >= the best of (a) and (b) on (i).

    .venv/bin/python bench/transport.py [--messages N] [--connections N ...] [--quick]
                                        [--without-ledger]

--without-ledger adds (c) with results reported to nowhere: the transport alone, to
tell its cost from the ledger's.
"""

from __future__ import annotations

import argparse
import asyncio
import smtplib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import compose_many, postfix_sink, slow_sink

from reminder.core.mailing import DeliveryKey, DeliveryState
from reminder.core.planned import Tally
from reminder.inputs.config import Smtp
from reminder.mail.messages import Composed
from reminder.mail.smtp import SmtpTransport
from reminder.mail.transport import Envelope, Result, Verdict, each
from reminder.storage.ledger import Claim, Ledger, Outcome


def smtplib_new_each(port: int, messages: list[Composed]) -> None:
    for m in messages:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as client:
            client.sendmail(m.sender, [m.recipient], m.data)


def smtplib_reused(port: int, messages: list[Composed]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as client:
        for m in messages:
            client.sendmail(m.sender, [m.recipient], m.data)


def ours(connections: int, ledger: bool = True) -> Callable[[int, list[Composed]], None]:
    def send(port: int, messages: list[Composed]) -> None:
        asyncio.run((_ours if ledger else _transport_alone)(port, messages, connections))

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


async def _ours(port: int, messages: list[Composed], connections: int) -> None:
    now = datetime.now(UTC)
    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite", worker="bench")
    claims = [
        Claim(
            DeliveryKey("2023-03-01T17:00+01:00", "reminder", "1d", m.recipient),
            m.message_id,
            now,
            now + timedelta(days=1),
        )
        for m in messages
    ]
    won = ledger.claim(claims, now)  # the durable claim before any SMTP transaction
    tally = Tally()

    def settle(result: Result) -> None:
        # As the worker does: each outcome committed before the connection's next
        # transaction starts.
        claim: Claim = result.envelope.token
        status = DeliveryState.SENT if result.verdict is Verdict.SENT else DeliveryState.FAILED
        tally.sent += result.verdict is Verdict.SENT
        now = datetime.now(UTC)
        ledger.record([Outcome(claim.key, status, result.reply, now)], now)

    transport = _pool(port, connections)
    envelopes = [
        Envelope(c, m.sender, m.recipient, m.message_id, m.data)
        for c, m in zip(won, messages, strict=True)
    ]
    await transport.deliver(each(envelopes), settle)
    await transport.close()
    sent = sum(ledger.counts().get(("2023-03-01T17:00+01:00", "reminder", "1d"), {}).values())
    ledger.close()
    assert tally.sent == len(messages) == sent, (tally.sent, sent)


def measure(
    name: str, send: Callable[[int, list[Composed]], None], port: int, messages: list[Composed]
) -> float:
    started = time.perf_counter()
    send(port, messages)
    rate = len(messages) / (time.perf_counter() - started)
    print(f"  {name:<46} {rate:8.0f} messages/s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="on the slow sink, time (a) and (b) on 500 messages only",
    )
    parser.add_argument(
        "--without-ledger",
        action="store_true",
        help="on smtp-sink, also time (c) without the ledger: the transport alone",
    )
    args = parser.parse_args()
    _, messages = compose_many(args.messages)
    print(
        f"{len(messages):,} composed reminders, {sum(len(m.data) for m in messages) / 1e6:.0f} MB"
    )
    with postfix_sink() as port:
        print("(i) Postfix smtp-sink:")
        fast = [
            measure("(a) smtplib, new connection per message", smtplib_new_each, port, messages),
            measure("(b) smtplib, one reused connection", smtplib_reused, port, messages),
        ]
        for n in args.connections:
            rate = measure(f"(c) ours, pool of {n}, ledger included", ours(n), port, messages)
            print(f"      {rate / max(fast):.0%} of the best of (a) and (b)")
            if args.without_ledger:
                rate = measure(
                    f"(c) ours, pool of {n}, without the ledger", ours(n, False), port, messages
                )
                print(f"      {rate / max(fast):.0%} of the best of (a) and (b)")
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
        for n in args.connections:
            rate = measure(f"(c) ours, pool of {n}, ledger included", ours(n), port, messages)
            print(f"      {rate / (n / 0.05):.0%} of the ideal {n / 0.05:.0f}/s")


if __name__ == "__main__":
    main()
