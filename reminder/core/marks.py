"""Marks only this service can make: truncated HMAC-SHA256 of a purpose and its fields.

Whatever reaches the service from outside (an unsubscribe link, a bounce report quoting
a Message-ID, a later signed link) acts only when it carries one. The purpose comes
first, so one key's mark for a purpose never serves for another; the fields are joined
by line feeds, which none may contain, so that two different lists never mark alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import Enum

MARK_BYTES = 16  # 128 bits: no forging, and no finding one by trial


class Spelling(Enum):
    """How a mark is written where it travels."""

    URL = "url"  # base64url without padding, 22 characters: a link's last segment
    LOWERCASE = "lowercase"  # base32 in lower case, 26 characters: survives a change of case


def sign(key: bytes, purpose: str, *fields: str, spelling: Spelling = Spelling.URL) -> str:
    """The mark of `fields` for `purpose` under `key`."""
    for part in (purpose, *fields):
        if "\n" in part:
            raise ValueError(f"a marked field cannot hold a line feed: {part!r}")
    digest = hmac.digest(key, "\n".join((purpose, *fields)).encode(), hashlib.sha256)
    if spelling is Spelling.URL:
        return base64.urlsafe_b64encode(digest[:MARK_BYTES]).rstrip(b"=").decode("ascii")
    return base64.b32encode(digest[:MARK_BYTES]).rstrip(b"=").decode("ascii").lower()


def verify(
    key: bytes, candidate: str, purpose: str, *fields: str, spelling: Spelling = Spelling.URL
) -> bool:
    """Whether `candidate` is the mark of `fields` for `purpose`, compared in constant time."""
    expected = sign(key, purpose, *fields, spelling=spelling)
    return hmac.compare_digest(candidate.encode(), expected.encode())
