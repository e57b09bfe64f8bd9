"""Trying the mail before it goes out: preview, send-test and simulate."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path

from ..core.answer import Answer
from ..core.clock import Clock, utc_now
from ..core.errors import ReminderError, UsageError
from ..core.mailing import DeliveryKey, MailKind
from ..core.model import Lead, Registrant
from ..core.plan import Slot
from ..mail.transport import Result
from ..service.snapshot import SAMPLE_REGISTRANT, Snapshot, load_snapshot
from .checking import session_on


def choose_slot(snapshot: Snapshot, day: date | None, lead: Lead | None, now: datetime) -> Slot:
    """The reminder of the session on `day` (default: the next one after `now`, or the last)
    at `lead` (default: the first lead)."""
    if day is None:
        upcoming = [s for s in snapshot.sessions if not s.cancelled and s.start > now]
        session = upcoming[0] if upcoming else snapshot.sessions[-1]
    else:
        session = session_on(snapshot, day)
    chosen = lead or snapshot.config.reminders.leads[0]
    return Slot(session, chosen, chosen.before(session.start))


def preview(
    config_path: Path,
    *,
    session: date,
    lead: Lead | None = None,
    kind: MailKind = MailKind.REMINDER,
    registrant: str | None = None,
    out: Path | None = None,
    clock: Clock = utc_now,
) -> Answer:
    """Write one mail as .eml, .html and .ics into `out`; answer its text."""
    from ..core.notices import sample_notice
    from ..service.lookahead import notices_in, told

    snapshot = load_snapshot(config_path)
    slot = choose_slot(snapshot, session, lead, clock())
    if kind == MailKind.REMINDER and slot.session.cancelled:
        raise ReminderError(
            f"the session of {slot.session.id} is cancelled: no reminder goes out for it. "
            f"`reminder preview --session {slot.session.id} --kind cancellation` shows the "
            "notice its registrants receive"
        )
    person = SAMPLE_REGISTRANT
    if registrant:
        found = snapshot.roster.find(registrant)
        if found is None:
            raise ReminderError(
                f"{registrant} is not a registrant served by {snapshot.roster.source}"
            )
        person = found
    answer = Answer()
    if kind == MailKind.REMINDER:
        # The SEQUENCE the worker would send: the ledger's, never under the staff's floor.
        plan = notices_in(snapshot.config, snapshot, clock())
        sequence = max(
            slot.session.sequence, plan.sequence(slot.session, person.key) if plan else 0
        )
        composed = snapshot.composer.compose(slot, person, slot.due_at, sequence=sequence)
        stem = f"reminder-{slot.session.id}-{slot.lead}"
    else:
        now = clock()
        before = told(snapshot.config, slot.session.id, person.key)
        join_url = snapshot.config.cycle.join_url or ""
        notice = sample_notice(slot.session, person, kind, join_url, before, now)
        if kind == MailKind.UPDATE and not notice.changes:
            answer.note(
                f"note: nothing differs from what {person.email} was told; the mail "
                "below names no change"
            )
        if kind == MailKind.CANCELLATION and not slot.session.cancelled:
            answer.note(
                "note: this session is not cancelled; this is the mail its registrants "
                "would get if it were"
            )
        composed = snapshot.composer.compose_notice(notice, now)
        stem = f"{kind}-{slot.session.id}"
    folder = out or snapshot.state_dir / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    files = {".eml": composed.data, ".html": composed.html.encode(), ".ics": composed.ics}
    for suffix, content in files.items():
        (folder / f"{stem}{suffix}").write_bytes(content)
    answer.say(f"Subject: {composed.subject}\n\n{composed.text}")
    return answer.note(f"--\nwritten: {', '.join(str(folder / (stem + s)) for s in files)}")


def send_test(
    config_path: Path,
    *,
    to: str,
    session: date | None = None,
    lead: Lead | None = None,
    clock: Clock = utc_now,
) -> Answer:
    """Send one real reminder to `to` through the configured transport; the ledger is
    neither read nor values."""
    from ..mail.transport import Envelope, each
    from ..mail.transports import make_transport
    from .values import address

    try:
        recipient = address(to)
    except ValueError as exc:
        raise UsageError(f"--to {exc}") from None
    snapshot = load_snapshot(config_path)
    now = clock()
    slot = choose_slot(snapshot, session, lead, now)
    if slot.session.cancelled:
        raise ReminderError(
            f"the session of {slot.session.id} is cancelled: no reminder goes out for it; "
            "choose another with --session"
        )
    person = Registrant(
        email=recipient,
        first_name=SAMPLE_REGISTRANT.first_name,
        last_name=SAMPLE_REGISTRANT.last_name,
    )
    # Its own Message-ID, so a test never shares one with a real delivery.
    key = DeliveryKey(
        slot.session.appointment,
        MailKind.TEST,
        str(slot.lead),
        f"{recipient}#{now.timestamp()}",
    )
    composed = snapshot.composer.compose(slot, person, now, key)
    transport = make_transport(snapshot.config, clock)
    results: list[Result] = []

    async def send() -> None:
        envelope = Envelope(None, composed.sender, recipient, composed.message_id, composed.data)
        try:
            await transport.deliver(each([envelope]), results.append)
        finally:
            await transport.close()

    asyncio.run(send())
    answer = Answer().say(f"via {transport.description}")
    for result in results:
        if result.verdict == "sent" and not snapshot.config.smtp.host:
            answer.say(
                f"written to the outbox, not sent ({result.reply}): set smtp.host to send mail"
            )
        else:
            answer.say(f"{result.verdict}: {result.reply}")
    return answer.fail(not results or results[0].verdict != "sent")


def simulate(
    config_path: Path,
    *,
    start: date | None = None,
    end: date | None = None,
    out: Path | None = None,
    edit: list[tuple[datetime, Path]] | None = None,
    smtp: bool = False,
) -> Answer:
    """The whole period under a virtual clock into a folder: a timeline and the counts."""
    from ..service.simulate import simulate as run
    from . import printing

    result = asyncio.run(
        run(config_path, start=start, end=end, folder=out, smtp=smtp, edits=edit or ())
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
    answer = Answer().say(printing.table(rows, ["instant", "session", "lead", "recipients", ""]))
    notices = f" and {result.notices} change notices" if result.notices else ""
    answer.say(
        f"\n{result.sent - result.notices} reminders{notices} sent ({result.late} late, to "
        f"registrants who signed up after a due instant), {result.superseded} superseded, "
        f"{result.failed} failed, {len(result.steps)} batches.\nmessages: {result.messages}\n"
        f"ledger: {result.folder / 'ledger.sqlite'}"
    )
    return answer.fail(bool(result.failed))
