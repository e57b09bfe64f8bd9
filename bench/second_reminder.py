"""A later reminder of a session everybody was already told about: how long its first
message waits after the pass at its instant begins.

The ledger holds the 1-day reminder, sent to every registrant, with what it told them;
first, as whole processes, `reminder check`, `plan` and `status` ten minutes before the
1-hour reminder's instant (wall time and peak RSS, `--rounds` times; each plans the
change notices from what the ledger says everybody was told); then a pass at that time
finds nothing due; the pass at the instant sends to Postfix's `smtp-sink` for 3 s.
Times of passes are from their start, in this process.

With --ledger URL the same runs again on a fresh schema of that PostgreSQL database
(every command and pass reading it), vacuumed after the 1-day reminder as autovacuum
would have done by then, and the two are printed side by side.

    .venv/bin/python bench/second_reminder.py [--registrants N] [--rounds R] [--no-commands]
                                              [--ledger URL]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from common import postfix_sink, postgres_schema, record_told, sample_project, vacuum
from scale import timed
from worker import write_project

from reminder.core.mailing import DeliveryKey
from reminder.mail.smtp import SmtpTransport
from reminder.service.dispatcher import Dispatcher, NoObserver
from reminder.service.snapshot import load_snapshot
from reminder.storage.ledger import Ledger

PARIS = ZoneInfo("Europe/Paris")


class FirstSettled(NoObserver):
    def __init__(self) -> None:
        self.at: float | None = None

    def settled(self, key: DeliveryKey, outcome: str, due_at: datetime | None = None) -> None:
        if self.at is None:
            self.at = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrants", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-commands", action="store_true")
    parser.add_argument("--ledger", default="", help="a postgresql:// URL: SQLite, then it")
    args = parser.parse_args()
    figures = [measure(args, "")]
    if args.ledger:
        with postgres_schema(args.ledger) as url:
            figures.append(measure(args, url))
        print("\nside by side (PostgreSQL / SQLite, the best of each):")
        sqlite, postgres = figures
        for label, seconds in postgres.items():
            best, against = min(seconds), min(sqlite[label])
            print(f"  {label}: {best:.2f} s / {against:.2f} s = {best / against:.2f}x")


def measure(args: argparse.Namespace, url: str) -> dict[str, list[float]]:
    """Print the figures of one ledger (SQLite without `url`); return them by name."""
    figures: dict[str, list[float]] = defaultdict(list)
    print("PostgreSQL:" if url else "SQLite:")
    with postfix_sink() as port:
        config = sample_project()
        start = (datetime.now(PARIS) + timedelta(days=3)).replace(second=0, microsecond=0)
        write_project(config, port, start, args.registrants)
        text = config.read_text().replace('leads = ["1h"]', 'leads = ["1d", "1h"]')
        config.write_text(text.replace("[ledger]\n", f'[ledger]\nurl = "{url}"\n'))
        snapshot = load_snapshot(config)
        ledger = Ledger(url or config.parent / "state" / "ledger.sqlite", worker="bench")
        day, hour = snapshot.slots[0], snapshot.slots[1]
        link = snapshot.config.cycle.join_url or ""
        people = snapshot.roster.attending(day.session)
        record_told(ledger, day, people, link, day.due_at)
        if url:
            vacuum(url)
        now = [hour.due_at - timedelta(minutes=10)]
        for _ in range(0 if args.no_commands else args.rounds):
            for name in ("check", "plan", "status"):
                seconds, peak, code = timed(
                    "--config", str(config), name, "--now", now[0].isoformat()
                )
                print(f"  `{name}`: {seconds:.2f} s, {peak:.0f} MB (exit {code})")
                figures[f"`{name}`"].append(seconds)
        transport = SmtpTransport(snapshot.config.smtp, clock=lambda: now[0])
        observer = FirstSettled()
        dispatcher = Dispatcher(ledger, transport, lambda: now[0], observer=observer)

        async def passes() -> None:
            began = time.perf_counter()
            await dispatcher.run(snapshot)
            seconds = time.perf_counter() - began
            print(f"  pass 10 minutes before the instant (nothing due): {seconds:.2f} s")
            figures["pass before the instant"].append(seconds)
            now[0] = hour.due_at
            stopping = asyncio.Event()
            asyncio.get_running_loop().call_later(3, stopping.set)
            began = time.perf_counter()
            tally = await dispatcher.run(snapshot, stopping)
            assert observer.at is not None
            first = observer.at - began
            print(
                f"  pass at the instant, {args.registrants:,} registrants told: first message "
                f"accepted {first:.3f} s after it began ({tally.sent:,} sent in 3 s)"
            )
            figures["first message after the pass began"].append(first)
            await transport.close()

        asyncio.run(passes())
        ledger.close()
    return figures


if __name__ == "__main__":
    main()
