"""E-mail address syntax: a plain address checked here, any other by email-validator.

Importing email-validator compiles its Unicode patterns, a tenth of what `reminder plan`
took to start. Nearly every address in an export is ASCII on an ordinary domain, and for
those its verdict follows from the few rules below; any other address (international,
quoted, a reserved name, a role mailbox it lower-cases, too long) goes to the library, so
what is accepted, how it is written and every refusal's wording stay its own.
tests/test_addresses.py holds the two to the same answers.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["EmailNotValidError", "ValidatedEmail", "validate_email"]

# RFC 5322 atext, as email-validator writes it (rfc_constants.ATEXT).
_ATEXT = r"A-Za-z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN = re.compile(
    rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)"
    # Labels of letters, digits and inner hyphens, 63 at most; a top-level domain of letters.
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
# Copies of email-validator's lists, compared with the installed library by the tests:
# a domain it refuses as special-use (SPECIAL_USE_DOMAIN_NAMES) ...
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")
# ... and the RFC 2142 mailboxes whose local part it lower-cases.
_ROLE_MAILBOXES = frozenset(
    {
        "info",
        "marketing",
        "sales",
        "support",
        "abuse",
        "noc",
        "security",
        "postmaster",
        "hostmaster",
        "usenet",
        "news",
        "webmaster",
        "www",
        "uucp",
        "ftp",
    }
)
_EMAIL_MAX_LENGTH = 254  # RFC 5321 4.5.3.1.3, less the angle brackets
_DOMAIN_MAX_LENGTH = 253


class EmailNotValidError(ValueError):
    """An address email-validator refuses, with its explanation."""


class ValidatedEmail(NamedTuple):
    """The two forms of an accepted address that this project reads."""

    normalized: str
    ascii_email: str | None


def validate_email(
    text: str, *, check_deliverability: bool = False, allow_smtputf8: bool = False
) -> ValidatedEmail:
    """email_validator.validate_email(text, ...), without importing it for a plain address."""
    if not check_deliverability and not allow_smtputf8 and (plain := _plain(text)) is not None:
        return ValidatedEmail(plain, plain)
    import email_validator

    try:
        found = email_validator.validate_email(
            text, check_deliverability=check_deliverability, allow_smtputf8=allow_smtputf8
        )
    except email_validator.EmailNotValidError as exc:
        raise EmailNotValidError(str(exc)) from None
    return ValidatedEmail(found.normalized, found.ascii_email)


def _plain(text: str) -> str | None:
    """`text` as email-validator writes it, when it is a plain address; else None."""
    match = _PLAIN.fullmatch(text)
    if match is None or len(text) > _EMAIL_MAX_LENGTH:
        return None
    local, domain = match.groups()
    domain = domain.lower()  # its IDNA (UTS 46) mapping, for ASCII
    if (
        len(domain) > _DOMAIN_MAX_LENGTH
        or local.lower() in _ROLE_MAILBOXES
        # "ab--": refused, or an IDNA "xn--" label that only the library can decode.
        or any(label[2:4] == "--" for label in domain.split("."))
        or any(domain == name or domain.endswith(f".{name}") for name in _SPECIAL_USE)
    ):
        return None
    return f"{local}@{domain}"
