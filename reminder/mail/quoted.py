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
        last = _cut(last, LINE - 2)
    return f"{head}{newline}{last}".replace("\n", "\r\n") + SOFT


def joined(pieces: Iterable[str]) -> str:
    """The body of pieces from `piece`, ending as `quoted` ends one: without line breaks."""
    body = "".join(pieces)
    while body.endswith("\r\n"):
        body = body[: -len(SOFT)] if body.endswith(SOFT) else body[:-2]
    return body


def _encoded(text: str) -> str:
    """`text` in quoted-printable, its lines ended by LF as binascii writes them."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode(), istext=True).decode("ascii")
    if len(encoded) <= LINE or all(len(line) <= LINE for line in encoded.split("\n")):
        return encoded
    # binascii does not count the "=20" or "=09" it writes for a space or tab before a
    # line end: such a line may pass 76 characters. Cut it once more.
    return "\n".join(_cut(line, LINE - 1) for line in encoded.split("\n"))


def _cut(line: str, width: int) -> str:
    """`line` cut by soft line breaks into lines of at most `width` + 1 characters,
    never inside an "=XX"."""
    lines = []
    while len(line) > width + 1:
        cut = width
        while "=" in line[cut - 2 : cut]:
            cut -= 1
        lines.append(line[:cut] + "=")
        line = line[cut:]
    return "\n".join([*lines, line])
