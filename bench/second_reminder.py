"""A later reminder of a session everybody was already told about: how long its first
message waits after the pass at its instant begins.

The ledger holds the 1-day reminder, sent to every registrant, with what it told them;
first, as whole processes, `reminder check`, `plan` and `status` ten minutes before the
1-hour reminder's instant (wall time and peak RSS, `--rounds` times; each plans the
change notices from what the ledger says everybody was told); then a pass at that time
finds nothing due; the pass at the instant sends to Postfix's `smtp-sink` for 3 s.
Times of passes are from their start, in this process.

    .venv/bin/python bench/second_reminder.py [--registrants N] [--rounds R] [--no-commands]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from common import postfix_sink, record_told, sample_project
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
    args = parser.parse_args()
    with postfix_sink() as port:
        config = sample_project()
        start = (datetime.now(PARIS) + timedelta(days=3)).replace(second=0, microsecond=0)
        write_project(config, port, start, args.registrants)
        config.write_text(config.read_text().replace('leads = ["1h"]', 'leads = ["1d", "1h"]'))
        snapshot = load_snapshot(config)
        ledger = Ledger(config.parent / "state" / "ledger.sqlite", worker="bench")
        day, hour = snapshot.slots[0], snapshot.slots[1]
        link = snapshot.config.cycle.join_url or ""
        people = snapshot.roster.attending(day.session)
        record_told(ledger, day, people, link, day.due_at)
        now = [hour.due_at - timedelta(minutes=10)]
        for _ in range(0 if args.no_commands else args.rounds):
            for name in ("check", "plan", "status"):
                seconds, peak, code = timed(
                    "--config", str(config), name, "--now", now[0].isoformat()
                )
                print(f"`{name}`: {seconds:.2f} s, {peak:.0f} MB (exit {code})")
        transport = SmtpTransport(snapshot.config.smtp, clock=lambda: now[0])
        observer = FirstSettled()
        dispatcher = Dispatcher(ledger, transport, lambda: now[0], observer=observer)

        async def passes() -> None:
            began = time.perf_counter()
            await dispatcher.run(snapshot)
            seconds = time.perf_counter() - began
            print(f"pass 10 minutes before the instant (nothing due): {seconds:.2f} s")
            now[0] = hour.due_at
            stopping = asyncio.Event()
            asyncio.get_running_loop().call_later(3, stopping.set)
            began = time.perf_counter()
            tally = await dispatcher.run(snapshot, stopping)
            assert observer.at is not None
            print(
                f"pass at the instant, {args.registrants:,} registrants told: first message "
                f"accepted {observer.at - began:.3f} s after it began ({tally.sent:,} sent in 3 s)"
            )
            await transport.close()

        asyncio.run(passes())


if __name__ == "__main__":
    main()
