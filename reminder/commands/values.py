"""Values as staff write them on the command line, read into typed values.

Each reader raises ValueError with a message for the person who typed the value; the
command line shows it as a usage error.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from ..core.mailing import RECORDED_KINDS, MailKind
from ..core.model import Lead

DEFAULT_WINDOW = "24h"  # what status and history judge when no --since is given


def day(text: str) -> date:
    """2023-03-01 or 01/03/2023."""
    for parse in (
        date.fromisoformat,
        lambda t: datetime.strptime(t, "%d/%m/%Y").date(),  # noqa: DTZ007 - a date, no time
    ):
        try:
            return parse(text)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date: write 2023-03-01 or 01/03/2023")


def instant(text: str) -> datetime:
    """An ISO 8601 instant; naive ones are in the cycle's zone, which the command knows."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date and time: write 2023-03-01T16:00 (cycle's zone) or "
            "2023-03-01T16:00+01:00"
        ) from None


def lead(text: str) -> Lead:
    return Lead.parse(text)


def mail_kind(text: str) -> MailKind:
    """A kind of mail staff can preview: reminder, update or cancellation."""
    if text not in RECORDED_KINDS:
        raise ValueError(f"{text!r} is not a kind of mail: {', '.join(RECORDED_KINDS)}")
    return MailKind(text)


def since(text: str) -> Lead | datetime:
    """24h, 7d (before now) or an instant."""
    try:
        return Lead.parse(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (24h, 7d) nor a date and time (2023-03-01T16:00)"
        ) from None


def address(text: str) -> str:
    """An address in the form registrants are keyed by: no SMTPUTF8 local part, and an
    international domain in ASCII."""
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not an e-mail address ({exc})") from None
    return str(checked.ascii_email or checked.normalized)


def ledger_url(text: str) -> str:
    """A PostgreSQL URL, never with a password: the rule of ledger.url, here too, since a
    command line stays in shell histories and shows in the process list."""
    from ..inputs.config import holds_password

    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("write the PostgreSQL ledger as postgresql://USER@HOST/DATABASE")
    if holds_password(text):
        raise ValueError(
            "the URL holds a password, which the command line would show to others: write "
            "postgresql://USER@HOST/DATABASE and set REMINDER_LEDGER__PASSWORD or "
            "REMINDER_LEDGER__PASSWORD_FILE"
        )
    return text


def edit(text: str) -> tuple[datetime, Path]:
    """INSTANT=PATH: when the config becomes another file, in `simulate`."""
    when, separator, file = text.partition("=")
    if not separator or not file:
        raise ValueError(
            f"{text!r}: write INSTANT=PATH, for example 2023-05-20T10:00=edited-config.toml"
        )
    path = Path(file)
    if not path.is_file():
        raise ValueError(f"{text!r}: {file} is not a file")
    return instant(when), path
