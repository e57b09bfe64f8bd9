"""The command line: parse, call the library, turn our errors into messages and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

# Only what parsing the command line needs is imported here: `reminder --help` must answer
# at once. Each command imports what it uses when it runs.
from . import __version__
from .errors import InputError, ReminderError
from .logs import printable, setup_logging, use_zone
from .model import CANCELLATION, NOTICE_KINDS, UPDATE, Lead

if TYPE_CHECKING:
    from .config import Config
    from .ledger import Suppression
    from .model import Session
    from .plan import Slot
    from .snapshot import Snapshot

log = logging.getLogger("reminder")
# The exit statuses, as the README's table documents them.
OK, FAILED, USAGE, INTERRUPTED, CLOSED_PIPE = 0, 1, 2, 130, 141
DEFAULT_WINDOW = "24h"  # what status and history judge when no --since is given


def out(text: str) -> None:
    """Print for people: nothing from an export reaches the terminal as a control code."""
    print(printable(text))


def err(text: str) -> None:
    print(printable(text), file=sys.stderr)


def _day(text: str) -> date:
    for parse in (
        date.fromisoformat,
        lambda t: datetime.strptime(t, "%d/%m/%Y").date(),  # noqa: DTZ007 - a date, no time
    ):
        try:
            return parse(text)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not a date: write 2023-03-01 or 01/03/2023")


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date and time: write 2023-03-01T16:00 (cycle's zone) or "
            "2023-03-01T16:00+01:00"
        ) from None


def _since(text: str) -> Lead | datetime:
    """24h, 7d (before now) or an instant."""
    try:
        return Lead.parse(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (24h, 7d) nor a date and time (2023-03-01T16:00)"
        ) from None


def _address(text: str) -> str:
    """An address in the form registrants are keyed by: an international domain in ASCII."""
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an e-mail address ({exc})") from None
    return str(checked.ascii_email or checked.normalized)


def _edit(text: str) -> tuple[datetime, Path]:
    instant, separator, file = text.partition("=")
    if not separator or not file:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write INSTANT=PATH, for example 2023-05-20T10:00=edited-config.toml"
        )
    path = Path(file)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: {file} is not a file")
    return _instant(instant), path


def _lead(text: str) -> Lead:
    try:
        return Lead.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        choices=["table", "json"],
        default="table",
        help="a table for people, or JSON (ISO 8601 with offsets) for scripts",
    )

    people = command("registrants", "Show who attends which session, and every bad row.")
    people.add_argument("--session", type=_day, help="only those attending this session")
    people.add_argument(
        "--format", choices=["table", "json", "csv"], default="table", help="a table, JSON, or CSV"
    )
    people.add_argument(
        "--show-addresses", action="store_true", help="print full addresses (masked by default)"
    )

    preview = command("preview", "Write one mail as .eml, .html and .ics; print its text.")
    preview.add_argument("--session", type=_day, required=True, help="the session (YYYY-MM-DD)")
    preview.add_argument("--lead", type=_lead, help="which reminder (default: the first lead)")
    preview.add_argument(
        "--kind",
        choices=["reminder", *NOTICE_KINDS],
        default="reminder",
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
        "--format", choices=["table", "json"], default="table", help="a table, or JSON"
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
        "--format", choices=["table", "json"], default="table", help="a table, or JSON"
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
        "--format", choices=["table", "json"], default="table", help="a table, or JSON"
    )
    status.add_argument(
        "--since",
        type=_since,
        default=Lead.parse(DEFAULT_WINDOW),
        help="exit 1 if a reminder due since then was missed or failed: a duration (24h, 7d) "
        f"or an instant (default {DEFAULT_WINDOW})",
    )
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .config import config_path

    args.utc = getattr(args, "utc", False)
    setup_logging(
        getattr(args, "log_format", "human"), getattr(args, "log_level", "info"), utc=args.utc
    )
    path = config_path(getattr(args, "config", None))
    handler: Callable[[argparse.Namespace, Path], int] = COMMANDS[args.command]
    try:
        status = handler(args, path)
        sys.stdout.flush()  # a closed pipe shows here, not as a complaint at exit
        return status
    except InputError as exc:
        err(f"reminder {args.command}: cannot go on:")
        for problem in exc.problems:
            err(f"  {problem}")
        return FAILED
    except ReminderError as exc:
        err(f"reminder {args.command}: {exc}")
        return FAILED
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # `reminder plan | head`: the reader has what it wanted. Python would complain
        # again when flushing stdout at exit; point it at nothing first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_PIPE


def _zone(snapshot: Snapshot, args: argparse.Namespace) -> tzinfo:
    zone: tzinfo = UTC if args.utc else snapshot.config.zone
    use_zone(zone)
    return zone


def _window_start(since: Lead | datetime | None, now: datetime, zone: tzinfo) -> datetime:
    since = since or Lead.parse(DEFAULT_WINDOW)
    if isinstance(since, Lead):
        return now - since.delta
    return since if since.tzinfo else since.replace(tzinfo=zone)


def _now(snapshot: Snapshot, given: datetime | None) -> datetime:
    from .clock import utc_now

    if given is None:
        return utc_now()
    return given if given.tzinfo else given.replace(tzinfo=snapshot.config.zone)


def _session(snapshot: Snapshot, day: date) -> Session:
    from .sessions import find_session

    found = find_session(snapshot.sessions, day)
    if found is None:
        days = ", ".join(s.id for s in snapshot.sessions)
        raise ReminderError(f"no session on {day}; the sessions are {days}")
    return found


def do_check(args: argparse.Namespace, path: Path) -> int:
    from . import report
    from .delivery import notices_in
    from .snapshot import check

    snapshot, problems = check(path)
    for problem in problems:
        err(str(problem))
    errors = [p for p in problems if p.severity == "error"]
    warnings = len(problems) - len(errors)
    if errors or snapshot is None:
        err(
            f"{len(errors)} error(s), {warnings} warning(s): fix the errors above; "
            "nothing is sent from an invalid configuration"
        )
        return FAILED
    roster = snapshot.roster
    suppressions = _suppressions(snapshot.config)
    stopped = report.among(roster, suppressions)
    for line in report.mapping_lines(roster):
        out(line)
    if stopped:
        out("suppressed in the ledger (not mailed):")
        for line in report.suppression_lines(stopped, False, snapshot.config.zone):
            out(line)
    cancelled = sum(s.cancelled for s in snapshot.sessions)
    now = _now(snapshot, args.now)
    owed = report.notices_data(notices_in(snapshot.config, snapshot, now), snapshot, now)
    if owed:
        out("change notices these files would cause, against the ledger:")
        out("\n".join(report.notices_lines(owed)))
    out(
        f"{path}: OK: {len(snapshot.sessions)} sessions ({cancelled} cancelled), "
        f"leads {', '.join(map(str, snapshot.config.reminders.leads))}; "
        f"{len(roster.registrants) - len(stopped)} registrants served, "
        f"{report.suppressed_summary(roster, suppressions)}; templates OK; "
        f"state folder writable; {warnings} warning(s)"
    )
    if warnings and args.strict:
        err(f"{warnings} warning(s) and --strict: exit 1")
        return FAILED
    return OK


def _suppressions(config: Config) -> list[Suppression]:
    """The ledger's suppressions; none before the ledger exists."""
    from .store import ledger_target, open_ledger

    target = ledger_target(config)
    if isinstance(target, Path) and not target.exists():
        return []
    with open_ledger(config, readonly=True) as ledger:
        return ledger.suppressions()


def do_plan(args: argparse.Namespace, path: Path) -> int:
    from . import report
    from .delivery import notices_in
    from .snapshot import load_snapshot

    snapshot = load_snapshot(path)
    now = _now(snapshot, args.now)
    sessions = [
        s
        for s in snapshot.sessions
        if (args.start is None or s.start.date() >= args.start)
        and (args.end is None or s.start.date() <= args.end)
    ]
    notices = notices_in(snapshot.config, snapshot, now)
    if args.format == "json":
        out(
            json.dumps(
                report.plan_data(snapshot, sessions, now, snapshot.roster, notices),
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        out(report.plan_text(snapshot, sessions, now, snapshot.roster, notices))
    return OK


def do_registrants(args: argparse.Namespace, path: Path) -> int:
    from . import report
    from .snapshot import load_snapshot

    snapshot = load_snapshot(path)
    people = list(snapshot.roster.registrants)
    if args.session:
        people = list(snapshot.roster.attending(_session(snapshot, args.session)))
    out(
        report.registrants_output(
            snapshot, people, args.format, args.show_addresses, _suppressions(snapshot.config)
        )
    )
    return OK


def _slot(snapshot: Snapshot, day: date | None, lead: Lead | None) -> Slot:
    from .clock import utc_now
    from .plan import Slot

    if day is None:
        now = utc_now()
        upcoming = [s for s in snapshot.sessions if not s.cancelled and s.start > now]
        session = upcoming[0] if upcoming else snapshot.sessions[-1]
    else:
        session = _session(snapshot, day)
    chosen = lead or snapshot.config.reminders.leads[0]
    return Slot(session, chosen, chosen.before(session.start))


def do_preview(args: argparse.Namespace, path: Path) -> int:
    from .clock import utc_now
    from .delivery import told
    from .notices import sample_notice
    from .snapshot import SAMPLE_REGISTRANT, load_snapshot

    snapshot = load_snapshot(path)
    slot = _slot(snapshot, args.session, args.lead)
    if args.kind == "reminder" and slot.session.cancelled:
        raise ReminderError(
            f"the session of {slot.session.id} is cancelled: no reminder goes out for it. "
            f"`reminder preview --session {slot.session.id} --kind cancellation` shows the "
            "notice its registrants receive"
        )
    registrant = SAMPLE_REGISTRANT
    if args.registrant:
        found = snapshot.roster.find(args.registrant)
        if found is None:
            raise ReminderError(
                f"{args.registrant} is not a registrant served by {snapshot.roster.source}"
            )
        registrant = found
    if args.kind == "reminder":
        composed = snapshot.composer.compose(slot, registrant, slot.due_at)
        stem = f"reminder-{slot.session.id}-{slot.lead}"
    else:
        now = utc_now()
        before = told(snapshot.config, slot.session.id, registrant.key)
        notice = sample_notice(
            slot.session, registrant, args.kind, snapshot.config.cycle.join_url or "", before, now
        )
        if args.kind == UPDATE and not notice.changes:
            err(
                f"note: nothing differs from what {registrant.email} was told; the mail "
                "below names no change"
            )
        if args.kind == CANCELLATION and not slot.session.cancelled:
            err(
                "note: this session is not cancelled; this is the mail its registrants "
                "would get if it were"
            )
        composed = snapshot.composer.compose_notice(notice, now)
        stem = f"{args.kind}-{slot.session.id}"
    folder = args.out or snapshot.state_dir / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    files = {".eml": composed.data, ".html": composed.html.encode(), ".ics": composed.ics}
    for suffix, content in files.items():
        (folder / f"{stem}{suffix}").write_bytes(content)
    out(f"Subject: {composed.subject}\n\n{composed.text}")
    err(f"--\nwritten: {', '.join(str(folder / (stem + s)) for s in files)}")
    return OK


def do_send_test(args: argparse.Namespace, path: Path) -> int:
    import asyncio

    from email_validator import EmailNotValidError, validate_email

    from .clock import utc_now
    from .model import DeliveryKey, Registrant
    from .outbox import make_transport
    from .snapshot import SAMPLE_REGISTRANT, load_snapshot
    from .transport import Envelope, Result, each

    try:
        # As registrants' addresses are read: no SMTPUTF8, international domains in ASCII.
        checked = validate_email(args.to.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        err(f"reminder send-test: --to {args.to!r} is not an e-mail address ({exc})")
        return USAGE
    address = str(checked.ascii_email or checked.normalized)
    snapshot = load_snapshot(path)
    slot = _slot(snapshot, args.session, args.lead)
    if slot.session.cancelled:
        raise ReminderError(
            f"the session of {slot.session.id} is cancelled: no reminder goes out for it; "
            "choose another with --session"
        )
    person = Registrant(
        email=address,
        first_name=SAMPLE_REGISTRANT.first_name,
        last_name=SAMPLE_REGISTRANT.last_name,
    )
    now = utc_now()
    # Its own Message-ID, so a test never shares one with a real delivery.
    key = DeliveryKey(slot.session.key, "test", str(slot.lead), f"{address}#{now.timestamp()}")
    composed = snapshot.composer.compose(slot, person, now, key)
    transport = make_transport(snapshot.config)
    results: list[Result] = []

    async def send() -> None:
        envelope = Envelope(None, composed.sender, address, composed.message_id, composed.data)
        try:
            await transport.deliver(each([envelope]), results.append)
        finally:
            await transport.close()

    asyncio.run(send())
    out(f"via {transport.description}")
    for result in results:
        if result.verdict == "sent" and not snapshot.config.smtp.host:
            out(f"written to the outbox, not sent ({result.reply}): set smtp.host to send mail")
        else:
            out(f"{result.verdict}: {result.reply}")
    return OK if results and results[0].verdict == "sent" else FAILED


def do_history(args: argparse.Namespace, path: Path) -> int:
    from . import report
    from .clock import utc_now
    from .snapshot import load_snapshot
    from .store import open_ledger

    snapshot = load_snapshot(path)
    zone = _zone(snapshot, args)
    prefix = _session(snapshot, args.session).key if args.session else ""
    window = _window_start(args.since, utc_now(), zone)
    with open_ledger(snapshot.config, readonly=True) as ledger:
        rows = ledger.rows(
            session_prefix=prefix,
            recipient=args.recipient or "",
            since=window if args.since else None,
        )
    out(report.history_output(rows, args.format, args.show_addresses, zone))
    # For monitoring: what failed in the window, or waits on a configuration fault now.
    troubled = any(
        row.fault or (row.status == "failed" and row.updated_at >= window) for row in rows
    )
    return FAILED if troubled else OK


def do_run(args: argparse.Namespace, path: Path) -> int:
    import asyncio
    import signal

    from .worker import Worker

    worker = Worker(path, utc_logs=args.utc)
    asyncio.run(worker.run())
    return INTERRUPTED if worker.signal == signal.SIGINT else OK


def do_simulate(args: argparse.Namespace, path: Path) -> int:
    import asyncio

    from . import report
    from .simulate import simulate

    result = asyncio.run(
        simulate(
            path,
            start=args.start,
            end=args.end,
            folder=args.out,
            smtp=args.smtp,
            edits=args.edit,
        )
    )
    rows = [
        (
            f"{step.at:%Y-%m-%d %H:%M}",  # due instants and arrivals, in the cycle's zone
            step.session,
            step.lead,
            step.recipients if step.session else "",
            ("late" if step.late else "on time") if step.session else "",
        )
        for step in result.steps
    ]
    out(report.table(rows, ["instant", "session", "lead", "recipients", ""]))
    notices = f" and {result.notices} change notices" if result.notices else ""
    out(
        f"\n{result.sent - result.notices} reminders{notices} sent ({result.late} late, to "
        f"registrants who signed up after a due instant), {result.superseded} superseded, "
        f"{result.failed} failed, {len(result.steps)} batches.\nmessages: {result.messages}\n"
        f"ledger: {result.folder / 'ledger.sqlite'}"
    )
    return FAILED if result.failed else OK


def do_status(args: argparse.Namespace, path: Path) -> int:
    from . import report
    from .cluster import workers
    from .delivery import notice_plan, wakeups
    from .snapshot import load_snapshot
    from .store import open_ledger

    snapshot = load_snapshot(path)
    zone = _zone(snapshot, args)
    now = _now(snapshot, args.now)
    window = _window_start(args.since, now, zone)
    with open_ledger(snapshot.config, readonly=True) as ledger:
        data = report.status_data(
            snapshot,
            now,
            wakeups(ledger, snapshot, now),
            ledger.counts(),
            ledger.last_error(),
            ledger.faults(),
            ledger.suppressions(),
            notice_plan(ledger, snapshot, now),
            zone=zone,
            window=window,
        )
        data["workers"] = report.workers_data(workers(ledger), now)
    out(
        json.dumps(data, ensure_ascii=False, indent=2)
        if args.format == "json"
        else report.status_text(data) + "\n\n" + report.workers_text(data["workers"])
    )
    return FAILED if data["trouble"] else OK


def do_ledger(args: argparse.Namespace, path: Path) -> int:
    from .config import load_config
    from .ledger import MIGRATIONS, Ledger
    from .store import copy_ledger, ledger_target, open_ledger

    config = load_config(path)
    if args.ledger_command == "migrate":
        with open_ledger(config, migrate=False) as ledger:
            before = ledger.version()
        with open_ledger(config) as ledger:
            out(
                f"{ledger.path}: schema {before} -> {ledger.version()} (this release knows "
                f"{len(MIGRATIONS)})"
            )
        return OK
    target_config = config.model_copy(
        update={"ledger": config.ledger.model_copy(update={"url": args.to})}
    )
    with (
        Ledger(ledger_target(config), readonly=True) as source,
        open_ledger(target_config, worker="copy") as target,
    ):
        copied = copy_ledger(source, target)
    out(
        f"copied {source.path} into {target.path}, checked row for row: "
        + ", ".join(f"{table} {count}" for table, count in copied.items())
    )
    out(f"now set ledger.url = {target.path!r} (or REMINDER_LEDGER__URL) for every worker")
    return OK


def do_suppress(args: argparse.Namespace, path: Path) -> int:
    from .clock import utc_now
    from .config import load_config
    from .ledger import canonical
    from .registrants import masked
    from .store import open_ledger

    config = load_config(path)
    with open_ledger(config) as ledger:
        added = ledger.suppress(args.address, reason=args.reason, source="staff", at=utc_now())
        known = {s.address: s for s in ledger.suppressions()}[canonical(args.address)]
    if added:
        out(f"suppressed {masked(known.address)}: never mailed again ({known.reason})")
    else:
        out(
            f"{masked(known.address)} was already suppressed since "
            f"{known.created_at.astimezone(config.zone):%Y-%m-%d %H:%M%z} "
            f"({known.source}: {known.reason})"
        )
    return OK


def do_unsuppress(args: argparse.Namespace, path: Path) -> int:
    from .config import load_config
    from .ledger import canonical
    from .registrants import load_suppression, masked
    from .store import open_ledger

    config = load_config(path)
    address = canonical(args.address)
    with open_ledger(config) as ledger:
        removed = ledger.unsuppress(address)
    listed = address in load_suppression(config.paths.suppression)
    if removed:
        out(f"{masked(address)} is mailed again from the service's next pass")
    if listed:
        err(
            f"{masked(address)} is still in {config.paths.suppression}: remove its line there "
            "to mail it again"
        )
    if not removed and not listed:
        err(f"{masked(address)} was not suppressed")
    return OK if removed and not listed else FAILED


def do_bounces(args: argparse.Namespace, path: Path) -> int:
    from .bounces import collect
    from .clock import utc_now
    from .config import load_config
    from .store import open_ledger

    config = load_config(path)
    with open_ledger(config) as ledger:
        run = collect(config, ledger, utc_now())
    out("\n".join(run.lines()))
    return OK


def do_suppressed(args: argparse.Namespace, path: Path) -> int:
    from . import report
    from .config import load_config
    from .registrants import load_suppression

    config = load_config(path)
    suppressions = _suppressions(config)
    listed = sorted(load_suppression(config.paths.suppression))
    zone = UTC if args.utc else config.zone
    out(report.suppressed_output(suppressions, listed, args.format, args.show_addresses, zone))
    return OK


COMMANDS: dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "check": do_check,
    "plan": do_plan,
    "registrants": do_registrants,
    "preview": do_preview,
    "send-test": do_send_test,
    "history": do_history,
    "run": do_run,
    "simulate": do_simulate,
    "status": do_status,
    "ledger": do_ledger,
    "suppress": do_suppress,
    "unsuppress": do_unsuppress,
    "suppressed": do_suppressed,
    "bounces": do_bounces,
}
