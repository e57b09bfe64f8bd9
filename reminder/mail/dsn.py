"""Bounce reports: RFC 3464 delivery status notifications, and the plain-text forms of
Microsoft 365 and Gmail, reduced to who failed, how, which of our messages it was, and
whether a mail system sent the report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import parseaddr

_MESSAGE_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
# Microsoft 365: "Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; ...'"
_M365 = re.compile(r"Remote Server returned '([^']+)'", re.IGNORECASE)
# Gmail: "Delivery to the following recipient failed permanently:\n\n  someone@example.org"
_GMAIL = re.compile(
    r"(?:failed permanently|n'a pas pu être distribué)[^\n]*:\s*\n\s*(\S+@\S+)", re.IGNORECASE
)
_GMAIL_DETAILS = re.compile(
    r"Technical details of permanent failure:\s*\n(.+?)(?:\n\s*\n|\Z)", re.IGNORECASE | re.DOTALL
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery status notification|failure notice|returned mail|mail delivery failed"
    r"|non remis|non distribuable|échec de la remise",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Bounce:
    """One recipient's failure as a report tells it."""

    recipient: str  # the failed address, or "" when the report does not say
    action: str  # failed, delayed, delivered, relayed, expanded (RFC 3464 2.3.3)
    status: str  # the enhanced status code, e.g. 5.1.1, or ""
    diagnostic: str  # the remote server's reply, as the report quotes it
    message_id: str  # the Message-ID of our message that bounced, or ""
    original: str = ""  # the address as first given (Original-Recipient), or ""

    @property
    def failed(self) -> bool:
        """The server gave up, for good (5.x.x) or after retrying for days (4.x.x)."""
        return self.action == "failed"

    @property
    def permanent(self) -> bool:
        return self.failed and not self.status.startswith("4")

    @property
    def named(self) -> frozenset[str]:
        """The addresses the report says failed."""
        return frozenset(a for a in (self.recipient, self.original) if a)

    @property
    def reply(self) -> str:
        """What classify() and staff read: the status code, then the server's words."""
        if self.status and self.status not in self.diagnostic:
            return f"{self.status} {self.diagnostic}".strip()
        return self.diagnostic or self.status


@dataclass(frozen=True)
class Report:
    """What one message reports, and who sent it."""

    bounces: tuple[Bounce, ...]
    from_mail_system: bool  # a mail system's report, not a person's message (see below)
    sender: str  # its From address, for the listing


def parse_report(data: bytes) -> Report | None:
    """The failures a message reports; None when it is not a bounce report at all."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)  # noqa: S101 - policy.default makes EmailMessage
    status = _part(message, "message/delivery-status")
    bounces = _standard(message, status) if status is not None else _plain_text(message)
    if not bounces:
        return None
    sender = parseaddr(str(message.get("From", "")))[1]
    return Report(tuple(bounces), _from_mail_system(message, sender), sender)


def _from_mail_system(message: Message, sender: str) -> bool:
    """Whether the report comes the way mail systems send them, not from a person.

    Reports go out with a null envelope sender (RFC 5321 section 4.5.5, RFC 3464), which
    the server that delivers them writes on top as `Return-Path: <>`; and their From is
    a mail system's: MAILER-DAEMON, postmaster, or Exchange's
    MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e. Either will do, since some
    mailboxes keep no Return-Path. Anyone can imitate both: this sorts a person's message
    from a report, and only the mark of the Message-ID (core.message_ids) proves anything.
    """
    return_paths = message.get_all("Return-Path") or []
    if return_paths and str(return_paths[0]).strip() == "<>":
        return True
    local = sender.partition("@")[0].casefold()
    return local in ("mailer-daemon", "postmaster") or local.startswith("microsoftexchange")


def _part(message: Message, content_type: str) -> Message | None:
    return next((p for p in message.walk() if p.get_content_type() == content_type), None)


def _original_message_id(message: Message, fields: dict[str, str] | None = None) -> str:
    """From the returned message or its headers (RFC 3464 section 2, RFC 6522), else
    from the report's own fields (Gmail's X-Original-Message-ID)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        if kind in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
            found = _MESSAGE_ID.search(_text(part))
            if found:
                return found[1]
    return (fields or {}).get("x-original-message-id", "").strip()


def _standard(message: Message, status: Message) -> list[Bounce]:
    """RFC 3464: per-message fields, then one block of fields per recipient."""
    blocks = _field_blocks(status)
    per_message = blocks[0] if blocks and "reporting-mta" in blocks[0] else {}
    message_id = _original_message_id(message, per_message)
    bounces = []
    for block in blocks:
        final = block.get("final-recipient", "")
        original = block.get("original-recipient", "")
        if not (final or original):
            continue
        recipient = _address_of(final or original)
        diagnostic = block.get("diagnostic-code", "")
        bounces.append(
            Bounce(
                recipient=recipient,
                action=block.get("action", "").lower(),
                status=block.get("status", "").split()[0] if block.get("status") else "",
                # "smtp; 550 5.1.1 ..." -> "550 5.1.1 ..."
                diagnostic=" ".join(diagnostic.split(";", 1)[-1].split()),
                message_id=message_id,
                original=_address_of(original) if original else "",
            )
        )
    return bounces


def _field_blocks(status: Message) -> list[dict[str, str]]:
    """message/delivery-status as blocks of header fields, folded lines unfolded."""
    payload = status.get_payload()
    if isinstance(payload, list):  # the email package parses the blocks as messages
        blocks = [
            {k.lower(): str(v) for k, v in part.items()}
            for part in payload
            if isinstance(part, Message)
        ]
        return [b for b in blocks if b]
    text = payload if isinstance(payload, str) else ""
    out = []
    for chunk in re.split(r"\r?\n\s*\r?\n", re.sub(r"\r?\n[ \t]+", " ", text)):
        fields = {
            name.strip().lower(): value.strip()
            for line in chunk.splitlines()
            if ":" in line
            for name, value in [line.split(":", 1)]
        }
        if fields:
            out.append(fields)
    return out


def _plain_text(message: Message) -> list[Bounce]:
    """Microsoft 365 and Gmail reports that carry no delivery-status part."""
    subject = str(message.get("Subject", ""))
    sender = str(message.get("From", "")).lower()
    if not (_BOUNCE_SUBJECT.search(subject) or "mailer-daemon" in sender or "postmaster" in sender):
        return []
    body = "\n".join(_text(p) for p in message.walk() if p.get_content_type() == "text/plain")
    message_id = _original_message_id(message)
    if not message_id and (found := _MESSAGE_ID.search(body)):
        message_id = found[1]
    if m365 := _M365.search(body):
        reply = m365[1].strip()
        before = body[: m365.start()]
        addresses = _ADDRESS.findall(before)
        return [_text_bounce(addresses[-1] if addresses else "", reply, message_id)]
    if gmail := _GMAIL.search(body):
        details = _GMAIL_DETAILS.search(body)
        reply = " ".join((details[1] if details else body).split())
        return [_text_bounce(gmail[1].strip("<>."), reply, message_id)]
    return []


def _text_bounce(recipient: str, reply: str, message_id: str) -> Bounce:
    status = _STATUS.search(reply)
    return Bounce(
        recipient=recipient.lower(),
        action="failed",
        status=status[1] if status else "",
        diagnostic=reply,
        message_id=message_id,
    )


def _address_of(field: str) -> str:
    """'rfc822; Someone@Example.org' -> 'someone@example.org'."""
    value = field.split(";", 1)[-1].strip().strip("<>")
    return value.casefold()


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""
