"""Quoted-printable bodies (RFC 2045 6.7): a whole text, or pieces encoded apart.

A mail filled from a stencil differs from the next by a few words. Its fixed pieces
are encoded once; each registrant's values are encoded alone, and every piece ends a
line, with a soft line break ("=" at the end of a line, which readers remove) unless
it ends with a line break of its own. The body reads exactly as the whole text encoded
at once: only where its lines are cut differs.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable

LINE = 76  # RFC 2045 6.7 (5): an encoded line holds at most 76 characters
SOFT = "=\r\n"


def quoted(text: str) -> str:
    """The body of a whole text: lines joined by CRLF, no line break at its end."""
    return _encoded(text).rstrip("\n").replace("\n", "\r\n")


def piece(text: str) -> str:
    """A piece of a body encoded alone, ending a line so that the next starts one."""
    if not text:
        return ""
    encoded = _encoded(text)
    if encoded.endswith("\n"):
        return encoded.replace("\n", "\r\n")
    head, newline, last = encoded.rpartition("\n")
    if len(last) >= LINE:  # no room left for the "=": cut before, between two characters
        cut = LINE - 1
        while "=" in last[cut - 2 : cut]:  # never inside an "=XX"
            cut -= 1
        last = f"{last[:cut]}=\n{last[cut:]}"
    return f"{head}{newline}{last}".replace("\n", "\r\n") + SOFT


def joined(pieces: Iterable[str]) -> str:
    """The body of pieces from `piece`, ending as `quoted` ends one: without line breaks."""
    body = "".join(pieces)
    while body.endswith("\r\n"):
        body = body[: -len(SOFT)] if body.endswith(SOFT) else body[:-2]
    return body


def _encoded(text: str) -> str:
    """`text` in quoted-printable, its lines ended by LF as binascii writes them."""
    return binascii.b2a_qp(text.replace("\r\n", "\n").encode(), istext=True).decode("ascii")
