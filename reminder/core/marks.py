"""Marks only this service can make: truncated HMAC-SHA256 of a purpose and its fields.

Whatever reaches the service from outside (an unsubscribe link, a bounce report quoting
a Message-ID, a later signed link) acts only when it carries one, found again where the
service kept it: a link's token among those of the addresses it knows
(core.unsubscribe.TokenIndex), a Message-ID in the ledger's deliveries. The purpose comes
first, so one key's mark for a purpose never serves for another; the fields are joined
by line feeds, which none may contain, so that two different lists never mark alike.
"""

from __future__ import annotations

import base64
import hmac
from enum import Enum

MARK_BYTES = 16  # 128 bits: no forging, and no finding one by trial


class Spelling(Enum):
    """How a mark is written where it travels."""

    URL = "url"  # base64url without padding, 22 characters: a link's last segment
    HEX = "hex"  # lower-case hexadecimal, two characters a byte: survives a change of case


def sign(
    key: bytes,
    purpose: str,
    *fields: str,
    spelling: Spelling = Spelling.URL,
    size: int = MARK_BYTES,
) -> str:
    """The mark of `fields` for `purpose` under `key`: its first `size` bytes, spelled."""
    text = "\n".join((purpose, *fields))
    if text.count("\n") != len(fields):
        raise ValueError(f"a marked field cannot hold a line feed: {fields!r}")
    digest = hmac.digest(key, text.encode(), "sha256")[:size]
    if spelling is Spelling.URL:
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return digest.hex()  # base32 would be shorter, and cost a claim twice as much
