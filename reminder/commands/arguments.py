"""Every command, option and help text of `reminder`: the grammar argparse reads.

Declarations only. Each value is read by `values` into a typed value; what a command
does is in the library function `cli.COMMANDS` names.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.mailing import RECORDED_KINDS, MailKind
from . import values
from .values import DEFAULT_WINDOW


def _typed(read: Callable[[str], Any]) -> Callable[[str], Any]:
    """A reader of `values` as an argparse type: its message becomes the usage error."""

    def convert(text: str) -> Any:
        try:
            return read(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = read.__name__
    return convert


_day, _instant, _lead, _since, _address, _edit, _ledger_url, _kind = map(
    _typed,
    (
        values.day,
        values.instant,
        values.lead,
        values.since,
        values.address,
        values.edit,
        values.ledger_url,
        values.mail_kind,
    ),
)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the config file (default: $REMINDER_CONFIG or ./config.toml)",
    )
    common.add_argument(
        "--log-format",
        choices=["human", "json"],
        default=argparse.SUPPRESS,
        help="log lines for people (default) or JSON lines for machines",
    )
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=argparse.SUPPRESS,
        help="the least severe level shown",
    )
    common.add_argument(
        "--utc",
        action="store_true",
        default=argparse.SUPPRESS,
        help="times in UTC (default: the cycle's zone, with its offset)",
    )
    main = argparse.ArgumentParser(
        prog="reminder",
        parents=[common],
        description="E-mail reminders for a recurring event series: sent once, never lost.",
    )
    main.add_argument("--version", action="version", version=f"reminder {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=summary, description=summary)

    init = command(
        "init", "Write a new cycle's folder: config, templates, suppression list, export."
    )
    init.add_argument("folder", type=Path, metavar="FOLDER", help="the folder to create or fill")

    checking = command(
        "check", "Validate config, registrants, templates and the state folder; exit 1 on errors."
    )
    checking.add_argument(
        "--strict", action="store_true", help="exit 1 on warnings too (skipped rows included)"
    )
    checking.add_argument(
        "--now", type=_instant, help="pretend it is this instant, for the notices (ISO 8601)"
    )

    plan = command("plan", "Show the sessions and when each reminder goes out.")
    plan.add_argument("--from", dest="start", type=_day, help="first day shown (YYYY-MM-DD)")
    plan.add_argument("--to", dest="end", type=_day, help="last day shown (YYYY-MM-DD)")
    plan.add_argument("--now", type=_instant, help="pretend it is this instant (ISO 8601)")
    plan.add_argument(
        "--format",
        dest="output",
        choices=["table", "json"],
        default="table",
        help="a table for people, or JSON (ISO 8601 with offsets) for scripts",
    )

    people = command("registrants", "Show who attends which session, and every bad row.")
    people.add_argument("--session", type=_day, help="only those attending this session")
    people.add_argument(
        "--format",
        dest="output",
        choices=["table", "json", "csv"],
        default="table",
        help="a table, JSON, or CSV",
    )
    people.add_argument(
        "--show-addresses", action="store_true", help="print full addresses (masked by default)"
    )

    preview = command("preview", "Write one mail as .eml, .html and .ics; print its text.")
    preview.add_argument("--session", type=_day, required=True, help="the session (YYYY-MM-DD)")
    preview.add_argument("--lead", type=_lead, help="which reminder (default: the first lead)")
    preview.add_argument(
        "--kind",
        type=_kind,
        choices=RECORDED_KINDS,
        default=MailKind.REMINDER,
        help="a reminder (default), or the cancellation or update notice of a change",
    )
    preview.add_argument(
        "--registrant",
        metavar="EMAIL",
        help="as this registrant receives it (default: a sample person)",
    )
    preview.add_argument("--out", type=Path, help="folder for the files (default: state/preview)")

    send_test = command("send-test", "Send one real reminder to one address; ledger untouched.")
    send_test.add_argument("--to", metavar="ADDRESS", required=True, help="the only recipient")
    send_test.add_argument("--session", type=_day, help="default: the next session")
    send_test.add_argument("--lead", type=_lead, help="default: the first lead")

    history = command(
        "history", "What was sent, failed or superseded; exit 1 if any failed lately."
    )
    history.add_argument(
        "--since",
        type=_since,
        help="only what changed since: a duration (24h, 7d) or an instant; the exit status "
        f"judges this window (default {DEFAULT_WINDOW})",
    )
    history.add_argument("--session", type=_day, help="one session (YYYY-MM-DD)")
    history.add_argument("--recipient", metavar="EMAIL", help="one address")
    history.add_argument(
        "--format",
        dest="output",
        choices=["table", "json"],
        default="table",
        help="a table, or JSON",
    )
    history.add_argument(
        "--show-addresses", action="store_true", help="print full addresses (masked by default)"
    )

    command("run", "Run the service: send every reminder once, on time, until SIGTERM.")

    sim = command("simulate", "Run a whole period under a virtual clock into a folder.")
    sim.add_argument("--from", dest="start", type=_day, help="first day (default: cycle start)")
    sim.add_argument("--to", dest="end", type=_day, help="last day (default: cycle end)")
    sim.add_argument("--out", type=Path, help="folder (default: state/simulation)")
    sim.add_argument(
        "--edit",
        metavar="INSTANT=PATH",
        type=_edit,
        action="append",
        default=[],
        help="at INSTANT (2023-05-20T10:00, cycle's zone) the config becomes the file PATH; "
        "repeat for several edits",
    )
    sim.add_argument(
        "--smtp",
        action="store_true",
        help="deliver through an embedded SMTP server instead of the outbox",
    )

    ledger = command("ledger", "Migrate the ledger's schema, or copy a SQLite ledger elsewhere.")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    ledger_commands.add_parser(
        "migrate",
        parents=[common],
        help="bring the configured ledger's schema up to this release",
        description="Bring the configured ledger's schema up to this release.",
    )
    copy = ledger_commands.add_parser(
        "copy",
        parents=[common],
        help="copy the SQLite ledger into PostgreSQL, checked row for row",
        description="Copy the SQLite ledger of paths.state into PostgreSQL, checked row for row.",
    )
    copy.add_argument(
        "--to",
        metavar="URL",
        type=_ledger_url,
        required=True,
        help="postgresql://USER@HOST/DATABASE (password: REMINDER_LEDGER__PASSWORD[_FILE])",
    )

    stop = command("suppress", "Never mail this address again (recorded in the ledger).")
    stop.add_argument("address", type=_address, metavar="ADDRESS", help="the address to stop")
    stop.add_argument(
        "--reason", default="asked by staff", help="why, shown by `reminder suppressed`"
    )
    resume = command("unsuppress", "Mail this address again (removes it from the ledger).")
    resume.add_argument("address", type=_address, metavar="ADDRESS", help="the address")
    listing = command("suppressed", "List who is never mailed, with the reason and date.")
    listing.add_argument(
        "--format",
        dest="output",
        choices=["table", "json"],
        default="table",
        help="a table, or JSON",
    )
    listing.add_argument(
        "--show-addresses", action="store_true", help="print full addresses (masked by default)"
    )

    command(
        "bounces", "Read bounce reports (IMAP or Maildir); suppress mailboxes that do not exist."
    )

    status = command("status", "Next wake-ups, and per session and lead what was sent.")
    status.add_argument("--now", type=_instant, help="pretend it is this instant (ISO 8601)")
    status.add_argument(
        "--format",
        dest="output",
        choices=["table", "json"],
        default="table",
        help="a table, or JSON",
    )
    status.add_argument(
        "--since",
        type=_since,
        help="exit 1 if a reminder due since then was missed or failed: a duration (24h, 7d) "
        f"or an instant (default {DEFAULT_WINDOW})",
    )
    return main
