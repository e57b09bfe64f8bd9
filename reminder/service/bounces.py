"""Bounce reports that arrive after sending: read from an IMAP folder or a local Maildir,
matched to our deliveries by Message-ID, and hard bounces suppressed in the ledger.

Matching is by Message-ID, not by a VERP envelope sender: every delivery already has a
deterministic Message-ID recorded in the ledger, reports quote the original headers
(RFC 3464 section 2, and Microsoft 365's and Gmail's text forms), and Microsoft 365 will
not send with a per-recipient envelope sender. A report naming no Message-ID of ours is
listed as unmatched and suppresses nobody.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ..core.errors import BounceError
from ..core.replies import Refusal, classify
from ..inputs.config import Bounces, Config
from ..inputs.registrants import masked, redacted
from ..mail.dsn import Bounce, parse_report
from ..storage.ledger import Ledger


@dataclass
class BounceRun:
    """What one reading of the bounce mailbox found and did."""

    reports: int = 0  # messages that were bounce reports
    other: int = 0  # messages that were not (left as they were)
    suppressed: list[tuple[str, str]] = field(default_factory=list)  # address, reply
    reported: list[tuple[str, str]] = field(default_factory=list)  # failed, not suppressed
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # recipient, Message-ID
    delayed: int = 0

    def lines(self) -> list[str]:
        out = [
            f"{self.reports} bounce report(s) read, {self.other} other message(s) left alone; "
            f"{len(self.suppressed)} address(es) suppressed, {len(self.reported)} other "
            f"failure(s), {len(self.unmatched)} unmatched, {self.delayed} delay notice(s)"
        ]
        out += [f"  suppressed {masked(a)}: {redacted(r)}" for a, r in self.suppressed]
        out += [f"  not suppressed {masked(a)}: {redacted(r)}" for a, r in self.reported]
        out += [
            f"  unmatched {masked(a) if a else '(no recipient)'}: {mid or 'no Message-ID'} is "
            "not a message of this ledger"
            for a, mid in self.unmatched
        ]
        return out


class Source(Protocol):
    """A mailbox of bounce reports: the messages not yet handled, and a way to mark one."""

    def unread(self) -> Iterator[tuple[str, bytes]]: ...
    def handled(self, key: str) -> None: ...
    def close(self) -> None: ...


def collect(config: Config, ledger: Ledger, now: datetime) -> BounceRun:
    """Read every unhandled message, act on the bounce reports, and mark those handled.

    Messages that are not bounce reports are left unread for the people who share the
    mailbox. A suppression is idempotent, so a report read twice changes nothing.
    """
    source = open_source(config)
    run = BounceRun()
    try:
        for key, data in source.unread():
            bounces = parse_report(data)
            if not bounces:
                run.other += 1
                continue
            run.reports += 1
            for bounce in bounces:
                apply(ledger, bounce, now, run)
            source.handled(key)
    finally:
        source.close()
    return run


def apply(ledger: Ledger, bounce: Bounce, now: datetime, run: BounceRun) -> None:
    if not bounce.permanent:
        run.delayed += bounce.action == "delayed"
        return
    recipient = (
        ledger.recipient_of(bounce.message_id, bounce.recipient) if bounce.message_id else None
    )
    if recipient is None:
        run.unmatched.append((bounce.recipient, bounce.message_id))
        return
    reply = bounce.reply
    if classify(reply) is Refusal.NO_MAILBOX:
        ledger.suppress(
            recipient,
            reason="the mailbox does not exist (bounce report)",
            source="bounce",
            at=now,
            reply=reply,
        )
        run.suppressed.append((recipient, reply))
    else:
        run.reported.append((recipient, reply))


def open_source(config: Config) -> Source:
    settings = config.bounces
    if settings.maildir is not None:
        return MaildirSource(settings.maildir)
    if settings.host:
        return ImapSource(settings, settings.ca_file)
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

    def __init__(self, settings: Bounces, ca_file: Path | None) -> None:
        host, port = str(settings.host), settings.effective_port
        where = f"the bounce mailbox {settings.user or ''}@{host}:{port}"
        if settings.user and settings.password is None:
            raise BounceError(
                f"{where}: no password in this environment: set REMINDER_BOUNCES__PASSWORD or "
                "REMINDER_BOUNCES__PASSWORD_FILE"
            )
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if settings.security == "tls":
                self.imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=context, timeout=settings.timeout
                )
            else:
                self.imap = imaplib.IMAP4(host, port, timeout=settings.timeout)
                if settings.security == "starttls":
                    self.imap.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"{where} cannot be reached: {exc}") from None
        try:
            if settings.user and settings.password is not None:
                self.imap.login(settings.user, settings.password.get_secret_value())
            kind, detail = self.imap.select(_quoted(settings.folder))
            if kind != "OK":
                raise BounceError(
                    f"{where}: no folder {settings.folder!r} (bounces.folder): {_said(detail)}"
                )
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close()
            # imaplib's message is the server's reply; it never contains the password.
            raise BounceError(f"{where}: {exc}; check bounces.user and the password") from None
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
            raise BounceError(f"{self.where}: reading failed: {exc}") from None

    def handled(self, key: str) -> None:
        try:
            self.imap.uid("STORE", key, "+FLAGS", "(\\Seen)")
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"{self.where}: marking a report read failed: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.imap.logout()


def _quoted(folder: str) -> str:
    """IMAP quotes a mailbox name with spaces or specials (RFC 3501 section 9)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(detail: list[bytes | None] | list[bytes] | list[None]) -> str:
    return " ".join(d.decode(errors="replace") for d in detail if isinstance(d, bytes))
