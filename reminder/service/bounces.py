"""Bounce reports that arrive after sending: read from an IMAP folder or a local Maildir,
proven to answer a mail we sent, and hard bounces suppressed in the ledger.

Anyone can mail the bounce mailbox, so a report acts only when it proves itself: a mail
system sent it (dsn.Report.from_mail_system), it quotes a marked Message-ID of ours
(core.message_ids), which nobody can work out for someone else's mail, and the ledger
recorded sending exactly that Message-ID to the address the report says failed. Any
other report naming a Message-ID in our form is listed as suspicious and suppresses
nobody; one naming no Message-ID of ours (a colleague's newsletter) is listed as
unmatched. Matching is by Message-ID, not by a VERP envelope sender: Microsoft 365 will
not send with a per-recipient envelope sender.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

from ..core.errors import BounceError
from ..core.message_ids import parse
from ..core.replies import Refusal, classify
from ..core.unsubscribe import canonical
from ..inputs.config import Bounces, Config
from ..inputs.registrants import masked, redacted
from ..inputs.secrets import secret
from ..mail.dsn import Bounce, Report, parse_report
from ..storage.ledger import Ledger


@dataclass
class BounceRun:
    """What one reading of the bounce mailbox found and did."""

    reports: int = 0  # messages that were bounce reports
    other: int = 0  # messages that were not (left as they were)
    suppressed: list[tuple[str, str]] = field(default_factory=list)  # address, reply
    reported: list[tuple[str, str]] = field(default_factory=list)  # failed, not suppressed
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # recipient, Message-ID
    suspicious: list[tuple[str, str]] = field(default_factory=list)  # recipient, why
    delayed: int = 0
    notices: int = 0  # delivered, relayed or expanded: nothing failed

    def lines(self) -> list[str]:
        out = [
            f"{self.reports} bounce report(s) read, {self.other} other message(s) left alone; "
            f"{len(self.suppressed)} address(es) suppressed, {len(self.reported)} other "
            f"failure(s), {len(self.unmatched)} unmatched, {len(self.suspicious)} suspicious, "
            f"{self.delayed} delay notice(s)"
            + (f", {self.notices} delivery notice(s)" if self.notices else "")
        ]
        out += [f"  suppressed {masked(a)}: {redacted(r)}" for a, r in self.suppressed]
        out += [f"  not suppressed {masked(a)}: {redacted(r)}" for a, r in self.reported]
        out += [
            f"  unmatched {_who(a)}: {mid or 'no Message-ID'} is not a message of this ledger"
            for a, mid in self.unmatched
        ]
        out += [f"  suspicious, not acted on: {_who(a)}: {why}" for a, why in self.suspicious]
        return out


def _who(address: str) -> str:
    return masked(address) if address else "(no recipient)"


class Source(Protocol):
    """A mailbox of bounce reports: the messages not yet handled, and a way to mark one."""

    def unread(self) -> Iterator[tuple[str, bytes]]: ...
    def handled(self, key: str) -> None: ...
    def close(self) -> None: ...


def collect(config: Config, ledger: Ledger, now: datetime) -> BounceRun:
    """Read every unhandled message, act on the bounce reports that prove themselves, list
    the others, and mark them all handled.

    Messages that are not bounce reports are left unread for the people who share the
    mailbox. A suppression is idempotent, so a report read twice changes nothing.
    """
    source = open_source(config)
    run = BounceRun()
    try:
        for key, data in source.unread():
            report = parse_report(data)
            if report is None:
                run.other += 1
                continue
            run.reports += 1
            for bounce in report.bounces:
                apply(ledger, config.cycle.id, report, bounce, now, run)
            source.handled(key)
    finally:
        source.close()
    return run


class Proof(Enum):
    """What a failure report proves about our mail."""

    PROVEN = "proven"  # it answers a mail the ledger recorded sending to that address
    NOT_OURS = "not ours"  # it quotes no Message-ID of this cycle
    SUSPICIOUS = "suspicious"  # it quotes one in our form without proving anything


def apply(
    ledger: Ledger, cycle: str, report: Report, bounce: Bounce, now: datetime, run: BounceRun
) -> None:
    """Suppress, list or count one recipient's failure, once the report proved it."""
    if not bounce.failed:
        if bounce.action == "delayed":
            run.delayed += 1
        else:
            run.notices += 1
        return
    proof, found = prove(ledger, cycle, report, bounce)
    if proof is Proof.NOT_OURS:
        run.unmatched.append((bounce.recipient, bounce.message_id))
    elif proof is Proof.SUSPICIOUS:
        run.suspicious.append((bounce.recipient, found))
    elif bounce.permanent and classify(bounce.reply) is Refusal.NO_MAILBOX:
        ledger.suppress(
            found,
            reason="the mailbox does not exist (bounce report)",
            source="bounce",
            at=now,
            reply=bounce.reply,
        )
        run.suppressed.append((found, bounce.reply))
    elif bounce.permanent:
        run.reported.append((found, bounce.reply))
    else:  # a soft failure the server stopped retrying: the mailbox may work next time
        run.reported.append((found, f"gave up after retrying: {bounce.reply}"))


def prove(ledger: Ledger, cycle: str, report: Report, bounce: Bounce) -> tuple[Proof, str]:
    """(PROVEN, the address our mail went to), (SUSPICIOUS, why), or (NOT_OURS, "")."""
    ours = parse(bounce.message_id) if bounce.message_id else None
    if ours is None or ours.cycle != cycle:
        return Proof.NOT_OURS, ""
    if not report.from_mail_system:
        sender = masked(canonical(report.sender)) if report.sender else "an unnamed sender"
        return Proof.SUSPICIOUS, f"sent by {sender}, not by a mail system"
    if not ours.marked:
        return Proof.SUSPICIOUS, "its Message-ID carries no mark (an earlier release's, or forged)"
    if not bounce.named:
        return Proof.SUSPICIOUS, "it names no recipient"
    sent_to = ledger.recipient_of(bounce.message_id, bounce.recipient)
    if sent_to is None:
        return Proof.SUSPICIOUS, "no mail of this ledger carries its Message-ID"
    if sent_to not in {canonical(address) for address in bounce.named}:
        return Proof.SUSPICIOUS, f"its Message-ID is that of a mail to {masked(sent_to)}"
    return Proof.PROVEN, sent_to


def open_source(config: Config) -> Source:
    settings = config.bounces
    if settings.maildir is not None:
        return MaildirSource(settings.maildir)
    if settings.host:
        return ImapSource(settings, secret(config, "bounces", "password"))
    raise BounceError("no bounce mailbox is configured: set bounces.host or bounces.maildir")


class MaildirSource:
    """A local Maildir: messages without the Seen flag; handled ones move to cur/ as seen."""

    def __init__(self, path: Path) -> None:
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise BounceError(
                f"bounces.maildir {path} is not a Maildir (it needs new/ and cur/ folders)"
            )
        self.box = mailbox.Maildir(path, factory=None, create=False)

    def unread(self) -> Iterator[tuple[str, bytes]]:
        for key in list(self.box.keys()):
            message = self.box.get_message(key)
            if "S" not in message.get_flags():
                yield key, self.box.get_bytes(key)

    def handled(self, key: str) -> None:
        message = self.box.get_message(key)
        message.set_subdir("cur")
        message.add_flag("S")
        self.box[key] = message

    def close(self) -> None:
        self.box.close()


class ImapSource:
    """An IMAP folder: UNSEEN messages, read without marking them; handled ones flagged Seen."""

    def __init__(self, settings: Bounces, password: str | None) -> None:
        host, port = str(settings.host), settings.effective_port
        where = f"the bounce mailbox {settings.user or ''}@{host}:{port}"
        if settings.user and password is None:
            raise BounceError(
                f"{where}: no password in this environment: set REMINDER_BOUNCES__PASSWORD or "
                "REMINDER_BOUNCES__PASSWORD_FILE"
            )
        try:
            context = ssl.create_default_context(cafile=settings.ca_file)
            if settings.security == "tls":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=settings.timeout
                )
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=settings.timeout)
                if settings.security == "starttls":
                    self.imap.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"{where} cannot be reached: {_said_by(exc)}") from None
        try:
            if settings.user and password is not None:
                self.imap.login(settings.user, password)
            kind, detail = self.imap.select(_quoted(settings.folder))
            if kind != "OK":
                raise BounceError(
                    f"{where}: no folder {settings.folder!r} (bounces.folder): {_said(detail)}"
                )
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            # imaplib's message is the server's reply; it never contains the password.
            raise BounceError(
                f"{where}: {_said_by(exc)}; check bounces.user and the password"
            ) from None
        except BounceError:
            self.close()
            raise
        self.where = where

    def unread(self) -> Iterator[tuple[str, bytes]]:
        try:
            _, found = self.imap.uid("SEARCH", "UNSEEN")
            for uid in (found[0] or b"").decode().split():
                _, parts = self.imap.uid("FETCH", uid, "(BODY.PEEK[])")
                body = next((p[1] for p in parts if isinstance(p, tuple)), None)
                if isinstance(body, bytes):
                    yield uid, body
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"{self.where}: reading failed: {_said_by(exc)}") from None

    def handled(self, key: str) -> None:
        try:
            self.imap.uid("STORE", key, "+FLAGS", "(\\Seen)")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(
                f"{self.where}: marking a report read failed: {_said_by(exc)}"
            ) from None

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.imap.logout()


def _quoted(folder: str) -> str:
    """IMAP quotes a mailbox name with spaces or specials (RFC 3501 section 9)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(detail: list[bytes | None] | list[bytes] | list[None]) -> str:
    return " ".join(d.decode(errors="replace") for d in detail if isinstance(d, bytes))


def _said_by(exc: BaseException) -> str:
    """An error as text: imaplib raises with the server's reply as bytes, which would
    show as b'[AUTHENTICATIONFAILED] ...'."""
    if isinstance(exc, OSError) or not exc.args:
        return str(exc) or type(exc).__name__
    return " ".join(
        a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in exc.args
    )
